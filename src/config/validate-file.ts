/**
 * `flotilla validate`: recognise what a file is and run Flotilla's own checks plus the
 * real validator for that kind when it is installed.
 */
import { parseDocument } from 'yaml';
import { FlotillaError, type Problem } from '../errors';
import { checkCloudConfig } from './cloud-config-check';
import { checkIgnition } from './ignition-check';
import { convertLegacy, isLegacyCoreosConfig } from './legacy';
import { loadSpecText } from './load';
import { checkNetworkConfig } from './render';
import { cloudInitSchema, hasTool, ignitionValidate } from './validators';
import { parseYamlSource } from './yaml-source';

export type FileKind = 'cluster-spec' | 'cloud-config' | 'legacy-coreos-cloud-config' | 'ignition' | 'network-config' | 'unit';

export interface FileValidation {
  file: string;
  kind: FileKind | 'unknown';
  ok: boolean;
  /** Checks that ran, e.g. `flotilla`, `cloud-init schema`. */
  checks: string[];
  /** Tools that would have run but are not installed. */
  skipped: string[];
  problems: Problem[];
  warnings: Problem[];
}

const UNIT_SUFFIX = /\.(service|socket|timer|path|target|mount|automount|swap|slice)$/;

export function detectKind(file: string, text: string): FileKind | 'unknown' {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{')) return 'ignition';
  if (/^#cloud-config\b/.test(text)) return isLegacyCoreosConfig(text) ? 'legacy-coreos-cloud-config' : 'cloud-config';
  if (UNIT_SUFFIX.test(file) || /^\s*\[(Unit|Service|X-Fleet|Install|Socket|Timer)\]\s*$/m.test(text)) return 'unit';
  try {
    const data = parseDocument(text).toJS() as Record<string, unknown> | null;
    if (data && typeof data === 'object') {
      if ('nodes' in data && 'name' in data) return 'cluster-spec';
      if (data.version === 2 && ('ethernets' in data || 'bonds' in data || 'vlans' in data)) return 'network-config';
    }
  } catch {
    /* fall through */
  }
  return 'unknown';
}

/** Problems from an invalid-input error, or a single problem from any other. */
function problemsOf(err: unknown, file: string): Problem[] {
  if (FlotillaError.is(err) && err.problems.length > 0) return err.problems.map((p) => ({ ...p, file: p.file ?? file }));
  if (FlotillaError.is(err)) return [{ path: '', message: err.message, file }];
  throw err;
}

export function validateFile(file: string, text: string, opts: { unitChecker?: (file: string, text: string) => { problems: Problem[]; warnings: Problem[] } } = {}): FileValidation {
  const kind = detectKind(file, text);
  const res: FileValidation = { file, kind, ok: true, checks: ['flotilla'], skipped: [], problems: [], warnings: [] };
  const add = (ps: Problem[]) => res.problems.push(...ps);
  switch (kind) {
    case 'cluster-spec':
      try {
        loadSpecText(text, file);
      } catch (err) {
        add(problemsOf(err, file));
      }
      break;
    case 'cloud-config': {
      try {
        const src = parseYamlSource(text, file);
        add(src.locate(checkCloudConfig(src.data)));
      } catch (err) {
        add(problemsOf(err, file));
        break;
      }
      if (hasTool('cloud-init')) {
        const r = cloudInitSchema(text);
        res.checks.push(r.tool);
        add(r.messages.filter((m) => !/^(Cloud config schema deprecations:|Error:)$/.test(m)).map((message) => ({ path: '', message, file })));
      } else res.skipped.push('cloud-init schema');
      break;
    }
    case 'legacy-coreos-cloud-config':
      try {
        res.warnings.push(...convertLegacy(text, file, 'cloud-config').warnings);
        res.checks.push('flotilla convert');
      } catch (err) {
        add(problemsOf(err, file));
      }
      break;
    case 'ignition': {
      let data: unknown;
      try {
        data = JSON.parse(text);
      } catch (err) {
        add([{ path: '', message: `not valid JSON: ${(err as Error).message}`, file }]);
        break;
      }
      add(checkIgnition(data, { requireVersion: true }).map((p) => ({ ...p, file })));
      if (hasTool('ignition-validate')) {
        const r = ignitionValidate(text);
        res.checks.push(r.tool);
        add(r.messages.map((message) => ({ path: '', message, file })));
      } else res.skipped.push('ignition-validate');
      break;
    }
    case 'network-config':
      try {
        const src = parseYamlSource(text, file);
        add(src.locate(checkNetworkConfig(src.data)));
      } catch (err) {
        add(problemsOf(err, file));
      }
      break;
    case 'unit':
      if (opts.unitChecker) {
        const checked = opts.unitChecker(file, text);
        add(checked.problems);
        res.warnings.push(...checked.warnings);
      } else res.skipped.push('unit checks');
      break;
    case 'unknown':
      add([{ path: '', message: 'cannot tell what this is: not a cluster spec, #cloud-config, Ignition JSON, network-config v2 or unit file', file }]);
      break;
  }
  res.ok = res.problems.length === 0;
  return res;
}
