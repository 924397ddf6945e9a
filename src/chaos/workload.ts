/**
 * The chaos workload: a small set of units that exercises every placement rule the
 * invariants judge: plain units, a Conflicts pair, a Global unit, a MachineOf pair and a
 * MachineMetadata-constrained unit. Each runs `sleep infinity`, so it is active as long
 * as whoever runs it (systemd on a node, the process runner in tests) keeps it running.
 */
import { checkUnitText } from '../units/client';
import type { MachineInfo, Registry } from '../units/registry';
import { unitNameInfo } from '../units/unit-file';
import { emptyXFleetOptions } from '../units/xfleet';
import type { JobDefinition } from './invariants';

/** Every workload unit's name starts with this, so a later run can clear a crashed run's units. */
export const WORKLOAD_PREFIX = 'flotilla-chaos-';

export interface WorkloadUnit {
  name: string;
  text: string;
  /** What the unit exercises, for the report. */
  role: string;
}

/**
 * A MachineMetadata requirement that leaves at least two candidates when it can (so the
 * unit survives one node being down) and excludes at least one machine when it can (so
 * it really constrains): a value shared by several but not all machines, else two values
 * of a key that differs between machines, else any machine's value.
 */
export function metadataConstraint(machines: ReadonlyArray<Pick<MachineInfo, 'metadata'>>): { key: string; values: string[] } | undefined {
  const keys = [...new Set(machines.flatMap((m) => Object.keys(m.metadata)))].sort();
  const count = (key: string, value: string) => machines.filter((m) => m.metadata[key] === value).length;
  for (const key of keys) {
    const values = [...new Set(machines.map((m) => m.metadata[key]).filter((v): v is string => v !== undefined))].sort();
    const shared = values.find((v) => count(key, v) >= 2 && count(key, v) < machines.length);
    if (shared !== undefined) return { key, values: [shared] };
  }
  for (const key of keys) {
    const values = [...new Set(machines.map((m) => m.metadata[key]).filter((v): v is string => v !== undefined))].sort();
    if (values.length >= 2 && machines.length > 2) return { key, values: values.slice(0, 2) };
  }
  const key = keys[0];
  if (key === undefined) return undefined;
  const value = machines.map((m) => m.metadata[key]).find((v) => v !== undefined)!;
  return { key, values: [value] };
}

function unit(name: string, role: string, run: string, xfleet: string[]): WorkloadUnit {
  const text = [
    '[Unit]',
    `Description=flotilla chaos workload: ${role} (run ${run})`,
    '',
    '[Service]',
    'ExecStart=/bin/sleep infinity',
    '',
    ...(xfleet.length ? ['[X-Fleet]', ...xfleet, ''] : []),
  ].join('\n');
  return { name: `${WORKLOAD_PREFIX}${name}.service`, text, role };
}

/** The workload for machines like these; `run` goes into each description (a new run, new content). */
export function chaosWorkload(machines: ReadonlyArray<Pick<MachineInfo, 'metadata'>>, run: string): WorkloadUnit[] {
  const units = [
    unit('plain-1', 'plain', run, []),
    unit('plain-2', 'plain', run, []),
    unit('conflict-a', 'Conflicts pair', run, [`Conflicts=${WORKLOAD_PREFIX}conflict-*.service`]),
    unit('conflict-b', 'Conflicts pair', run, [`Conflicts=${WORKLOAD_PREFIX}conflict-*.service`]),
    unit('global', 'Global', run, ['Global=true']),
    unit('anchor', 'MachineOf target', run, []),
    unit('follower', 'MachineOf follower', run, [`MachineOf=${WORKLOAD_PREFIX}anchor.service`]),
  ];
  const md = metadataConstraint(machines);
  if (md) units.push(unit('meta', `MachineMetadata ${md.key}=${md.values.join('|')}`, run, md.values.map((v) => `MachineMetadata=${md.key}=${v}`)));
  return units;
}

/**
 * Destroys units left by an earlier run (by name prefix), submits the workload launched,
 * and returns its definitions.
 */
export async function submitWorkload(registry: Registry, units: readonly WorkloadUnit[]): Promise<JobDefinition[]> {
  for (const j of await registry.listUnits()) if (j.name.startsWith(WORKLOAD_PREFIX)) await registry.destroyUnit(j.name);
  const defs: JobDefinition[] = [];
  for (const u of units) {
    const checked = checkUnitText(u.name, u.text);
    const { job } = await registry.submitUnit(u.name, u.text, { desiredState: 'launched' });
    defs.push({ name: job.name, hash: job.hash, desiredState: job.desiredState, options: checked.options });
  }
  return defs;
}

export async function destroyWorkload(registry: Registry, defs: readonly JobDefinition[]): Promise<void> {
  for (const d of defs) if (d.name.startsWith(WORKLOAD_PREFIX)) await registry.destroyUnit(d.name);
}

/**
 * Definitions of the jobs already in the registry (units the cluster was given before the
 * run), so that the run also proves none of them is lost or misplaced. Templates are never
 * placed (their instances are): they count for `lost` only. A body that no longer parses is
 * left out, with why.
 */
export async function existingDefinitions(registry: Registry): Promise<{ defs: JobDefinition[]; skipped: string[] }> {
  const defs: JobDefinition[] = [];
  const skipped: string[] = [];
  for (const j of await registry.listUnits()) {
    if (j.name.startsWith(WORKLOAD_PREFIX)) continue;
    const text = await registry.getBody(j.hash);
    if (text === undefined) {
      skipped.push(`${j.name}: body missing`);
      continue;
    }
    if (unitNameInfo(j.name).kind === 'template') {
      defs.push({ name: j.name, hash: j.hash, desiredState: j.desiredState, options: emptyXFleetOptions(), template: true });
      continue;
    }
    try {
      defs.push({ name: j.name, hash: j.hash, desiredState: j.desiredState, options: checkUnitText(j.name, text).options });
    } catch (err) {
      skipped.push(`${j.name}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return { defs, skipped };
}
