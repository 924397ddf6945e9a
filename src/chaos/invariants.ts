/**
 * The chaos invariants, as a pure function of what was observed at one moment: a registry
 * snapshot, the machines that should be serving, the job definitions, and (where the
 * nodes could be asked) what systemd really runs. Pure, so every rule is unit-tested
 * without VMs; the runner decides what a violation means over time (see `Tolerance`).
 *
 * - placement: every launched non-global unit runs on exactly one live machine that is
 *   eligible for it (MachineID, MachineMetadata, MachineOf), active with its submitted
 *   content; a unit with no eligible live machine runs nowhere; loaded units run nowhere.
 * - global: every launched Global unit runs on every live machine that matches it.
 * - conflicts: no two units whose Conflicts globs match share a machine (scheduled or running).
 * - lost: every submitted job is still there with its content and desired state, its body
 *   too, and every sentinel key written to etcd still reads back.
 */
import type { RegistrySnapshot } from '../units/registry';
import { conflictsWith, matchesMetadata, type XFleetOptions } from '../units/xfleet';

export const INVARIANTS = ['placement', 'global', 'conflicts', 'lost'] as const;
export type InvariantName = (typeof INVARIANTS)[number];

/**
 * How a violation is judged over time:
 * - `converge`: allowed while the cluster reacts, must be gone by the deadline;
 * - `window`: two copies or a conflicting pair on one machine: must not last longer than
 *   the fencing window (the lease TTL), whatever the deadline;
 * - `never`: data loss: one observation fails the invariant.
 */
export type Tolerance = 'converge' | 'window' | 'never';

export interface Violation {
  invariant: InvariantName;
  tolerance: Tolerance;
  /** Stable across observations of the same fault (to measure how long it lasted). */
  key: string;
  message: string;
}

export interface JobDefinition {
  name: string;
  hash: string;
  desiredState: 'inactive' | 'loaded' | 'launched';
  options: XFleetOptions;
  /** A template (`x@.service`): never placed itself, so it counts for `lost` only. */
  template?: boolean;
}

/** systemd ActiveState of a unit on a machine, as the node itself reports it. */
export type ObservedUnits = ReadonlyMap<string, string>;

export interface InvariantInput {
  snapshot: Pick<RegistrySnapshot, 'jobs' | 'machines' | 'schedule' | 'states'>;
  /** Machine IDs that should be up and serving now (not powered off, not cut off). */
  live: ReadonlySet<string>;
  /** What was submitted: the jobs that must not be lost, with their parsed [X-Fleet] options. */
  definitions: readonly JobDefinition[];
  /**
   * Ground truth from the nodes that could be asked: machine ID → unit → ActiveState.
   * For a machine absent here the registry's reported states stand in.
   */
  running?: ReadonlyMap<string, ObservedUnits>;
  /** Unit body hashes present in the registry; undefined when not read this time. */
  bodies?: ReadonlySet<string>;
  /** Sentinel keys written to etcd and what reading them back found; undefined when not read. */
  sentinels?: { expected: ReadonlyMap<string, string>; found: ReadonlyMap<string, string> };
}

/** A unit occupies a machine unless systemd says it is stopped. */
function occupies(active: string): boolean {
  return active !== 'inactive' && active !== 'failed' && active !== 'unknown';
}

const short = (id: string): string => id.slice(0, 12);

