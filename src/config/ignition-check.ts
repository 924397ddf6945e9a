/** Flotilla's own Ignition checks, run before `ignition-validate` (and where it is not installed). */
import type { Problem } from '../errors';
import { IGNITION_VERSION } from './ignition-types';
import { describe } from './validate';

const TOP = ['ignition', 'storage', 'systemd', 'passwd', 'kernelArguments'];

export function checkIgnition(data: unknown, opts: { requireVersion: boolean }): Problem[] {
  const problems: Problem[] = [];
  const add = (path: string, message: string) => problems.push({ path, message });
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return [{ path: '', message: `an Ignition config must be a JSON object, got ${describe(data)}` }];
  const d = data as Record<string, unknown>;
  for (const k of Object.keys(d)) if (!TOP.includes(k)) add(k, `unknown Ignition section (known: ${TOP.join(', ')})`);
  const ign = d.ignition as Record<string, unknown> | undefined;
  if (opts.requireVersion || ign !== undefined) {
    const v = ign?.version;
    if (typeof v !== 'string') add('ignition.version', 'is required');
    else if (!/^3\.[0-3]\.0$/.test(v)) add('ignition.version', `${JSON.stringify(v)} is not accepted by Debian 12's ignition-validate; use ${IGNITION_VERSION} (3.0.0 to 3.3.0 are accepted)`);
  }
  const storage = d.storage as Record<string, unknown> | undefined;
  for (const kind of ['files', 'directories', 'links'] as const) {
    const list = storage?.[kind];
    if (list === undefined) continue;
    if (!Array.isArray(list)) {
      add(`storage.${kind}`, `must be a list, got ${describe(list)}`);
      continue;
    }
    const seen = new Map<string, number>();
    list.forEach((e, i) => {
      const p = (e as Record<string, unknown> | null)?.path;
      if (typeof p !== 'string' || !p.startsWith('/')) add(`storage.${kind}[${i}].path`, 'must be an absolute path');
      else if (seen.has(p)) add(`storage.${kind}[${i}].path`, `${p} appears twice (also storage.${kind}[${seen.get(p)}])`);
      else seen.set(p, i);
      const mode = (e as Record<string, unknown> | null)?.mode;
      if (mode !== undefined && (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o7777)) {
        add(`storage.${kind}[${i}].mode`, `must be a decimal number such as 420 (0644), got ${describe(mode)}`);
      }
    });
  }
  const units = (d.systemd as Record<string, unknown> | undefined)?.units;
  if (units !== undefined) {
    if (!Array.isArray(units)) add('systemd.units', `must be a list, got ${describe(units)}`);
    else {
      const seen = new Map<string, number>();
      units.forEach((u, i) => {
        const n = (u as Record<string, unknown> | null)?.name;
        if (typeof n !== 'string' || !/^[A-Za-z0-9:_.\\@-]+\.[a-z]+$/.test(n)) add(`systemd.units[${i}].name`, `not a unit name: ${describe(n)}`);
        else if (seen.has(n)) add(`systemd.units[${i}].name`, `${n} appears twice (also systemd.units[${seen.get(n)}])`);
        else seen.set(n, i);
      });
    }
  }
  return problems;
}
