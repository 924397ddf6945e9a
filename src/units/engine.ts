/**
 * The engine: every fleetd is a candidate; the one holding the leader key schedules.
 * It reconciles on every registry change (coalesced) and on a periodic sweep: read a
 * snapshot, plan (scheduler.ts, pure), write the difference with fenced transactions
 * so a deposed leader's late writes fail.
 */
import { EventEmitter } from 'node:events';
import { FlotillaError } from '../errors';
import { mapLimit, Signal, sleep } from '../util/async';
import { ROLLOUT_IN_PROGRESS, type EngineStore, type Fence, type Leadership, type RegistrySnapshot, type RegistryWatch, type UnitHealth, type UnitState } from './registry';
import { planSchedule, type SchedulableJob, type SchedulePlan } from './scheduler';
import { parseUnitFile, unitNameInfo } from './unit-file';
import { avoidReason, backoffFor, parseUnitPolicy, shouldReschedule, type UnitPolicy } from './unit-policy';
import { parseXFleet, type XFleetOptions } from './xfleet';

export interface EngineOptions {
  /** A `Registry`, or anything else that offers what the engine uses of it. */
  registry: EngineStore;
  /** Names this candidate in the leader key (the machine ID). */
  candidateId: string;
  /** TTL of the leader lease: a dead leader is replaced within it. */
  leaderTtlSeconds: number;
  /** Periodic sweep, besides reconciling on every change. */
  reconcileIntervalMs: number;
  /** Concurrent etcd writes while applying a plan. */
  writeConcurrency?: number;
  log?: (message: string) => void;
  /** The engine's clock (ms since the epoch), for failure backoffs; injectable for tests. */
  now?: () => number;
}

export interface ReconcileResult {
  assigned: number;
  unassigned: number;
  unplaceable: number;
  /** Failures recorded this pass (units that will move). */
  failures: number;
  revision: string;
  ms: number;
}

/**
 * Parsed [X-Fleet] options and policy per unit name and content hash. The name is part of the key:
 * instances of one template share a body, but specifiers (`MachineOf=web@%i.service`) expand per instance.
 */
type ParsedOptions = { options: XFleetOptions; policy: UnitPolicy } | { problem: string };

export class Engine extends EventEmitter {
  private readonly opts: Required<Omit<EngineOptions, 'log'>> & Pick<EngineOptions, 'log'>;
  /** Failed states seen on the watch since the last pass, by unit and machine. */
  private failedStates = new Map<string, UnitState>();
  /** After a (re)subscription, the next pass reads every state: failures may have been missed. */
  private scanStates = true;
  private readonly abort = new AbortController();
  private readonly parsed = new Map<string, ParsedOptions>();
  private running: Promise<void> | undefined;
  private leadership: Leadership | undefined;
  private wake = new Signal();

  constructor(opts: EngineOptions) {
    super();
    this.opts = { writeConcurrency: 8, now: Date.now, ...opts };
  }

  get isLeader(): boolean {
    return this.leadership?.isLeader ?? false;
  }

  /** Starts campaigning in the background; 'leading', 'reconciled' and 'error' events follow. */
  start(): void {
    this.running ??= this.loop();
  }

  /** Stops scheduling and gives leadership up (so another candidate takes over at once). */
  async stop(): Promise<void> {
    this.abort.abort();
    this.wake.poke();
    await this.running;
    if (this.leadership?.isLeader) await this.leadership.resign().catch(() => undefined);
  }

  private log(message: string): void {
    this.opts.log?.(`engine: ${message}`);
  }

  private async loop(): Promise<void> {
    let backoff = 200;
    while (!this.abort.signal.aborted) {
      let leadership: Leadership;
      try {
        leadership = await this.opts.registry.campaign(this.opts.candidateId, { ttlSeconds: this.opts.leaderTtlSeconds, signal: this.abort.signal });
      } catch (err) {
        if (this.abort.signal.aborted) break;
        this.emit('error', err);
        this.log(`campaign failed: ${(err as Error).message}; retrying in ${backoff} ms`);
        await sleep(backoff, this.abort.signal);
        backoff = Math.min(backoff * 2, 5000);
        continue;
      }
      backoff = 200;
      this.leadership = leadership;
      this.log(`${this.opts.candidateId} is the leader`);
      this.emit('leading');
      await this.lead(leadership);
      if (!this.abort.signal.aborted) this.log(`${this.opts.candidateId} lost leadership; campaigning again`);
    }
  }

