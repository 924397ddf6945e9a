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
 * - resources: a unit's request (CPU, memory) must fit in what its machine has left; placed
 *   units are never evicted by new ones, so a machine is never over-committed;
 * - a machine the engine says to avoid for a unit (it failed there recently) is not eligible,
 *   and a unit on such a machine moves;
 * - among eligible machines: `spread` (default) the least used after placing (resource
 *   share, then unit count), `pack` the most used that still fits; ties by machine ID;
 * - Global units run on every machine that matches their metadata and holds no conflict;
 * - a unit that cannot be placed gets a reason.
 */
import type { Assignment, DesiredState, Job, MachineInfo } from './registry';
import { describeRequest, formatCpus, type PlacementStrategy, type ResourceRequest } from './unit-policy';
import { conflictsWith, globMatch, matchesMetadata, type XFleetOptions } from './xfleet';

export interface SchedulableJob {
  name: string;
  /** The content new copies get. */
  hash: string;
  desiredState: DesiredState;
  options: XFleetOptions;
  /** What each copy takes from its machine; none when left out. */
  resources?: ResourceRequest;
  /** Default `spread`. */
  placement?: PlacementStrategy;
  /**
   * A rolling update is under way: copies on these machines get this content, other
   * placed copies keep the content they have, new copies get `hash`.
   */
  rollout?: { hashOn: ReadonlyMap<string, string> };
}

export type SchedulableMachine = Pick<MachineInfo, 'id' | 'metadata'> & Partial<Pick<MachineInfo, 'capacity'>>;

