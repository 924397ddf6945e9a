/**
 * The registry: the one module that knows how Flotilla keeps scheduling state in etcd
 * (docs/registry.md). The key layout itself is src/config/key-layout.ts.
 *
 * Engine, agent and CLI talk to etcd only through `Registry` (or the narrower stores it
 * implements, ./stores.ts); none of them builds a key. Every multi-key change is one etcd
 * transaction, and every write the engine makes on behalf of its leadership is fenced: it
 * commits only while the engine's leader key still has the create revision the engine won
 * it with, so a deposed leader cannot write. Agent writes are fenced the same way by the
 * lease that holds their machine key.
 *
 * Errors from etcd surface as FlotillaError('external') naming the endpoints. Each method
 * is implemented in the module of the entity it touches (./units.ts, ./machines.ts, ...).
 */
import type { Etcd3 } from 'etcd3';
import { FlotillaError } from '../../errors';
import { resolvePrefix } from '../../config/key-layout';
import { RegistryCore } from './core';
import { buf, prefixEnd } from './etcd';
import * as health from './health';
import * as leadership from './leadership';
import { EngineLeadership } from './leadership';
import * as machines from './machines';
import type {
  Assignment,
  CampaignOptions,
  DesiredState,
  Fence,
  Job,
  LeaderInfo,
  Leadership,
  MachineInfo,
  MachineLease,
  Placement,
  RegistryChange,
  RegistryOptions,
  RegistrySnapshot,
  RegistryWatch,
  Rollout,
  RolloutLock,
  RolloutOptions,
  ScheduleChanges,
  ScheduleResult,
  StateReport,
  SubmitResult,
  Unit,
  UnitHealth,
  UnitState,
  WatchEvent,
  WatchOptions,
} from './model';
import * as placements from './placements';
import * as rollouts from './rollouts';
import * as schedule from './schedule';
import type { AgentStore, EngineStore, RolloutStore } from './stores';
import * as unitStates from './states';
import * as units from './units';
import * as views from './views';

export class Registry implements EngineStore, AgentStore, RolloutStore {
  readonly prefix: string;
  readonly endpoints: readonly string[];
  private readonly core: RegistryCore;

  private constructor(core: RegistryCore) {
    this.core = core;
    this.prefix = core.prefix;
    this.endpoints = core.endpoints;
  }

  /**
   * The etcd3 client this registry is connected with, for modules that keep their own
   * keys beside the registry's, under its prefix: service discovery
   * (`listServices(registry.etcd, servicesPrefix(registry.prefix))`, `Announcer.start`).
   * It stays the registry's: do not close it (`close()` does), and build keys with
   * src/config/key-layout.ts, never by hand.
   */
  get etcd(): Etcd3 {
    return this.core.client;
  }

