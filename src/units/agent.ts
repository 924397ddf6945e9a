/**
 * The agent: registers its machine under a lease, watches only its own assignments,
 * runs them through a runner, and reports their states.
 *
 * Fencing: when the lease cannot be kept (etcd unreachable), the agent stops every unit
 * it runs *before* the lease can expire on the server, so a copy the engine reschedules
 * elsewhere never runs beside this one (fleet issue #440). It then registers again.
 */
import { EventEmitter } from 'node:events';
import { FlotillaError } from '../errors';
import { Signal, sleep } from '../util/async';
import type { AgentStore, Assignment, MachineInfo, MachineLease, RegistryWatch } from './registry';
import type { UnitRunner, UnitStatus } from './runner/types';

export interface AgentOptions {
  /** A `Registry`, or anything else that offers what an agent uses of it. */
  registry: AgentStore;
  machine: Omit<MachineInfo, 'startedAt' | 'version'>;
  /** Lease TTL in seconds. */
  ttlSeconds: number;
  runner: UnitRunner;
  version?: string;
  log?: (message: string) => void;
}

export class Agent extends EventEmitter {
  private readonly abort = new AbortController();
  private lease: MachineLease | undefined;
  private watch: RegistryWatch | undefined;
  /** What the engine assigned to this machine, by unit. */
  private desired = new Map<string, Assignment>();
  private readonly bodies = new Map<string, string>();
  private readonly wake = new Signal();
  private running: Promise<void> | undefined;
  private fenced = false;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly opts: AgentOptions) {
    super();
  }

  get machineId(): string {
    return this.opts.machine.id;
  }

  /** True while registered with a live lease. */
  get registered(): boolean {
    return this.lease?.alive ?? false;
  }

  private log(message: string): void {
    this.opts.log?.(`agent ${this.machineId}: ${message}`);
  }

  /** Registers and starts following assignments; resolves once registered the first time. */
  async start(): Promise<void> {
    this.unsubscribe = this.opts.runner.onStateChange((s) => void this.report(s));
    await this.register();
    this.running = this.loop();
  }

  /**
   * Stops following assignments. `stopUnits` (default true) stops the units too and
   * deregisters at once; false leaves them (as a crash would) and lets the lease expire.
   */
  async stop(opts: { stopUnits?: boolean } = {}): Promise<void> {
    const stopUnits = opts.stopUnits ?? true;
    this.abort.abort();
    this.wake.poke();
    await this.running?.catch(() => undefined);
    await this.watch?.close().catch(() => undefined);
    this.unsubscribe?.();
    if (stopUnits) {
      await this.opts.runner.close();
      await this.lease?.revoke().catch(() => undefined);
    } else {
      this.lease?.release();
    }
  }

  private async register(): Promise<void> {
    const { registry, machine, ttlSeconds } = this.opts;
    const lease = await registry.registerMachine({ ...machine, startedAt: new Date().toISOString(), version: this.opts.version ?? 'dev' }, ttlSeconds);
    let lostEarly: FlotillaError | undefined;
    lease.on('lost', (err) => {
      if (this.lease === lease) void this.fence(err);
      else lostEarly ??= err;
    });
    try {
      this.watch = await registry.watchAssignments(machine.id, (ev) => {
        if (ev.type === 'snapshot') this.desired = new Map(ev.items.map((a) => [a.unit, a]));
        else if (ev.type === 'put') this.desired.set(ev.item.unit, ev.item);
        else this.desired.delete(ev.id);
        this.wake.poke();
      });
      if (lostEarly) throw lostEarly;
    } catch (err) {
      // Registered but not following assignments: units would be scheduled here and never
      // run, and every retry would collide with this very lease ("already registered")
      // for as long as it is kept alive. Give it back (or at least stop keeping it alive).
      await this.watch?.close().catch(() => undefined);
      this.watch = undefined;
      await lease.revoke().catch(() => lease.release());
      throw err;
    }
    this.lease = lease;
    this.fenced = false;
    this.log(`registered (lease ${lease.leaseId}, TTL ${ttlSeconds} s)`);
    this.emit('registered');
    this.wake.poke();
  }

  /** Lease lost: stop everything now, then register again once etcd answers. */
  private async fence(err: FlotillaError): Promise<void> {
    if (this.fenced || this.abort.signal.aborted) return;
    this.fenced = true;
    this.log(`fencing: ${err.message}; stopping ${this.opts.runner.list().length} units`);
    await this.watch?.close().catch(() => undefined);
    this.watch = undefined;
    this.desired = new Map();
    this.startedHash.clear();
    await Promise.all(this.opts.runner.list().map((u) => this.opts.runner.remove(u).catch(() => undefined)));
    this.emit('fenced', err);
    let backoff = 250;
    while (!this.abort.signal.aborted) {
      try {
        await this.register();
        return;
      } catch (e) {
        this.log(`register failed: ${(e as Error).message}; retrying in ${backoff} ms`);
        await sleep(backoff, this.abort.signal);
        backoff = Math.min(backoff * 2, 4000);
      }
    }
  }

  private async loop(): Promise<void> {
    while (!this.abort.signal.aborted) {
      await this.wake.next();
      if (this.abort.signal.aborted) break;
      if (this.fenced) continue;
      try {
        await this.reconcile();
      } catch (err) {
        this.emit('error', err);
        this.log(`reconcile failed: ${(err as Error).message}`);
        await sleep(500, this.abort.signal);
        this.wake.poke();
      }
    }
  }

  private async body(a: Assignment): Promise<string | undefined> {
    let text = this.bodies.get(a.hash);
    if (text === undefined) {
      text = await this.opts.registry.getBody(a.hash);
      if (text !== undefined) this.bodies.set(a.hash, text);
    }
    return text;
  }

  /** Makes the runner match the assignments. */
  private async reconcile(): Promise<void> {
    const runner = this.opts.runner;
    const desired = new Map(this.desired);
    for (const name of runner.list()) {
      if (desired.has(name)) continue;
      await runner.remove(name);
      this.startedHash.delete(name);
      this.reported.delete(name);
      if (this.lease?.alive) await this.opts.registry.clearState(this.machineId, this.lease, name).catch(() => undefined);
    }
    await Promise.all([...desired.values()].map((a) => this.apply(a)));
    const wanted = new Set([...desired.values()].map((a) => a.hash));
    for (const hash of this.bodies.keys()) if (!wanted.has(hash)) this.bodies.delete(hash);
  }

  /** Brings one assigned unit to its desired state. */
  private async apply(a: Assignment): Promise<void> {
    const runner = this.opts.runner;
    const text = await this.body(a);
    if (text === undefined) return; // destroyed meanwhile; the assignment goes next
    // New content: the old copy goes first (the runner refuses to start over a different text).
    const changed = this.startedHash.has(a.unit) && this.startedHash.get(a.unit) !== a.hash;
    if (changed) {
      await runner.remove(a.unit);
      this.startedHash.delete(a.unit);
    }
    if (a.desiredState === 'launched') {
      // Started once already: leave it, even failed (a crash loop that hit its start limit
      // stays failed and visible rather than being retried forever).
      if (!this.startedHash.has(a.unit)) {
        this.startedHash.set(a.unit, a.hash);
        await runner.start(a.unit, text).catch((err: Error) => this.log(`start ${a.unit} failed: ${err.message}`));
      }
    } else {
      if ((await runner.state(a.unit)).active !== 'inactive') await runner.stop(a.unit);
      this.startedHash.delete(a.unit);
    }
    await this.report(await runner.state(a.unit));
  }

  /** The content each unit was last started with. */
  private readonly startedHash = new Map<string, string>();

  /**
   * Reports a unit's state. All of this agent's reports go through one writer that
   * sends every pending change in one transaction, so a burst of starts costs one write
   * and an older state can never land after a newer one.
   */
  private report(s: UnitStatus): Promise<void> {
    this.pendingReports.set(s.name, s);
    this.flushing ??= this.flushReports();
    return this.flushing;
  }

  private async flushReports(): Promise<void> {
    // Always yield first: `flushing` must be set before this can finish, or a report
    // arriving later would see a finished promise and never be written.
    await null;
    while (this.pendingReports.size > 0) {
      const batch = [...this.pendingReports.values()];
      this.pendingReports.clear();
      const lease = this.lease;
      if (!lease?.alive) continue;
      const writes: Array<{ unit: string; hash: string; active: string; sub: string; result?: string; key: string }> = [];
      for (const st of batch) {
        const a = this.desired.get(st.name);
        if (!a) continue;
        // The content that actually runs: between a new assignment and the restart, the old
        // copy's state must not pass for the new content's (a rolling update waits on it).
        const hash = this.startedHash.get(st.name) ?? a.hash;
        // Only changes are written: reconciles re-report every unit, etcd need not hear it.
        const key = `${hash} ${lease.leaseId} ${st.active} ${st.sub} ${st.result ?? ''}`;
        if (this.reported.get(st.name) !== key) writes.push({ unit: st.name, hash, active: st.active, sub: st.sub, ...(st.result !== undefined ? { result: st.result } : {}), key });
      }
      if (writes.length === 0) continue;
      try {
        await this.opts.registry.reportStates(this.machineId, lease, writes);
        for (const w of writes) this.reported.set(w.unit, w.key);
      } catch (err) {
        this.log(`reporting ${writes.length} states failed: ${(err as Error).message}`);
      }
    }
    this.flushing = undefined;
  }

  private readonly pendingReports = new Map<string, UnitStatus>();
  private flushing: Promise<void> | undefined;
  /** What was last written for each unit (hash, lease, state), to skip repeats. */
  private readonly reported = new Map<string, string>();
}