export interface ScheduleInput {
  jobs: readonly SchedulableJob[];
  machines: readonly SchedulableMachine[];
  schedule: readonly Pick<Assignment, 'machineId' | 'unit' | 'hash'>[];
  /** Per unit, machines it must not run on for now, with why (failed there recently). */
  avoid?: ReadonlyMap<string, ReadonlyMap<string, string>>;
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

/** A binary min-heap under `less`; stale entries are the caller's business (checked at the top). */
class MinHeap<T> {
  private readonly h: T[] = [];
  constructor(private readonly less: (a: T, b: T) => boolean) {}
  get size(): number {
    return this.h.length;
  }
  peek(): T | undefined {
    return this.h[0];
  }
  push(e: T): void {
    const h = this.h;
    h.push(e);
    for (let i = h.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }
  pop(): T | undefined {
    const h = this.h;
    const top = h[0];
    const last = h.pop();
    if (h.length === 0 || last === undefined) return top;
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
    return top;
  }
}

/** [share in use, units, machine ID]: spread's order. */
type UsageEntry = [number, number, string];
const usageLess = (a: UsageEntry, b: UsageEntry): boolean => a[0] < b[0] || (a[0] === b[0] && (a[1] < b[1] || (a[1] === b[1] && a[2] < b[2])));

function describeMetadata(o: XFleetOptions): string {
  return o.machineMetadata.map((m) => `${m.key}=${m.values.join('|')}`).join(', ');
}

export function planSchedule(input: ScheduleInput): SchedulePlan {
  const machines = [...input.machines].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const machineById = new Map(machines.map((m) => [m.id, m]));
  const active = input.jobs.filter((j) => j.desiredState !== 'inactive');
  const jobByName = new Map(active.map((j) => [j.name, j]));
  const avoid = input.avoid ?? new Map<string, ReadonlyMap<string, string>>();

  /** Units planned on each machine so far, and where each non-global unit went. */
  const onMachine = new Map<string, JobLike[]>(machines.map((m) => [m.id, []]));
  // Only units with Conflicts or Replaces can exclude others: kept apart so that the
  // common unconstrained case costs O(1) per machine (10,000 units x 1,000 machines).
  const excluders = new Map<string, SchedulableJob[]>(machines.map((m) => [m.id, []]));
  const placedAt = new Map<string, string>();
  const target: PlannedAssignment[] = [];
  const unplaceable = new Map<string, string>();

  const current = new Map<string, string[]>();
  const currentHash = new Map<string, string>();
  for (const a of input.schedule) {
    current.set(a.unit, [...(current.get(a.unit) ?? []), a.machineId]);
    currentHash.set(`${a.unit}\0${a.machineId}`, a.hash);
  }

  // Resources: capacity, what placed units take, and what units placed now but not yet
  // visited will keep taking (reserved), so a new unit never takes a placed unit's share.
  const requestOf = (job: SchedulableJob): ResourceRequest | undefined => (job.resources && (job.resources.cpuMilli > 0 || job.resources.memoryMiB > 0) ? job.resources : undefined);
  const capacity = new Map(machines.map((m) => [m.id, { cpu: m.capacity ? m.capacity.cpus * 1000 : Infinity, mem: m.capacity ? m.capacity.memoryMiB : Infinity }]));
  const used = new Map(machines.map((m) => [m.id, { cpu: 0, mem: 0 }]));
  const reserved = new Map(machines.map((m) => [m.id, { cpu: 0, mem: 0 }]));
  const reserve = (job: SchedulableJob, sign: 1 | -1): void => {
    const r = requestOf(job);
    if (!r) return;
    for (const id of current.get(job.name) ?? []) {
      const x = reserved.get(id);
      if (!x) continue;
      x.cpu += sign * r.cpuMilli;
      x.mem += sign * r.memoryMiB;
      if (sign < 0) refreshUsage(id);
    }
  };
  for (const j of active) reserve(j, 1);
  /** Why the request does not fit on `id`, or undefined. A unit that stays counts only what is placed. */
  const noRoom = (job: SchedulableJob, id: string, staying: boolean): string | undefined => {
    const r = requestOf(job);
    if (!r) return undefined;
    const cap = capacity.get(id)!;
    const u = used.get(id)!;
    const res = staying ? { cpu: 0, mem: 0 } : reserved.get(id)!;
    const freeCpu = cap.cpu - u.cpu - res.cpu;
    const freeMem = cap.mem - u.mem - res.mem;
    const short: string[] = [];
    if (r.cpuMilli > freeCpu) short.push(`${formatCpus(Math.max(0, freeCpu))} of ${formatCpus(cap.cpu)} CPUs free`);
    if (r.memoryMiB > freeMem) short.push(`${Math.max(0, freeMem)} of ${cap.mem} MiB free`);
    return short.length ? `needs ${describeRequest(r)}: ${short.join(', ')}` : undefined;
  };
  /** Share of the machine in use (placed and reserved), plus `r` if given: the larger of CPU and memory. */
  const share = (id: string, r: ResourceRequest = { cpuMilli: 0, memoryMiB: 0 }): number => {
    const cap = capacity.get(id)!;
    const u = used.get(id)!;
    const res = reserved.get(id)!;
    const cpu = Number.isFinite(cap.cpu) && cap.cpu > 0 ? (u.cpu + res.cpu + r.cpuMilli) / cap.cpu : 0;
    const mem = Number.isFinite(cap.mem) && cap.mem > 0 ? (u.mem + res.mem + r.memoryMiB) / cap.mem : 0;
    return Math.max(cpu, mem);
  };

  /** Why `job` cannot go on machine `m`, or undefined if it can. */
  const ineligible = (job: SchedulableJob, m: SchedulableMachine, staying = false): string | undefined => {
    const o = job.options;
    if (o.machineId !== undefined && o.machineId !== m.id) return `MachineID=${o.machineId}`;
    if (o.machineMetadata.length && !matchesMetadata(o, m.metadata)) return `MachineMetadata ${describeMetadata(o)} does not match`;
    for (const t of o.machineOf) if (placedAt.get(t) !== m.id) return `MachineOf=${t} is elsewhere`;
    const avoided = avoid.get(job.name)?.get(m.id);
    if (avoided !== undefined) return avoided;
    if (o.conflicts.length) for (const other of onMachine.get(m.id) ?? []) if (conflictsWith(job, other)) return `conflicts with ${other.name}`;
    for (const other of excluders.get(m.id) ?? []) {
      if (conflictsWith(job, other)) return `conflicts with ${other.name}`;
      if (other.options.replaces.includes(job.name)) return `replaced by ${other.name}`;
    }
    const room = noRoom(job, m.id, staying);
    if (room) return `${m.id}: ${room}`;
    return undefined;
  };

  const load = new Map<string, number>(machines.map((m) => [m.id, 0]));
  const byLoad = new LoadHeap(load);
  // Spread for units that ask for resources and nothing else: machines grouped by identical
  // capacity, one heap per group ordered by share in use. Within a group the least used
  // machine is the one spread wants, so a pick costs a few heap operations per group
  // instead of scoring every machine (10,000 units x 1,000 machines).
  const usageHeaps = new Map<string, MinHeap<UsageEntry>>();
  const usageHeapOf = new Map<string, MinHeap<UsageEntry>>();
  for (const m of machines) {
    const cap = capacity.get(m.id)!;
    const key = `${cap.cpu}/${cap.mem}`;
    let heap = usageHeaps.get(key);
    if (!heap) usageHeaps.set(key, (heap = new MinHeap(usageLess)));
    usageHeapOf.set(m.id, heap);
  }
  // Kept only when some unit asks for resources: the common case pays nothing for it.
  const anyRequest = active.some((j) => requestOf(j) !== undefined);
  const refreshUsage = (id: string): void => {
    if (anyRequest) usageHeapOf.get(id)!.push([share(id), load.get(id)!, id]);
  };
  for (const m of machines) refreshUsage(m.id);
  /** The least used machine with room for `job`, or undefined. */
  const leastUsedWithRoom = (job: SchedulableJob): string | undefined => {
    let best: UsageEntry | undefined;
    for (const heap of usageHeaps.values()) {
      const full: UsageEntry[] = [];
      let found: UsageEntry | undefined;
      for (let top = heap.peek(); top; top = heap.peek()) {
        if (top[0] !== share(top[2]) || top[1] !== load.get(top[2])) {
          heap.pop(); // stale: the machine's usage changed since
          continue;
        }
        if (noRoom(job, top[2], false) === undefined) {
          found = top;
          break;
        }
        full.push(heap.pop()!);
      }
      for (const e of full) heap.push(e);
      if (found && (!best || usageLess(found, best))) best = found;
    }
    return best?.[2];
  };
  /** Conflicts globs and Replaces names of every unit placed so far, to spot units nothing constrains. */
  const placedConflictGlobs = new Set<string>();
  const replacedNames = new Set<string>();
  const place = (job: SchedulableJob, machineId: string, reason: string) => {
    onMachine.get(machineId)!.push(job);
    const n = load.get(machineId)! + 1;
    load.set(machineId, n);
    byLoad.push([n, machineId]);
    const r = requestOf(job);
    if (r) {
      const u = used.get(machineId)!;
      u.cpu += r.cpuMilli;
      u.mem += r.memoryMiB;
    }
    for (const g of job.options.conflicts) placedConflictGlobs.add(g);
    for (const r of job.options.replaces) replacedNames.add(r);
    if (job.options.conflicts.length || job.options.replaces.length) excluders.get(machineId)!.push(job);
    if (!job.options.global) placedAt.set(job.name, machineId);
    refreshUsage(machineId);
    // During a rolling update the rollout decides each copy's content; copies it has not reached keep theirs.
    const hash = job.rollout ? (job.rollout.hashOn.get(machineId) ?? currentHash.get(`${job.name}\0${machineId}`) ?? job.hash) : job.hash;
    target.push({ unit: job.name, machineId, hash, reason });
  };

  const ordered = placementOrder(active);

  // Global units first: they run everywhere they match, and others must respect them.
  for (const job of ordered.filter((j) => j.options.global)) {
    reserve(job, -1);
    const here = new Set(current.get(job.name) ?? []);
    const reasons = new Map<string, string>();
    const eligible = machines.filter((m) => {
      const why = ineligible(job, m, here.has(m.id));
      if (why) reasons.set(m.id, why);
      return why === undefined;
    });
    if (eligible.length === 0) {
      unplaceable.set(job.name, machines.length === 0 ? 'no machines registered' : `no eligible machine among ${machines.length}: ${[...new Set(reasons.values())].slice(0, 3).join('; ')}`);
    }
    for (const m of eligible) place(job, m.id, 'global');
  }

  for (const job of ordered.filter((j) => !j.options.global)) {
    reserve(job, -1);
    const o = job.options;
    // Replaces: take the replaced unit's machine when eligible.
    const replacedMachines = o.replaces.map((r) => placedAt.get(r) ?? current.get(r)?.[0]).filter((x): x is string => x !== undefined && machineById.has(x));
    const kept = (current.get(job.name) ?? []).find((id) => machineById.has(id));
    // Replaces only steers a unit that needs a machine: a placed one stays, or the two would chase each other.
    const keptWhy = kept !== undefined ? ineligible(job, machineById.get(kept)!, true) : undefined;
    if (kept !== undefined && keptWhy === undefined) {
      place(job, kept, 'kept');
      continue;
    }
    const movedFrom = kept !== undefined ? `moved from ${kept} (${keptWhy})` : (current.get(job.name)?.length ?? 0) > 0 ? 'machine gone' : undefined;
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
      !requestOf(job) && (job.placement ?? 'spread') === 'spread' && !avoid.has(job.name) &&
      !replacedNames.has(job.name) && ![...placedConflictGlobs].some((g) => globMatch(g, job.name));
    if (free) {
      place(job, byLoad.min()!, movedFrom ?? 'least loaded');
      continue;
    }
    // The same, for a unit that asks only for resources: the least used machine with room.
    const onlyResources =
      o.machineId === undefined && o.machineMetadata.length === 0 && o.machineOf.length === 0 && o.conflicts.length === 0 && replacedMachines.length === 0 &&
      requestOf(job) !== undefined && (job.placement ?? 'spread') === 'spread' && !avoid.has(job.name) &&
      !replacedNames.has(job.name) && ![...placedConflictGlobs].some((g) => globMatch(g, job.name));
    const roomy = onlyResources ? leastUsedWithRoom(job) : undefined;
    if (roomy !== undefined) {
      place(job, roomy, movedFrom ?? 'most room');
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
      unplaceable.set(job.name, `no eligible machine among ${machines.length}: ${summary}${reasons.size > 3 ? '; ...' : ''}`);
      continue;
    }
    const preferred = eligible.find((m) => replacedMachines.includes(m.id));
    const pack = job.placement === 'pack';
    const r = requestOf(job);
    // Spread: a unit with a request takes the machine least used now (share, then units),
    // one without the machine with fewest units. Pack: the machine most used once the unit
    // is on it (best fit), then most units.
    const better = (a: SchedulableMachine, b: SchedulableMachine): boolean => {
      const sa = pack ? share(a.id, r) : r ? share(a.id) : 0;
      const sb = pack ? share(b.id, r) : r ? share(b.id) : 0;
      if (sa !== sb) return pack ? sa > sb : sa < sb;
      const la = load.get(a.id)!;
      const lb = load.get(b.id)!;
      return pack ? la > lb : la < lb;
    };
    const chosen = preferred ?? eligible.reduce((best, m) => (better(m, best) ? m : best));
    const why = preferred ? `replaces ${o.replaces.join(', ')}` : movedFrom ?? (pack ? 'packed' : requestOf(job) ? 'most room' : 'least loaded');
    place(job, chosen.id, why);
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
