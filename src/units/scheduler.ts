/**
 * Placement: from jobs, live machines and the current schedule to the schedule there
 * should be. Pure and deterministic (same input, same output), so the engine only
 * diffs and writes, and every rule is testable without etcd.
 *
 * Rules (fleet's, see docs/units.md for the differences):
 * - only `loaded` and `launched` jobs are placed;
 * - a placed unit stays where it is while its machine lives and it is still eligible there
 *   (fleet never moved healthy units; moving them is a deliberate act);
 * - eligibility: MachineID, MachineMetadata, MachineOf (on the machine of every target),
 *   Conflicts (neither side's globs match the other), Replaces (the replacing unit takes
 *   the replaced unit's machine and pushes it off);
 * - among eligible machines, the least loaded (fewest units), ties by machine ID;
 * - Global units run on every machine that matches their metadata and holds no conflict;
 * - a unit that cannot be placed gets a reason.
 */
import type { Assignment, DesiredState, Job, MachineInfo } from './registry';
import { conflictsWith, globMatch, matchesMetadata, type XFleetOptions } from './xfleet';

export interface SchedulableJob {
  name: string;
  hash: string;
  desiredState: DesiredState;
  options: XFleetOptions;
}

export interface ScheduleInput {
  jobs: readonly SchedulableJob[];
  machines: readonly Pick<MachineInfo, 'id' | 'metadata'>[];
  schedule: readonly Pick<Assignment, 'machineId' | 'unit' | 'hash'>[];
}

export interface PlannedAssignment {
  unit: string;
  machineId: string;
  hash: string;
  reason: string;
}

export interface SchedulePlan {
  /** The complete schedule there should be. */
  target: PlannedAssignment[];
  /** Assignments to write (new, or moved, or with a new hash). */
  assign: PlannedAssignment[];
  /** Assignments to remove, with why. */
  unassign: Array<{ unit: string; machineId: string; reason: string }>;
  /** Units that should run but cannot be placed, with why. */
  unplaceable: Map<string, string>;
}

type JobLike = Pick<Job, 'name'> & { options: Pick<XFleetOptions, 'conflicts'> };

