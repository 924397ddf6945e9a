/**
 * The chaos runner: submit the workload, wait for steady state, then for each planned
 * fault: inject it, measure how long until the invariants hold again (and the fault has
 * had its whole effect), restore it, measure how long until the cluster is whole again,
 * and check that nothing was lost. Every deadline derives from the agents' lease TTL.
 */
import { sleep } from '../util/async';
import type { Registry } from '../units/registry';
import { makeFault, type ChaosControl, type Fault, type Observation } from './faults';
import { byInvariant, checkInvariants, INVARIANTS, type InvariantInput, type InvariantName, type JobDefinition, type Violation } from './invariants';
import type { FaultKind, PlannedFault } from './plan';
import { chaosWorkload, destroyWorkload, existingDefinitions, submitWorkload, type WorkloadUnit } from './workload';

/** How long each part of a run may take, from the lease TTL (emulated nodes get a longer TTL). */
export interface ChaosTimings {
  ttlSeconds: number;
  /** Two copies of a unit, or a conflicting pair, may share the cluster this long (the lease TTL: the agent fences before its lease can expire). */
  fencingWindowMs: number;
  /** From injection (or restore) until the invariants must hold again. */
  recoverDeadlineMs: number;
  /** Steady state before the first fault (units start, the global unit reaches every node). */
  steadyDeadlineMs: number;
  /** The invariants must hold this long in a row to count as recovered. */
  stableMs: number;
  /** Pause between observations. */
  pollMs: number;
}

export function timingsFor(ttlSeconds: number): ChaosTimings {
  const ttl = ttlSeconds * 1000;
  return {
    ttlSeconds,
    fencingWindowMs: ttl,
    // Lease expiry (1 TTL), a restarted fleetd waiting out its own old lease (1 TTL),
    // rescheduling and starting units, with room for an emulated node's stalls.
    recoverDeadlineMs: 4 * ttl + 60_000,
    steadyDeadlineMs: 6 * ttl + 180_000,
    stableMs: Math.max(2000, ttl / 2),
    pollMs: 1000,
  };
}

export interface PhaseOptions {
  observe: () => Promise<Observation>;
  /** Machine IDs that should be serving during this phase. */
  live: ReadonlySet<string>;
  definitions: readonly JobDefinition[];
  /** Why the phase's own goal is not reached yet (fault effect, node back); undefined once it is. */
  pending?: (obs: Observation) => string | undefined;
  minHoldMs?: number;
  stableMs: number;
  deadlineMs: number;
  fencingWindowMs: number;
  pollMs: number;
  log?: (message: string) => void;
}

export interface PhaseResult {
  /** From the phase's start until the invariants held for good (undefined: not within the deadline). */
  recoveredMs?: number;
  /** Why each invariant failed in this phase (empty: it held, or recovered in time). */
  failures: Record<InvariantName, string[]>;
  /** The longest stretch each invariant was broken, ms (0: never seen broken). */
  brokenMs: Record<InvariantName, number>;
  /** The goal not reached by the deadline, if any. */
  pending?: string;
  observations: number;
  observeErrors: number;
  lastObserveError?: string;
  /** The longest a single observation took, ms (a loaded host makes the figures coarse). */
  slowestObservationMs: number;
  last?: Observation;
}

function emptyRecord<T>(make: () => T): Record<InvariantName, T> {
  return Object.fromEntries(INVARIANTS.map((i) => [i, make()])) as Record<InvariantName, T>;
}

/**
 * Observes until the invariants hold (and `pending` says the goal is reached) for
 * `stableMs` in a row, at least `minHoldMs` after the start, or until the deadline.
 * Violations are judged by their tolerance: `converge` ones only if still there at the
 * deadline, `window` ones if one lasts longer than the fencing window, `never` ones at once.
 */