  private async lead(leadership: Leadership): Promise<void> {
    this.wake = new Signal();
    const wake = this.wake;
    leadership.on('lost', () => wake.poke());
    let watch: RegistryWatch | undefined;
    const sweep = setInterval(() => wake.poke(), this.opts.reconcileIntervalMs);
    try {
      this.scanStates = true;
      watch = await this.opts.registry.watchAll((ev) => {
        // Placement depends on jobs, machines, rollouts and failures; the engine's own
        // schedule/placement/health writes and healthy state reports need no reconcile.
        if (ev.type === 'resync') this.scanStates = true;
        if (ev.type === 'put' && ev.kind === 'state' && ev.state?.active === 'failed') {
          this.failedStates.set(`${ev.state.unit}\0${ev.state.machineId}`, ev.state);
          wake.poke();
        }
        if (ev.type === 'resync' || ev.kind === 'job' || ev.kind === 'machine' || ev.kind === 'rollout') wake.poke();
      });
      wake.poke();
      while (!this.abort.signal.aborted && leadership.isLeader) {
        await wake.next();
        if (this.abort.signal.aborted || !leadership.isLeader) break;
        try {
          const r = await this.reconcile(leadership.fence);
          this.emit('reconciled', r);
        } catch (err) {
          if (FlotillaError.is(err) && err.code === 'conflict') break; // fenced out: no longer the leader
          this.scanStates = true; // failures taken from the watch for this pass must not be lost
          this.emit('error', err);
          this.log(`reconcile failed: ${(err as Error).message}`);
          await sleep(200, this.abort.signal);
          wake.poke();
        }
      }
    } finally {
      clearInterval(sweep);
      await watch?.close().catch(() => undefined);
    }
  }

  /** Jobs with their parsed options, and the units whose body does not parse. */
  private async optionsFor(snapshot: RegistrySnapshot): Promise<{ jobs: SchedulableJob[]; policies: Map<string, UnitPolicy>; invalid: Map<string, { hash: string; reason: string }> }> {
    const jobs: SchedulableJob[] = [];
    const policies = new Map<string, UnitPolicy>();
    const rollouts = new Map(snapshot.rollouts.filter((r) => ROLLOUT_IN_PROGRESS.includes(r.phase)).map((r) => [r.unit, r]));
    const invalid = new Map<string, { hash: string; reason: string }>();
    const seen = new Set<string>();
    for (const job of snapshot.jobs) {
      if (unitNameInfo(job.name).kind === 'template') continue; // templates are never placed; their instances are
      const key = `${job.name}\0${job.hash}`;
      seen.add(key);
      let p = this.parsed.get(key);
      if (!p) {
        const text = await this.opts.registry.getBody(job.hash);
        if (text === undefined) continue; // destroyed since the snapshot
        try {
          const unit = parseUnitFile(text, job.name);
          const options = parseXFleet(unit);
          p = { options, policy: parseUnitPolicy(unit, options) };
        } catch (err) {
          p = { problem: (err as Error).message.replace(/\n\s*/g, '; ') };
        }
        this.parsed.set(key, p);
      }
      if ('options' in p) {
        const rollout = rollouts.get(job.name);
        jobs.push({
          name: job.name,
          hash: job.hash,
          desiredState: job.desiredState,
          options: p.options,
          resources: p.policy.resources,
          placement: p.policy.placement,
          ...(rollout ? { rollout: { hashOn: new Map(Object.entries(rollout.hashOn)) } } : {}),
        });
        policies.set(job.name, p.policy);
      } else invalid.set(job.name, { hash: job.hash, reason: `invalid unit: ${p.problem}` });
    }
    // Destroyed units and replaced bodies are never asked for again.
    for (const key of this.parsed.keys()) if (!seen.has(key)) this.parsed.delete(key);
    return { jobs, policies, invalid };
  }