export function checkInvariants(input: InvariantInput): Violation[] {
  const out: Violation[] = [];
  const add = (invariant: InvariantName, tolerance: Tolerance, key: string, message: string) => out.push({ invariant, tolerance, key, message });
  const { snapshot: snap, live, definitions } = input;
  const defs = new Map(definitions.map((d) => [d.name, d]));
  const registered = new Map(snap.machines.map((m) => [m.id, m]));
  const serving = (id: string) => live.has(id) && registered.has(id);

  const scheduledOn = new Map<string, string[]>();
  for (const a of snap.schedule) scheduledOn.set(a.unit, [...(scheduledOn.get(a.unit) ?? []), a.machineId]);

  // What each machine runs: the node's own word where we have it, else the agent's reports.
  const unitsOn = new Map<string, Map<string, { active: string; hash?: string }>>();
  for (const s of snap.states) {
    if (input.running?.has(s.machineId)) continue;
    let m = unitsOn.get(s.machineId);
    if (!m) unitsOn.set(s.machineId, (m = new Map()));
    m.set(s.unit, { active: s.active, hash: s.hash });
  }
  const reportedHash = new Map(snap.states.map((s) => [`${s.machineId}\0${s.unit}`, s.hash]));
  for (const [machine, units] of input.running ?? []) {
    const m = new Map<string, { active: string; hash?: string }>();
    for (const [unit, active] of units) {
      const h = reportedHash.get(`${machine}\0${unit}`);
      m.set(unit, { active, ...(h !== undefined ? { hash: h } : {}) });
    }
    unitsOn.set(machine, m);
  }
  const runningOn = (unit: string): string[] =>
    [...unitsOn].filter(([, units]) => occupies(units.get(unit)?.active ?? 'inactive')).map(([id]) => id).sort();

  /** Machines (live, registered) a unit may run on by MachineID and MachineMetadata, and with its MachineOf targets' candidates. */
  const staticEligible = (d: JobDefinition, seen = new Set<string>()): string[] => {
    let ids = [...registered.keys()].filter((id) => serving(id));
    if (d.options.machineId !== undefined) ids = ids.filter((id) => id === d.options.machineId);
    if (d.options.machineMetadata.length) ids = ids.filter((id) => matchesMetadata(d.options, registered.get(id)!.metadata));
    seen.add(d.name);
    for (const t of d.options.machineOf) {
      const td = defs.get(t);
      if (!td || seen.has(t)) return [];
      const tIds = new Set(staticEligible(td, seen));
      ids = ids.filter((id) => tIds.has(id));
    }
    return ids.sort();
  };

  // lost: submitted jobs, their bodies, sentinel keys.
  const jobs = new Map(snap.jobs.map((j) => [j.name, j]));
  for (const d of definitions) {
    const j = jobs.get(d.name);
    if (!j) add('lost', 'never', `job:${d.name}`, `job ${d.name} is gone from the registry`);
    else if (j.hash !== d.hash) add('lost', 'never', `job:${d.name}`, `job ${d.name} has content ${j.hash.slice(0, 7)}, submitted ${d.hash.slice(0, 7)}`);
    else if (j.desiredState !== d.desiredState) add('lost', 'never', `job-state:${d.name}`, `job ${d.name} is ${j.desiredState}, submitted ${d.desiredState}`);
    if (input.bodies && !input.bodies.has(d.hash)) add('lost', 'never', `body:${d.name}`, `the body of ${d.name} (${d.hash.slice(0, 7)}) is gone`);
  }
  if (input.sentinels) {
    const missing: string[] = [];
    const changed: string[] = [];
    for (const [k, v] of input.sentinels.expected) {
      const got = input.sentinels.found.get(k);
      if (got === undefined) missing.push(k);
      else if (got !== v) changed.push(k);
    }
    if (missing.length) add('lost', 'never', 'sentinels-missing', `${missing.length} of ${input.sentinels.expected.size} sentinel keys are gone (e.g. ${missing[0]})`);
    if (changed.length) add('lost', 'never', 'sentinels-changed', `${changed.length} sentinel keys read back a different value (e.g. ${changed[0]})`);
  }

  for (const d of definitions) {
    if (d.template) continue;
    const on = runningOn(d.name);
    const sched = scheduledOn.get(d.name) ?? [];
    if (d.desiredState !== 'launched') {
      if (on.length) add('placement', 'converge', `stopped:${d.name}`, `${d.name} is ${d.desiredState} but runs on ${on.map(short).join(', ')}`);
      continue;
    }
    if (d.options.global) {
      const wanted = [...registered.keys()].filter((id) => serving(id) && (!d.options.machineMetadata.length || matchesMetadata(d.options, registered.get(id)!.metadata)));
      for (const id of wanted.sort()) {
        // A unit scheduled there that conflicts with the global one keeps it off, by design.
        const blocked = snap.schedule.some((a) => a.machineId === id && a.unit !== d.name && defs.has(a.unit) && conflictsWith(d, defs.get(a.unit)!));
        if (blocked) continue;
        const u = unitsOn.get(id)?.get(d.name);
        if (!sched.includes(id)) add('global', 'converge', `global:${d.name}:${id}`, `global ${d.name} is not scheduled on matching live machine ${short(id)}`);
        else if (u?.active !== 'active') add('global', 'converge', `global:${d.name}:${id}`, `global ${d.name} is ${u?.active ?? 'not reported'} on ${short(id)}`);
      }
      for (const id of on) {
        const m = registered.get(id);
        if (serving(id) && m && d.options.machineMetadata.length && !matchesMetadata(d.options, m.metadata)) add('global', 'converge', `global-extra:${d.name}:${id}`, `global ${d.name} runs on ${short(id)}, which does not match its MachineMetadata`);
      }
      continue;
    }
    if (on.length > 1) add('placement', 'window', `copies:${d.name}`, `${d.name} runs on ${on.length} machines (${on.map(short).join(', ')})`);
    const eligible = staticEligible(d);
    if (eligible.length === 0) {
      // Nowhere to go (e.g. its only matching machine is down): it must not run anywhere live either.
      const liveCopies = on.filter((id) => serving(id));
      if (liveCopies.length) add('placement', 'converge', `ineligible:${d.name}`, `${d.name} has no eligible live machine yet runs on ${liveCopies.map(short).join(', ')}`);
      continue;
    }
    if (sched.length !== 1) {
      add('placement', 'converge', `sched:${d.name}`, sched.length === 0 ? `${d.name} is not scheduled (eligible: ${eligible.map(short).join(', ')})` : `${d.name} is scheduled on ${sched.length} machines`);
      continue;
    }
    const m = sched[0]!;
    if (!serving(m)) {
      add('placement', 'converge', `dead:${d.name}`, `${d.name} is scheduled on ${short(m)}, which is ${registered.has(m) ? 'not live' : 'not registered'}`);
      continue;
    }
    if (!eligible.includes(m)) add('placement', 'converge', `ineligible:${d.name}`, `${d.name} is on ${short(m)}, which fails its MachineID/MachineMetadata`);
    for (const t of d.options.machineOf) {
      if (!(scheduledOn.get(t) ?? []).includes(m)) add('placement', 'converge', `machineof:${d.name}`, `${d.name} is on ${short(m)} but its MachineOf target ${t} is not`);
    }
    const u = unitsOn.get(m)?.get(d.name);
    if (u?.active !== 'active') add('placement', 'converge', `run:${d.name}`, `${d.name} is ${u?.active ?? 'not reported'} on ${short(m)}`);
    else if (u.hash !== undefined && u.hash !== d.hash) add('placement', 'converge', `run:${d.name}`, `${d.name} on ${short(m)} runs content ${u.hash.slice(0, 7)}, submitted ${d.hash.slice(0, 7)}`);
    const elsewhere = on.filter((id) => id !== m);
    if (elsewhere.length && on.length === 1) add('placement', 'converge', `stray:${d.name}`, `${d.name} is scheduled on ${short(m)} but runs on ${elsewhere.map(short).join(', ')}`);
  }

  // conflicts: pairs on one machine, scheduled or running.
  const pairs = new Set<string>();
  const checkPairs = (machine: string, units: string[], how: string) => {
    const known = [...new Set(units)].filter((u) => defs.has(u)).sort();
    for (let i = 0; i < known.length; i++) {
      for (let k = i + 1; k < known.length; k++) {
        const a = defs.get(known[i]!)!;
        const b = defs.get(known[k]!)!;
        if (!conflictsWith(a, b)) continue;
        const key = `conflict:${machine}:${a.name}:${b.name}`;
        if (pairs.has(key)) continue;
        pairs.add(key);
        add('conflicts', 'window', key, `${a.name} and ${b.name} conflict but are both ${how} ${short(machine)}`);
      }
    }
  };
  for (const [machine, units] of unitsOn) checkPairs(machine, [...units].filter(([, u]) => occupies(u.active)).map(([n]) => n), 'running on');
  const schedByMachine = new Map<string, string[]>();
  for (const a of snap.schedule) schedByMachine.set(a.machineId, [...(schedByMachine.get(a.machineId) ?? []), a.unit]);
  for (const [machine, units] of schedByMachine) checkPairs(machine, units, 'scheduled on');
  return out;
}

/** Violations grouped by invariant (every invariant present, possibly empty). */
export function byInvariant(violations: readonly Violation[]): Record<InvariantName, Violation[]> {
  const out = Object.fromEntries(INVARIANTS.map((i) => [i, [] as Violation[]])) as Record<InvariantName, Violation[]>;
  for (const v of violations) out[v.invariant].push(v);
  return out;
}