  /** Connects and checks that etcd answers within `dialTimeoutMs`. */
  static async connect(opts: RegistryOptions): Promise<Registry> {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) throw new FlotillaError('invalid-input', 'registry: no etcd endpoints given');
    for (const e of opts.endpoints) {
      if (!/^https?:\/\/[^/\s]+:\d+\/?$/.test(e)) throw new FlotillaError('invalid-input', `registry: bad etcd endpoint ${JSON.stringify(e)}: want http(s)://host:port`);
    }
    const prefix = resolvePrefix(opts);
    const core = new RegistryCore(opts, prefix);
    const dialTimeoutMs = opts.dialTimeoutMs ?? 5000;
    try {
      await core.call('connect', () =>
        core.client.kv.range({ key: buf(prefix), range_end: prefixEnd(prefix), count_only: true }, { deadline: Date.now() + dialTimeoutMs }),
      );
    } catch (err) {
      core.client.close();
      throw err;
    }
    return new Registry(core);
  }

  // ---- units ---------------------------------------------------------
  /**
   * Submits a unit. Same name and same content again is a no-op (`created: false`);
   * same name with different content is a 'conflict' (destroy first, as in fleet).
   * Job, body and body reference are written in one transaction.
   */
  submitUnit(name: string, unitText: string, opts: { desiredState?: DesiredState } = {}): Promise<SubmitResult> {
    return units.submitUnit(this.core, name, unitText, opts);
  }

  /** The job and its unit file text, or undefined. */
  getUnit(name: string): Promise<Unit | undefined> {
    return units.getUnit(this.core, name);
  }

  /** A unit body by its content hash (bodies are immutable), or undefined once collected. */
  getBody(hash: string): Promise<string | undefined> {
    return units.getBody(this.core, hash);
  }

  /** All jobs, by name. */
  listUnits(): Promise<Job[]> {
    return units.listUnits(this.core);
  }

  /** Sets the desired state; 'not-found' if the unit is not submitted. */
  setDesiredState(name: string, state: DesiredState): Promise<Job> {
    return units.setDesiredState(this.core, name, state);
  }

  /**
   * Destroys a unit: job, placement verdict and every assignment made for it go; the
   * body goes too once no other unit uses it. Returns false if there was nothing to destroy.
   */
  destroyUnit(name: string): Promise<boolean> {
    return units.destroyUnit(this.core, name);
  }

  /** Removes every unreferenced body (left by a destroy that was interrupted). Returns how many. */
  collectGarbage(): Promise<number> {
    return units.collectGarbage(this.core);
  }

  // ---- machines ------------------------------------------------------
  /**
   * Announces a machine under a new lease of `ttlSeconds`, kept alive in the background.
   * 'conflict' if the ID is held by another live registration (e.g. a previous agent
   * whose lease has not expired yet). The lease is declared lost after
   * `lostAfterMs` without a keepalive answer (default: the TTL less a fifth, at least
   * 500 ms): earlier than etcd can expire it, so an agent that fences on 'lost' has
   * stopped its units before the engine may place them elsewhere, yet later than an etcd
   * leader election (election timeout, 2.5 s by default for a 4 s TTL) lasts.
   */
  registerMachine(info: MachineInfo, ttlSeconds: number, opts: { lostAfterMs?: number } = {}): Promise<MachineLease> {
    return machines.registerMachine(this.core, info, ttlSeconds, opts);
  }

  listMachines(): Promise<MachineInfo[]> {
    return machines.listMachines(this.core);
  }

  watchMachines(cb: (ev: WatchEvent<MachineInfo>) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
    return machines.watchMachines(this.core, cb, opts);
  }

  // ---- schedule (engine writes, fenced) ------------------------------
  /**
   * Assigns `unit` with content `hash` to `machineId`. Commits only if `fence` still
   * holds, the unit is submitted with that content, and the machine is registered;
   * otherwise 'conflict' (fenced out) or 'not-found'.
   */
  assign(machineId: string, unit: string, hash: string, fence: Fence, opts: { reason?: string; desiredState?: 'loaded' | 'launched' } = {}): Promise<Assignment> {
    return schedule.assign(this.core, machineId, unit, hash, fence, opts);
  }

  /** Removes an assignment (fenced). Returns false if there was none. */
  unassign(machineId: string, unit: string, fence: Fence): Promise<boolean> {
    return schedule.unassign(this.core, machineId, unit, fence);
  }

  /**
   * Applies many schedule changes with few transactions: removals first, then
   * assignments, in fenced batches (etcd allows 128 operations per transaction). A batch
   * whose checks fail (a unit destroyed or a machine gone meanwhile) is retried one change
   * at a time, so only the stale changes fail; they are returned, not thrown. A fence
   * failure throws 'conflict' at once.
   */
  applySchedule(changes: ScheduleChanges, fence: Fence, opts: { batchSize?: number; concurrency?: number } = {}): Promise<ScheduleResult> {
    return schedule.applySchedule(this.core, changes, fence, opts);
  }

  /** Every assignment, or one machine's. */
  listSchedule(machineId?: string): Promise<Assignment[]> {
    return schedule.listSchedule(this.core, machineId);
  }

  /** One machine's assignments only: this watch never sees other machines' events. */
  watchAssignments(machineId: string, cb: (ev: WatchEvent<Assignment>) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
    return schedule.watchAssignments(this.core, machineId, cb, opts);
  }

  // ---- placements (engine writes, fenced) ----------------------------
  /** Records that `unit` cannot be placed (fenced), or clears the verdict with `undefined`. */
  setPlacement(unit: string, info: { hash: string; reason: string } | undefined, fence: Fence): Promise<void> {
    return placements.setPlacement(this.core, unit, info, fence);
  }

  listPlacements(): Promise<Placement[]> {
    return placements.listPlacements(this.core);
  }

  // ---- health (engine writes, fenced) --------------------------------
  /** Records a unit's failure on a machine (fenced; only while that content is submitted). */
  recordFailure(h: UnitHealth, fence: Fence): Promise<void> {
    return health.recordFailure(this.core, h, fence);
  }

  /** Forgets a unit's failures on a machine (fenced). */
  clearHealth(unit: string, machineId: string, fence: Fence): Promise<void> {
    return health.clearHealth(this.core, unit, machineId, fence);
  }

  listHealth(unit?: string): Promise<UnitHealth[]> {
    return health.listHealth(this.core, unit);
  }

  // ---- rolling updates (client writes) -------------------------------
  getRollout(unit: string): Promise<Rollout | undefined> {
    return rollouts.getRollout(this.core, unit);
  }

  /**
   * Starts a rolling update: in one transaction the job's content becomes `unitText`
   * (body and reference added), the old content stays referenced, and the rollout record
   * is written. 'not-found' if the unit is not submitted; 'conflict' if a rollout of it
   * is in progress or the job changed meanwhile. `undefined` when the content is the same.
   */
  beginRollout(name: string, unitText: string, options: RolloutOptions): Promise<Rollout | undefined> {
    return rollouts.beginRollout(this.core, name, unitText, options);
  }

  /**
   * Writes a changed rollout record if nobody changed it since `r.revision`. A new phase
   * changes the job too: `rolling-back` puts the old content back as the job's; `done`
   * drops the old content, `rolled-back` the new one (their bodies go when unreferenced).
   * Returns the record with its new revision; 'conflict' if it changed meanwhile.
   */
  saveRollout(r: Rollout): Promise<Rollout> {
    return rollouts.saveRollout(this.core, r);
  }

  /**
   * Takes the lock that makes one client the driver of a unit's rollout, held under a
   * lease: a driver that dies lets it go after `ttlSeconds`. 'conflict' if held.
   */
  lockRollout(unit: string, driver: string, ttlSeconds = 10): Promise<RolloutLock> {
    return rollouts.lockRollout(this.core, unit, driver, ttlSeconds);
  }

  // ---- unit states (agent writes, under its lease) -------------------
  /** Every unit state report as it changes (a snapshot first, as typed watches do). */
  watchStates(cb: (ev: WatchEvent<UnitState>) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
    return unitStates.watchStates(this.core, cb, opts);
  }

  /** Reports what systemd says of a unit; only while `lease` still holds the machine's registration. */
  reportState(machineId: string, lease: MachineLease, state: { unit: string; hash: string; active: string; sub: string; result?: string; updatedAt?: string }): Promise<UnitState> {
    return unitStates.reportState(this.core, machineId, lease, state);
  }

  /** Reports several units' states in one transaction per 100 (an agent's batch). */
  reportStates(machineId: string, lease: MachineLease, states: ReadonlyArray<StateReport>): Promise<void> {
    return unitStates.reportStates(this.core, machineId, lease, states);
  }

  /** Removes a unit's reported state (the agent unloaded it). */
  clearState(machineId: string, lease: MachineLease, unit: string): Promise<void> {
    return unitStates.clearState(this.core, machineId, lease, unit);
  }

  /** Every reported state, or one machine's. */
  listStates(machineId?: string): Promise<UnitState[]> {
    return unitStates.listStates(this.core, machineId);
  }

  // ---- engine leadership ---------------------------------------------
  /**
   * Waits until `candidateId` holds `engine/leader` (created under a fresh lease when
   * absent), then returns the leadership with its fence. Rejects with 'timeout' on
   * abort, or 'external' when etcd fails.
   */
  campaign(candidateId: string, opts: CampaignOptions = {}): Promise<Leadership> {
    return leadership.campaign(this.core, candidateId, opts);
  }

  /** Who leads now, if anyone. */
  getLeader(): Promise<LeaderInfo | undefined> {
    return leadership.getLeader(this.core);
  }

  // ---- whole-registry views for the engine ---------------------------
  /** Everything at one revision; `states: false` skips unit states (the engine does not place by them). */
  snapshot(opts: { states?: boolean } = {}): Promise<RegistrySnapshot> {
    return views.snapshot(this.core, opts);
  }

  /**
   * Notifies of every change to jobs, machines, schedule, states and placements (not
   * bodies, references or the leader key). Starts with a 'resync'; a later 'resync'
   * means changes may have been missed: re-read with snapshot().
   */
  watchAll(cb: (ev: RegistryChange) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
    return views.watchAll(this.core, cb, opts);
  }

  /**
   * Closes watches, stops keepalives without revoking (machine registrations and
   * leadership lapse after their TTL, as after a crash), and closes the client.
   */
  async close(): Promise<void> {
    const core = this.core;
    if (core.closed) return;
    // Leaderships first: each also shuts down its own watch and lease.
    for (const x of core.tracked()) if (x instanceof EngineLeadership) await x.shutdown();
    for (const x of core.tracked()) await x.shutdown();
    core.closed = true;
    core.client.close();
  }
}
