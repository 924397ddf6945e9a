/**
 * The engine: every fleetd is a candidate; the one holding the leader key schedules.
 * It reconciles on every registry change (coalesced) and on a periodic sweep: read a
 * snapshot, plan (scheduler.ts, pure), write the difference with fenced transactions
 * so a deposed leader's late writes fail.
 */
import { EventEmitter } from 'node:events';
import { FlotillaError } from '../errors';
import { mapLimit, Signal, sleep } from '../util/async';
import type { Fence, Leadership, Registry, RegistrySnapshot, RegistryWatch } from './registry';
import { planSchedule, type SchedulableJob, type SchedulePlan } from './scheduler';
import { parseUnitFile, unitNameInfo } from './unit-file';
import { parseXFleet, type XFleetOptions } from './xfleet';

export interface EngineOptions {
  registry: Registry;
  /** Names this candidate in the leader key (the machine ID). */
  candidateId: string;
  /** TTL of the leader lease: a dead leader is replaced within it. */
  leaderTtlSeconds: number;
  /** Periodic sweep, besides reconciling on every change. */
  reconcileIntervalMs: number;
  /** Concurrent etcd writes while applying a plan. */
  writeConcurrency?: number;
  log?: (message: string) => void;
}

export interface ReconcileResult {
  assigned: number;
  unassigned: number;
  unplaceable: number;
  revision: string;
  ms: number;
}

/** Parsed [X-Fleet] options per content hash: bodies never change, so each is parsed once. */
type ParsedOptions = { options: XFleetOptions } | { problem: string };

export class Engine extends EventEmitter {
  private readonly opts: Required<Omit<EngineOptions, 'log'>> & Pick<EngineOptions, 'log'>;
  private readonly abort = new AbortController();
  private readonly parsed = new Map<string, ParsedOptions>();
  private running: Promise<void> | undefined;
  private leadership: Leadership | undefined;
  private wake = new Signal();

  constructor(opts: EngineOptions) {
    super();
    this.opts = { writeConcurrency: 8, ...opts };
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
      watch = await this.opts.registry.watchAll((ev) => {
        // Placement depends on jobs and machines only; the engine's own schedule/placement
        // writes and agents' state reports come back as events but need no reconcile.
        if (ev.type === 'resync' || ev.kind === 'job' || ev.kind === 'machine') wake.poke();
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
  private async optionsFor(snapshot: RegistrySnapshot): Promise<{ jobs: SchedulableJob[]; invalid: Map<string, { hash: string; reason: string }> }> {
    const jobs: SchedulableJob[] = [];
    const invalid = new Map<string, { hash: string; reason: string }>();
    for (const job of snapshot.jobs) {
      if (unitNameInfo(job.name).kind === 'template') continue; // templates are never placed; their instances are
      let p = this.parsed.get(job.hash);
      if (!p) {
        const text = await this.opts.registry.getBody(job.hash);
        if (text === undefined) continue; // destroyed since the snapshot
        try {
          p = { options: parseXFleet(parseUnitFile(text, job.name)) };
        } catch (err) {
          p = { problem: (err as Error).message.replace(/\n\s*/g, '; ') };
        }
        this.parsed.set(job.hash, p);
      }
      if ('options' in p) jobs.push({ name: job.name, hash: job.hash, desiredState: job.desiredState, options: p.options });
      else invalid.set(job.name, { hash: job.hash, reason: `invalid unit: ${p.problem}` });
    }
    return { jobs, invalid };
  }

  /** One reconcile pass: plan from a snapshot and write the difference. */
  async reconcile(fence: Fence): Promise<ReconcileResult> {
    const t0 = performance.now();
    const reg = this.opts.registry;
    const snap = await reg.snapshot({ states: false });
    const { jobs, invalid } = await this.optionsFor(snap);
    const plan: SchedulePlan = planSchedule({ jobs, machines: snap.machines, schedule: snap.schedule });
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
    return { assigned: assign.length, unassigned: plan.unassign.length, unplaceable: verdicts.size, revision: snap.revision, ms: performance.now() - t0 };
  }
}