export async function watchPhase(o: PhaseOptions): Promise<PhaseResult> {
  const t0 = Date.now();
  const failures = emptyRecord<string[]>(() => []);
  const failedKeys = new Set<string>();
  const brokenMs = emptyRecord(() => 0);
  const brokenSince = new Map<InvariantName, number>();
  const windowSince = new Map<string, number>();
  const fail = (v: Violation, message: string) => {
    if (failedKeys.has(v.key)) return;
    failedKeys.add(v.key);
    failures[v.invariant].push(message);
  };
  const res: PhaseResult = { failures, brokenMs, observations: 0, observeErrors: 0, slowestObservationMs: 0 };
  let okSince: number | undefined;
  let violations: Violation[] = [];
  let pending: string | undefined;
  for (;;) {
    let obs: Observation | undefined;
    const asked = Date.now();
    try {
      obs = await o.observe();
      res.slowestObservationMs = Math.max(res.slowestObservationMs, Date.now() - asked);
    } catch (err) {
      res.observeErrors++;
      res.lastObserveError = (err as Error).message.split('\n')[0];
      okSince = undefined;
      o.log?.(`  ${((Date.now() - t0) / 1000).toFixed(1)} s: observation failed: ${res.lastObserveError}`);
    }
    if (obs) {
      res.observations++;
      res.last = obs;
      violations = checkInvariants({ snapshot: obs.snapshot, live: o.live, definitions: o.definitions, running: obs.running });
      pending = o.pending?.(obs);
      const present = new Set(violations.map((v) => v.key));
      for (const k of [...windowSince.keys()]) if (!present.has(k)) windowSince.delete(k);
      for (const v of violations) {
        if (v.tolerance === 'never') fail(v, v.message);
        if (v.tolerance === 'window') {
          const since = windowSince.get(v.key) ?? obs.at;
          windowSince.set(v.key, since);
          if (obs.at - since > o.fencingWindowMs) fail(v, `${v.message} for more than ${(o.fencingWindowMs / 1000).toFixed(0)} s (the fencing window)`);
        }
      }
      const broken = byInvariant(violations);
      for (const inv of INVARIANTS) {
        if (broken[inv].length) {
          const since = brokenSince.get(inv) ?? obs.at;
          brokenSince.set(inv, since);
          brokenMs[inv] = Math.max(brokenMs[inv], obs.at - since);
        } else brokenSince.delete(inv);
      }
      if (violations.length === 0 && pending === undefined) okSince ??= obs.at;
      else okSince = undefined;
      const now = Date.now();
      if (okSince !== undefined && obs.at - okSince >= o.stableMs && now - t0 >= (o.minHoldMs ?? 0)) {
        res.recoveredMs = Math.max(0, okSince - t0);
        return res;
      }
      if (o.log && (violations.length || pending)) o.log(`  ${((now - t0) / 1000).toFixed(1)} s: ${pending ? `waiting: ${pending}; ` : ''}${violations.length} violation${violations.length === 1 ? '' : 's'}${violations.length ? ` (${violations[0]!.message})` : ''}`);
    }
    if (Date.now() - t0 > o.deadlineMs) break;
    await sleep(o.pollMs);
  }
  const secs = (o.deadlineMs / 1000).toFixed(0);
  for (const v of violations) fail(v, `${v.message} (still, ${secs} s after the start)`);
  if (pending) res.pending = pending;
  if (res.observations === 0) res.pending = `no observation succeeded: ${res.lastObserveError ?? 'unknown error'}`;
  return res;
}

/** What the runner needs to look at the cluster; local.ts implements it for QEMU clusters. */
export interface ChaosObserver {
  /** Makes sure observations do not go through these nodes (a fault's target). */
  avoid(nodes: readonly string[]): Promise<void>;
  registry(): Registry;
  observe(opts: { units: readonly string[]; etcdHealth?: boolean }): Promise<Observation>;
  /** Writes keys outside Flotilla's prefix (acknowledged writes that must survive every fault). */
  writeSentinels(entries: ReadonlyMap<string, string>): Promise<void>;
  readSentinels(): Promise<Map<string, string>>;
  /** Removes the sentinel keys. */
  clearSentinels(): Promise<void>;
}