  /**
   * Turns failed state reports into health records (a failure per unit and machine,
   * under the unit's policy, counted once), forgets records that no longer apply, and
   * returns the machines each unit must avoid now.
   */
  private async recordFailures(snap: RegistrySnapshot, policies: Map<string, UnitPolicy>, fence: Fence): Promise<{ avoid: Map<string, Map<string, string>>; recorded: number }> {
    const reg = this.opts.registry;
    const now = this.opts.now();
    const failed = this.failedStates;
    this.failedStates = new Map();
    for (const st of snap.states) if (st.active === 'failed') failed.set(`${st.unit}\0${st.machineId}`, st);
    const health = new Map(snap.health.map((h) => [`${h.unit}\0${h.machineId}`, h]));
    const assigned = new Map(snap.schedule.map((a) => [`${a.unit}\0${a.machineId}`, a]));
    const jobs = new Map(snap.jobs.map((j) => [j.name, j]));
    const rollouts = new Map(snap.rollouts.map((r) => [r.unit, r]));
    let recorded = 0;
    for (const [key, st] of failed) {
      const policy = policies.get(st.unit);
      const a = assigned.get(key);
      // Only a failure of the copy the engine placed there counts (not a stale report).
      if (!policy || !a || a.hash !== st.hash || !shouldReschedule(policy.reschedule, st.result)) continue;
      const old = health.get(key);
      if (old && old.hash === st.hash && old.stateUpdatedAt === st.updatedAt) continue;
      const failures = (old && old.hash === st.hash ? old.failures : 0) + 1;
      const h: UnitHealth = {
        unit: st.unit,
        machineId: st.machineId,
        hash: st.hash,
        failures,
        lastResult: st.result ?? 'failed',
        lastFailureAt: new Date(now).toISOString(),
        avoidUntil: new Date(now + backoffFor(policy, failures)).toISOString(),
        stateUpdatedAt: st.updatedAt,
      };
      try {
        await reg.recordFailure(h, fence);
      } catch (err) {
        if (FlotillaError.is(err) && err.code === 'not-found') continue; // destroyed or updated meanwhile
        throw err;
      }
      health.set(key, h);
      recorded++;
      this.log(`${st.unit} failed on ${st.machineId} (${h.lastResult}, failure ${failures}); avoiding it there until ${h.avoidUntil}`);
    }
    const avoid = new Map<string, Map<string, string>>();
    for (const [key, h] of health) {
      const job = jobs.get(h.unit);
      const policy = policies.get(h.unit);
      const r = rollouts.get(h.unit);
      const current = job && (h.hash === job.hash || (r && ROLLOUT_IN_PROGRESS.includes(r.phase) && (h.hash === r.fromHash || h.hash === r.toHash)));
      const until = Date.parse(h.avoidUntil);
      // Forgiven: a new content starts clean, and a machine is forgiven a backoff-max after its backoff ended.
      if (!current || !policy || now > until + policy.backoffMaxMs) {
        if (job) await reg.clearHealth(h.unit, h.machineId, fence);
        health.delete(key);
        continue;
      }
      if (now < until) {
        let m = avoid.get(h.unit);
        if (!m) avoid.set(h.unit, (m = new Map()));
        m.set(h.machineId, avoidReason(h));
      }
    }
    return { avoid, recorded };
  }

  /** One reconcile pass: plan from a snapshot and write the difference. */
  async reconcile(fence: Fence): Promise<ReconcileResult> {
    const t0 = performance.now();
    const reg = this.opts.registry;
    const scan = this.scanStates;
    this.scanStates = false;
    const snap = await reg.snapshot({ states: scan });
    const { jobs, policies, invalid } = await this.optionsFor(snap);
    const { avoid, recorded } = await this.recordFailures(snap, policies, fence);
    const plan: SchedulePlan = planSchedule({ jobs, machines: snap.machines, schedule: snap.schedule, avoid });
    const stateOf = new Map(jobs.map((j) => [j.name, j.desiredState]));
    const current = new Map(snap.schedule.map((a) => [`${a.unit}\0${a.machineId}`, a]));
    // A changed desired state (loaded <-> launched) rewrites the assignment so the agent sees it.
    const assign = plan.target.filter((t) => {
      const c = current.get(`${t.unit}\0${t.machineId}`);
      return !c || c.hash !== t.hash || c.desiredState !== stateOf.get(t.unit);
    });
    // Remove first: a unit moving between machines is never assigned twice, and
    // Conflicts are never violated in the schedule, even for a moment.
    const { failed } = await reg.applySchedule(
      {
        unassign: plan.unassign,
        // Grouped by machine, so an agent gets its units in few watch responses.
        assign: assign
          .map((a) => ({ ...a, desiredState: stateOf.get(a.unit) === 'launched' ? ('launched' as const) : ('loaded' as const) }))
          .sort((x, y) => (x.machineId < y.machineId ? -1 : x.machineId > y.machineId ? 1 : 0)),
      },
      fence,
      { concurrency: this.opts.writeConcurrency },
    );
    // Stale changes (a unit destroyed, a machine gone since the snapshot) are redone next pass.
    if (failed.length) this.wake.poke();
    // Placements: say why a unit is not placed; clear verdicts that no longer hold.
    const verdicts = new Map<string, { hash: string; reason: string }>();
    const hashOf = new Map(jobs.map((j) => [j.name, j.hash]));
    for (const [unit, reason] of plan.unplaceable) verdicts.set(unit, { hash: hashOf.get(unit)!, reason });
    for (const [unit, v] of invalid) verdicts.set(unit, v);
    const existing = new Map(snap.placements.map((p) => [p.unit, p]));
    const placementWrites: Array<() => Promise<void>> = [];
    for (const [unit, v] of verdicts) {
      const e = existing.get(unit);
      if (!e || e.reason !== v.reason || e.hash !== v.hash) placementWrites.push(() => reg.setPlacement(unit, v, fence));
    }
    for (const unit of existing.keys()) if (!verdicts.has(unit)) placementWrites.push(() => reg.setPlacement(unit, undefined, fence));
    await mapLimit(placementWrites, this.opts.writeConcurrency, (w) => w());
    if (assign.length || plan.unassign.length) this.log(`revision ${snap.revision}: assigned ${assign.length}, removed ${plan.unassign.length}, unplaceable ${verdicts.size}`);
    return { assigned: assign.length, unassigned: plan.unassign.length, unplaceable: verdicts.size, failures: recorded, revision: snap.revision, ms: performance.now() - t0 };
  }
}
