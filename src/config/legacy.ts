/**
 * Converter for CoreOS-era cloud-configs (`#cloud-config` with a `coreos:` key, read by
 * coreos-cloudinit) to modern cloud-config (cloud-init 22.4) or Ignition spec 3.3.0.
 * See docs/convert.md for what becomes what and what is only reported.
 */
import { isMap, isScalar, type Pair } from 'yaml';
import { throwIfProblems, type Problem } from '../errors';
import { serializeCloudConfig, toCloudConfig } from './legacy/cloud-config';
import { serializeIgnition, toIgnition } from './legacy/ignition';
import { readLegacyConfig } from './legacy/read';
import { LegacySource } from './legacy/source';

export type { CloudConfigFile, CloudConfigUser, ModernCloudConfig } from './legacy/cloud-config';

export interface ConvertResult {
  output: string;
  format: 'cloud-config' | 'ignition';
  /** Valid input that has no equivalent in `format`, each at its path and line. */
  warnings: Problem[];
}

const HEADER = /^#cloud-config[ \t\r]*(\n|$)/;

/** True for `#cloud-config` user-data with a top-level `coreos:` key. */
export function isLegacyCoreosConfig(text: string): boolean {
  if (!HEADER.test(text)) return false;
  const src = new LegacySource(text, '');
  const root = src.deref(src.doc.contents);
  if (src.doc.errors.length === 0) {
    return isMap(root) && (root.items as Array<Pair<unknown, unknown>>).some((p) => isScalar(p.key) && p.key.value === 'coreos');
  }
  // Broken YAML still belongs to the legacy converter if it plainly has the key, so its errors get reported there.
  return /^coreos[ \t]*:/m.test(text);
}

/**
 * Converts `text` (read from `file`, used in problem locations). Throws FlotillaError
 * 'invalid-input' listing every problem when the input is broken.
 */
export function convertLegacy(text: string, file: string, format: 'cloud-config' | 'ignition'): ConvertResult {
  const src = new LegacySource(text, file);
  const config = readLegacyConfig(src);
  throwIfProblems(sortByLine(src.errors), `${file}: not a usable CoreOS cloud-config`);
  const output = format === 'cloud-config' ? serializeCloudConfig(toCloudConfig(config, src)) : serializeIgnition(toIgnition(config, src));
  // a translation can find input it cannot carry into this format
  throwIfProblems(sortByLine(src.errors), `${file}: cannot convert to ${format}`);
  return { output, format, warnings: sortByLine(src.warnings) };
}

function sortByLine(problems: Problem[]): Problem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.line ?? 0) - (b.p.line ?? 0) || a.i - b.i)
    .map((e) => e.p);
}