export interface FaultRow {
  index: number;
  kind: FaultKind;
  target?: string;
  description?: string;
  skipped?: string;
  /** Seconds after the run's start. */
  injectedAt?: number;
  /** Seconds from injection until the invariants held with the fault in place. */
  recoveredIn?: number;
  /** Seconds the restore itself took (a power-on includes the boot to SSH). */
  restoreTook?: number;
  /** Seconds from the start of the restore until the cluster was whole and the invariants held. */
  rejoinedIn?: number;
  invariants: Record<InvariantName, { ok: boolean; brokenFor: number; failures: string[] }>;
  /** Goals not reached, harness errors, manual interventions. */
  notes: string[];
  ok: boolean;
}

export interface ChaosReport {
  seed: number;
  cluster: string;
  timings: ChaosTimings;
  workload: Array<{ name: string; role: string }>;
  /** Units that were already in the registry, checked too. */
  existingUnits: string[];
  steady: { seconds?: number; ok: boolean; notes: string[] };
  faults: FaultRow[];
  sentinelKeys: number;
  ok: boolean;
  startedAt: string;
  seconds: number;
}

export interface ChaosRunOptions {
  cluster: string;
  seed: number;
  plan: readonly PlannedFault[];
  control: ChaosControl;
  observer: ChaosObserver;
  timings: ChaosTimings;
  /** Progress lines (stderr in the CLI). */
  log?: (message: string) => void;
  /** Print every observation's violations while waiting. */
  verbose?: boolean;
  /** Leave the workload submitted at the end. */
  keepUnits?: boolean;
  /** Workload override (tests); default chaosWorkload for the registered machines. */
  workload?: (machines: Parameters<typeof chaosWorkload>[0], run: string) => WorkloadUnit[];
}

function mergeResults(row: FaultRow, ...phases: PhaseResult[]): void {
  for (const inv of INVARIANTS) {
    const failures = phases.flatMap((p) => p.failures[inv]);
    row.invariants[inv] = { ok: failures.length === 0, failures, brokenFor: Math.max(0, ...phases.map((p) => p.brokenMs[inv])) / 1000 };
  }
}

const round = (ms: number) => Math.round(ms / 100) / 10;