/** Placement order: MachineOf targets before followers, replacers before the units they replace. */
function placementOrder(jobs: SchedulableJob[]): SchedulableJob[] {
  const byName = new Map(jobs.map((j) => [j.name, j]));
  const replacedBy = new Map<string, SchedulableJob[]>();
  for (const j of jobs) for (const r of j.options.replaces) replacedBy.set(r, [...(replacedBy.get(r) ?? []), j]);
  const out: SchedulableJob[] = [];
  const seen = new Set<string>();
  const visit = (j: SchedulableJob, path: Set<string>): void => {
    if (seen.has(j.name) || path.has(j.name)) return; // cycles were rejected at submit; never loop here
    path.add(j.name);
    for (const t of j.options.machineOf) {
      const target = byName.get(t);
      if (target) visit(target, path);
    }
    // A unit replacing this one is placed first, so this one sees where it must not be.
    for (const other of replacedBy.get(j.name) ?? []) visit(other, path);
    path.delete(j.name);
    seen.add(j.name);
    out.push(j);
  };
  for (const j of [...jobs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) visit(j, new Set());
  return out;
}

/**
 * Machines by load (fewest units first, then machine ID), with lazy updates: an entry is
 * stale once its machine's load changed. Picks the least-loaded machine in O(log n).
 */
class LoadHeap {
  private readonly heap: Array<[number, string]> = [];
  constructor(private readonly load: Map<string, number>) {
    for (const [id, n] of load) this.push([n, id]);
  }
  private less(a: [number, string], b: [number, string]): boolean {
    return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
  }
  push(e: [number, string]): void {
    const h = this.heap;
    h.push(e);
    for (let i = h.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
  /** The least-loaded machine, or undefined when there is none. */
  min(): string | undefined {
    while (this.heap.length > 0) {
      const [n, id] = this.heap[0]!;
      if (this.load.get(id) === n) return id;
      this.pop();
    }
    return undefined;
  }
}

function describeMetadata(o: XFleetOptions): string {
  return o.machineMetadata.map((m) => `${m.key}=${m.values.join('|')}`).join(', ');
}

export function planSchedule(input: ScheduleInput): SchedulePlan {
  const machines = [...input.machines].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const machineById = new Map(machines.map((m) => [m.id, m]));
  const active = input.jobs.filter((j) => j.desiredState !== 'inactive');
  const jobByName = new Map(active.map((j) => [j.name, j]));

  /** Units planned on each machine so far, and where each non-global unit went. */
  const onMachine = new Map<string, JobLike[]>(machines.map((m) => [m.id, []]));
  // Only units with Conflicts or Replaces can exclude others: kept apart so that the
  // common unconstrained case costs O(1) per machine (10,000 units x 1,000 machines).
  const excluders = new Map<string, SchedulableJob[]>(machines.map((m) => [m.id, []]));
  const placedAt = new Map<string, string>();
  const target: PlannedAssignment[] = [];
  const unplaceable = new Map<string, string>();

  const current = new Map<string, string[]>();
  for (const a of input.schedule) current.set(a.unit, [...(current.get(a.unit) ?? []), a.machineId]);

  /** Why `job` cannot go on machine `m`, or undefined if it can. */
  const ineligible = (job: SchedulableJob, m: Pick<MachineInfo, 'id' | 'metadata'>): string | undefined => {
    const o = job.options;
    if (o.machineId !== undefined && o.machineId !== m.id) return `MachineID=${o.machineId}`;
    if (o.machineMetadata.length && !matchesMetadata(o, m.metadata)) return `MachineMetadata ${describeMetadata(o)} does not match`;
    for (const t of o.machineOf) if (placedAt.get(t) !== m.id) return `MachineOf=${t} is elsewhere`;
    if (o.conflicts.length) for (const other of onMachine.get(m.id) ?? []) if (conflictsWith(job, other)) return `conflicts with ${other.name}`;
    for (const other of excluders.get(m.id) ?? []) {
      if (conflictsWith(job, other)) return `conflicts with ${other.name}`;
      if (other.options.replaces.includes(job.name)) return `replaced by ${other.name}`;
    }
    return undefined;
  };

  const load = new Map<string, number>(machines.map((m) => [m.id, 0]));
  const byLoad = new LoadHeap(load);
  /** Conflicts globs and Replaces names of every unit placed so far, to spot units nothing constrains. */
  const placedConflictGlobs = new Set<string>();
  const replacedNames = new Set<string>();
  const place = (job: SchedulableJob, machineId: string, reason: string) => {
    onMachine.get(machineId)!.push(job);
    const n = load.get(machineId)! + 1;
    load.set(machineId, n);
    byLoad.push([n, machineId]);
    for (const g of job.options.conflicts) placedConflictGlobs.add(g);
    for (const r of job.options.replaces) replacedNames.add(r);
    if (job.options.conflicts.length || job.options.replaces.length) excluders.get(machineId)!.push(job);
    if (!job.options.global) placedAt.set(job.name, machineId);
    target.push({ unit: job.name, machineId, hash: job.hash, reason });
  };

  const ordered = placementOrder(active);

  // Global units first: they run everywhere they match, and others must respect them.
  for (const job of ordered.filter((j) => j.options.global)) {
    const eligible = machines.filter((m) => ineligible(job, m) === undefined);
    if (eligible.length === 0) {
      unplaceable.set(job.name, machines.length === 0 ? 'no machines registered' : `no machine matches MachineMetadata ${describeMetadata(job.options)} without a conflict`);
    }
    for (const m of eligible) place(job, m.id, 'global');
  }

  for (const job of ordered.filter((j) => !j.options.global)) {
    const o = job.options;
    // Replaces: take the replaced unit's machine when eligible.
    const replacedMachines = o.replaces.map((r) => placedAt.get(r) ?? current.get(r)?.[0]).filter((x): x is string => x !== undefined && machineById.has(x));
    const kept = (current.get(job.name) ?? []).find((id) => machineById.has(id));
    // Replaces only steers a unit that needs a machine: a placed one stays, or the two would chase each other.
    if (kept !== undefined && ineligible(job, machineById.get(kept)!) === undefined) {
      place(job, kept, 'kept');
      continue;
    }
    // MachineOf targets must already be placed (they come first in the order).
    const missing = o.machineOf.filter((t) => !placedAt.has(t));
    if (missing.length > 0) {
      unplaceable.set(job.name, `waiting for MachineOf target ${missing.join(', ')} (${missing.map((t) => (jobByName.has(t) ? 'not placed' : 'not submitted or not loaded')).join(', ')})`);
      continue;
    }
    if (o.machineOf.length > 1 && new Set(o.machineOf.map((t) => placedAt.get(t))).size > 1) {
      unplaceable.set(job.name, `MachineOf targets ${o.machineOf.join(', ')} are on different machines`);
      continue;
    }
    if (machines.length === 0) {
      unplaceable.set(job.name, 'no machines registered');
      continue;
    }
    if (o.machineId !== undefined && !machineById.has(o.machineId)) {
      unplaceable.set(job.name, `MachineID=${o.machineId} is not registered`);
      continue;
    }
    // Nothing constrains this unit and no placed unit excludes it: any machine will do,
    // so take the least loaded without testing all of them (10,000 units x 1,000 machines).
    const free =
      o.machineId === undefined && o.machineMetadata.length === 0 && o.machineOf.length === 0 && o.conflicts.length === 0 && replacedMachines.length === 0 &&
      !replacedNames.has(job.name) && ![...placedConflictGlobs].some((g) => globMatch(g, job.name));
    if (free) {
      place(job, byLoad.min()!, kept !== undefined ? `moved from ${kept}` : (current.get(job.name)?.length ?? 0) > 0 ? 'machine gone' : 'least loaded');
      continue;
    }
    const reasons = new Map<string, string>();
    const eligible = machines.filter((m) => {
      const why = ineligible(job, m);
      if (why) reasons.set(m.id, why);
      return why === undefined;
    });
    if (eligible.length === 0) {
      const summary = [...new Set(reasons.values())].slice(0, 3).join('; ');
      unplaceable.set(job.name, `no eligible machine among ${machines.length}: ${summary}`);
      continue;
    }
    const preferred = eligible.find((m) => replacedMachines.includes(m.id));
    const chosen = preferred ?? eligible.reduce((best, m) => (load.get(m.id)! < load.get(best.id)! ? m : best));
    place(job, chosen.id, preferred ? `replaces ${o.replaces.join(', ')}` : kept !== undefined ? `moved from ${kept}` : (current.get(job.name)?.length ?? 0) > 0 ? 'machine gone' : 'least loaded');
  }

  // Diff against the current schedule.
  const allJobs = new Map(input.jobs.map((j) => [j.name, j]));
  const targetKey = new Map(target.map((t) => [`${t.unit}\0${t.machineId}`, t]));
  const currentKey = new Map(input.schedule.map((a) => [`${a.unit}\0${a.machineId}`, a]));
  const assign = target.filter((t) => currentKey.get(`${t.unit}\0${t.machineId}`)?.hash !== t.hash);
  const unassign = input.schedule
    .filter((a) => !targetKey.has(`${a.unit}\0${a.machineId}`))
    .map((a) => {
      const job = allJobs.get(a.unit);
      const reason = !job ? 'unit destroyed' : job.desiredState === 'inactive' ? 'unloaded' : !machineById.has(a.machineId) ? 'machine gone' : unplaceable.get(a.unit) ?? 'moved';
      return { unit: a.unit, machineId: a.machineId, reason };
    });
  return { target, assign, unassign, unplaceable };
}
