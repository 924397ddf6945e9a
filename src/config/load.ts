/** Loading a cluster spec from a YAML file, with every problem located by line. */
import * as path from 'node:path';
import { FlotillaError, throwIfProblems } from '../errors';
import { readTextFile } from '../util/fs';
import { specImageFileProblems } from './render';
import type { ClusterSpec, ResolvedSpec } from './spec';
import { resolveSpec } from './validate';
import { parseYamlSource } from './yaml-source';

/**
 * Checks what needs the spec rendered: Ignition entries the node image makes fail at first
 * boot (a snippet writing a file the image has without "overwrite": true), reported at the
 * snippet's field. The renderer checks the same on every render; here `validate`, `render` and
 * `up` get it located in the spec file before anything is rendered or started.
 */
function checkRendering(spec: ResolvedSpec): ResolvedSpec {
  throwIfProblems(specImageFileProblems(spec), 'invalid cluster spec');
  return spec;
}

/** Parses and validates spec text; `file` names it in errors and anchors relative paths. */
export function loadSpecText(text: string, file: string): ResolvedSpec {
  const src = parseYamlSource(text, file);
  try {
    return checkRendering(resolveSpec(src.data, { baseDir: path.dirname(path.resolve(file)), readFile: readTextFile }));
  } catch (err) {
    if (FlotillaError.is(err) && err.code === 'invalid-input' && err.problems.length > 0) {
      throwIfProblems(
        src.locate(err.problems).sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0)),
        `${file}: invalid cluster spec`);
    }
    throw err;
  }
}

export function loadSpecFile(file: string): ResolvedSpec {
  return loadSpecText(readTextFile(file), file);
}

/** A spec built in TypeScript; relative paths resolve against `baseDir` (default: cwd). */
export function loadSpecObject(spec: ClusterSpec, baseDir = process.cwd()): ResolvedSpec {
  return checkRendering(resolveSpec(spec, { baseDir, readFile: readTextFile }));
}