export async function runChaos(o: ChaosRunOptions): Promise<ChaosReport> {
  const log = o.log ?? (() => undefined);
  const t = o.timings;
  const runStart = Date.now();
  // The observer may switch nodes between faults: always ask it for the current registry.
  const registry = () => o.observer.registry();
  const all = new Set(o.control.nodes.map((n) => n.machineId));
  const report: ChaosReport = {
    seed: o.seed,
    cluster: o.cluster,
    timings: t,
    workload: [],
    existingUnits: [],
    steady: { ok: false, notes: [] },
    faults: [],
    sentinelKeys: 0,
    ok: false,
    startedAt: new Date(runStart).toISOString(),
    seconds: 0,
  };
  const sentinels = new Map<string, string>();
  const writeSentinels = async (tag: string): Promise<string | undefined> => {
    const batch = new Map<string, string>();
    for (let i = 0; i < 5; i++) batch.set(`${tag}-${i}`, `${tag}.${i}.${Date.now()}`);
    // etcd refuses writes while it elects a leader (up to two election timeouts, and a fault
    // may have taken the leader): unavailable for a while is not lost, so retry for a TTL.
    const until = Date.now() + o.timings.ttlSeconds * 1000;
    for (let attempt = 1; ; attempt++) {
      try {
        await o.observer.writeSentinels(batch);
        for (const [k, v] of batch) sentinels.set(k, v);
        return undefined;
      } catch (err) {
        if (Date.now() >= until) return `writing sentinel keys (${tag}) failed (${attempt} attempt${attempt === 1 ? '' : 's'} in ${o.timings.ttlSeconds} s): ${(err as Error).message.split('\n')[0]}`;
        await sleep(Math.min(2000, o.timings.pollMs * attempt));
      }
    }
  };

  await o.observer.avoid([]);
  const units = (o.workload ?? chaosWorkload)(o.control.nodes, `${o.seed}@${report.startedAt}`);
  const existing = await existingDefinitions(registry());
  report.existingUnits = existing.defs.map((d) => d.name);
  report.steady.notes.push(...existing.skipped.map((s) => `not checked: ${s}`));
  const workloadDefs = await submitWorkload(registry(), units);
  const defs = [...existing.defs, ...workloadDefs];
  report.workload = units.map((u) => ({ name: u.name, role: u.role }));
  const unitNames = defs.filter((d) => !d.template).map((d) => d.name);
  log(`submitted ${units.length} workload units; waiting for steady state (deadline ${round(t.steadyDeadlineMs)} s)`);

  const observe = (etcdHealth = false) => () => o.observer.observe({ units: unitNames, etcdHealth });
  const wholeCluster = (obs: Observation): string | undefined => {
    const missing = o.control.nodes.filter((n) => !obs.snapshot.machines.some((m) => m.id === n.machineId));
    if (missing.length) return `machine${missing.length === 1 ? '' : 's'} of ${missing.map((n) => n.name).join(', ')} not registered`;
    const sick = [...(obs.etcdHealth ?? [])].filter(([, ok]) => !ok).map(([n]) => n);
    if (sick.length) return `etcd member${sick.length === 1 ? '' : 's'} on ${sick.join(', ')} not healthy`;
    if (!obs.snapshot.leader) return 'no engine leader';
    return undefined;
  };
  const phase = (extra: Partial<PhaseOptions> & Pick<PhaseOptions, 'observe' | 'live' | 'deadlineMs'>) =>
    watchPhase({ definitions: defs, stableMs: t.stableMs, fencingWindowMs: t.fencingWindowMs, pollMs: t.pollMs, ...(o.verbose ? { log } : {}), ...extra });
  /** bodies and sentinel keys: read once per phase end (they only ever change by loss). */
  const lostCheck = async (last: Observation | undefined): Promise<{ violations: Violation[]; note?: string }> => {
    if (!last) return { violations: [], note: 'no observation to check for loss' };
    try {
      const bodies = new Set<string>();
      for (const h of new Set(defs.map((d) => d.hash))) if ((await registry().getBody(h)) !== undefined) bodies.add(h);
      const input: InvariantInput = { snapshot: last.snapshot, live: all, definitions: defs, bodies, sentinels: { expected: sentinels, found: await o.observer.readSentinels() } };
      return { violations: checkInvariants(input).filter((v) => v.invariant === 'lost') };
    } catch (err) {
      return { violations: [], note: `reading bodies and sentinel keys failed: ${(err as Error).message.split('\n')[0]}` };
    }
  };

  try {
    const steadyNote = await writeSentinels('steady');
    if (steadyNote) report.steady.notes.push(steadyNote);
    const steady = await phase({ observe: observe(true), live: all, deadlineMs: t.steadyDeadlineMs, pending: wholeCluster });
    const steadyLost = await lostCheck(steady.last);
    if (steadyLost.note) report.steady.notes.push(steadyLost.note);
    report.steady.ok = steady.recoveredMs !== undefined && steadyLost.violations.length === 0;
    if (steady.recoveredMs !== undefined) report.steady.seconds = round(steady.recoveredMs);
    for (const inv of INVARIANTS) report.steady.notes.push(...steady.failures[inv].map((f) => `${inv}: ${f}`));
    report.steady.notes.push(...steadyLost.violations.map((v) => `lost: ${v.message}`));
    if (steady.pending) report.steady.notes.push(`not steady: ${steady.pending}`);
    if (!report.steady.ok) {
      log(`cluster not steady within ${round(t.steadyDeadlineMs)} s: ${report.steady.notes.join('; ')}`);
      return report;
    }
    log(`steady after ${report.steady.seconds} s`);

    /** The last fault after which the cluster did not get whole again: later results inherit its damage. */
    let damagedBy: number | undefined;
    for (const p of o.plan) {
      const row: FaultRow = { index: p.index, kind: p.kind, invariants: emptyRecord(() => ({ ok: true, brokenFor: 0, failures: [] })), notes: [], ok: true };
      report.faults.push(row);
      if (damagedBy !== undefined) row.notes.push(`started while the cluster had not recovered from fault #${damagedBy}`);
      let before: Observation;
      try {
        before = await o.observer.observe({ units: unitNames });
      } catch (err) {
        row.notes.push(`cannot observe the cluster before the fault: ${(err as Error).message}`);
        row.ok = false;
        continue;
      }
      const made = makeFault(p, { control: o.control, before, ttlSeconds: t.ttlSeconds });
      if ('skipped' in made) {
        row.skipped = made.skipped;
        log(`fault ${p.index}/${o.plan.length} ${p.kind}: skipped (${made.skipped})`);
        continue;
      }
      const fault: Fault = made;
      row.target = fault.target.name;
      row.description = fault.description;
      log(`fault ${p.index}/${o.plan.length}: ${fault.description}`);
      await o.observer.avoid([fault.target.name]);
      const pre = await writeSentinels(`f${p.index}-before`);
      if (pre) row.notes.push(pre);
      const injectedAt = Date.now();
      row.injectedAt = round(injectedAt - runStart);
      try {
        await fault.inject();
      } catch (err) {
        row.notes.push(`injection failed: ${(err as Error).message}`);
        row.ok = false;
        await fault.restore().catch((e: Error) => row.notes.push(`restore failed: ${e.message}`));
        continue;
      }
      // Written while the fault holds: what a degraded cluster acknowledged must survive its repair.
      const during = await writeSentinels(`f${p.index}-during`);
      if (during) row.notes.push(during);
      const live = new Set([...all].filter((id) => !(fault.targetOutOfService && id === fault.target.machineId)));
      const d = await phase({ observe: observe(), live, deadlineMs: t.recoverDeadlineMs, pending: fault.pendingDuring, minHoldMs: fault.minHoldMs });
      if (d.recoveredMs !== undefined) row.recoveredIn = round(d.recoveredMs);
      if (d.pending) row.notes.push(`fault effect not reached within ${round(t.recoverDeadlineMs)} s: ${d.pending}`);
      log(`  ${d.recoveredMs !== undefined ? `invariants hold ${row.recoveredIn} s after injection` : 'did not recover while the fault held'}; restoring`);
      const restoreStart = Date.now();
      try {
        const note = await fault.restore();
        if (note) row.notes.push(note);
      } catch (err) {
        row.notes.push(`restore failed: ${(err as Error).message}`);
        row.ok = false;
      }
      const afterStart = Date.now();
      row.restoreTook = round(afterStart - restoreStart);
      const a = await phase({
        observe: observe(true),
        live: all,
        deadlineMs: t.recoverDeadlineMs,
        pending: (obs) => wholeCluster(obs) ?? fault.pendingAfter(obs),
      });
      if (a.recoveredMs !== undefined) row.rejoinedIn = round(afterStart - restoreStart + a.recoveredMs);
      if (a.pending) row.notes.push(`cluster not whole within ${round(t.recoverDeadlineMs)} s of the restore: ${a.pending}`);
      const lost = await lostCheck(a.last);
      if (lost.note) row.notes.push(lost.note);
      mergeResults(row, d, a);
      for (const v of lost.violations) {
        row.invariants.lost.ok = false;
        row.invariants.lost.failures.push(v.message);
      }
      const slowest = Math.max(d.slowestObservationMs, a.slowestObservationMs);
      if (slowest > 10_000) row.notes.push(`an observation took up to ${round(slowest)} s (host overloaded?): times are that coarse`);
      for (const r of [d, a]) if (r.observeErrors) row.notes.push(`${r.observeErrors} observation${r.observeErrors === 1 ? '' : 's'} failed (last: ${r.lastObserveError})`);
      row.ok = row.ok && INVARIANTS.every((i) => row.invariants[i].ok) && d.recoveredMs !== undefined && a.recoveredMs !== undefined;
      damagedBy = a.recoveredMs === undefined ? p.index : undefined;
      log(`  ${row.ok ? 'ok' : 'FAILED'}: recovered in ${row.recoveredIn ?? '-'} s, whole again ${row.rejoinedIn ?? '-'} s after the restore began`);
    }
    report.ok = report.steady.ok && report.faults.every((f) => f.ok);
    return report;
  } finally {
    report.sentinelKeys = sentinels.size;
    if (!o.keepUnits) await destroyWorkload(registry(), workloadDefs).catch((err: Error) => log(`removing the workload failed: ${err.message}`));
    await o.observer.clearSentinels().catch((err: Error) => log(`removing the sentinel keys failed: ${err.message}`));
    report.seconds = round(Date.now() - runStart);
  }
}
