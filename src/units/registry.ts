/**
 * The registry: the one module that knows Flotilla's etcd key layout (docs/registry.md).
 *
 * Engine, agent and CLI talk to etcd only through `Registry`; no other module builds a
 * key. Every multi-key change is one etcd transaction, and every write the engine makes
 * on behalf of its leadership is fenced: it commits only while the engine's leader key
 * still has the create revision the engine won it with, so a deposed leader cannot
 * write. Agent writes are fenced the same way by the lease that holds their machine key.
 *
 * Errors from etcd surface as FlotillaError('external') naming the endpoints.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  CompareResult,
  CompareTarget,
  Etcd3,
  type ICompare,
  type IKeyValue,
  type IOptions,
  type IRangeResponse,
  type IRequestOp,
  type ITxnRequest,
  type ITxnResponse,
  type IWatchResponse,
  type Lease,
  type Watcher,
} from 'etcd3';
import { FlotillaError } from '../errors';
import { checkHash, checkRegistryName, registryKeys, registryPrefix, resolvePrefix, type RegistryKeys } from '../config/key-layout';

// ---------------------------------------------------------------------------
// Public types

export type DesiredState = 'inactive' | 'loaded' | 'launched';
export const DESIRED_STATES: readonly DesiredState[] = ['inactive', 'loaded', 'launched'];

/** `units/jobs/<name>`: a submitted unit and what the user wants of it. */
export interface Job {
  name: string;
  /** sha256 (hex) of the unit file text; the body lives at `units/bodies/<hash>`. */
  hash: string;
  desiredState: DesiredState;
  /** ISO 8601. */
  submittedAt: string;
}

/** A job with its unit file text. */
export interface Unit extends Job {
  text: string;
}

export interface SubmitResult {
  job: Job;
  /** False when the same name with the same content was already submitted (a no-op). */
  created: boolean;
}

/** `machines/<id>`: what an agent announces, held by its lease. */
export interface MachineInfo {
  /** Full machine ID (e.g. /etc/machine-id). */
  id: string;
  metadata: Record<string, string>;
  /** Address others reach the machine at (ssh, journal). */
  address: string;
  capacity: { cpus: number; memoryMiB: number };
  /** ISO 8601. */
  startedAt: string;
  /** Agent version. */
  version: string;
}

/** `schedule/<machineId>/<unit>`: the engine's decision that `unit` (content `hash`) runs on `machineId`. */
export interface Assignment {
  machineId: string;
  unit: string;
  hash: string;
  /**
   * What the agent should do with it: `launched` runs it, `loaded` keeps it stopped.
   * Carried here so an agent watches only its own assignments, never every job.
   */
  desiredState: 'loaded' | 'launched';
  /** ISO 8601. */
  assignedAt: string;
  reason?: string;
}

/** `states/<machineId>/<unit>`: what an agent last saw systemd report, held by its lease. */
export interface UnitState {
  machineId: string;
  unit: string;
  hash: string;
  /** systemd ActiveState: active, inactive, failed, activating, ... */
  active: string;
  /** systemd SubState: running, dead, exited, ... */
  sub: string;
  /** systemd Result of the last run (success, exit-code, start-limit-hit, ...), when known. */
  result?: string;
  /** ISO 8601. */
  updatedAt: string;
}

/**
 * `health/<unit>/<machineId>`: the engine's memory of a unit failing on a machine, so it
 * keeps the unit away from there for a while (the backoff grows with each failure).
 */
export interface UnitHealth {
  unit: string;
  machineId: string;
  /** The content that failed; a new content starts with a clean record. */
  hash: string;
  failures: number;
  /** systemd Result of the last failure (start-limit-hit, exit-code, ...). */
  lastResult: string;
  /** ISO 8601. */
  lastFailureAt: string;
  /** ISO 8601: the machine is not used for this unit before then. */
  avoidUntil: string;
  /** `updatedAt` of the state report that recorded the last failure: a report counts once. */
  stateUpdatedAt: string;
}

/** in progress: `rolling`, `rolling-back`, `failed` (stopped; resume or roll back). Finished: `done`, `rolled-back`. */
export type RolloutPhase = 'rolling' | 'rolling-back' | 'failed' | 'done' | 'rolled-back';
export const ROLLOUT_PHASES: readonly RolloutPhase[] = ['rolling', 'rolling-back', 'failed', 'done', 'rolled-back'];
export const ROLLOUT_IN_PROGRESS: readonly RolloutPhase[] = ['rolling', 'rolling-back', 'failed'];

export interface RolloutOptions {
  /** Copies restarted at once. */
  maxUnavailable: number;
  /** Run (sh -c) after each copy is active; must exit 0 before the next batch. */
  healthCmd?: string;
  /** Per batch: active + healthy within this long, or the batch failed. */
  timeoutMs: number;
  /** A copy must stay active this long to count. */
  minReadyMs: number;
  rollbackOnFailure: boolean;
}

export interface RolloutStep {
  machineId: string;
  hash: string;
  ok: boolean;
  detail: string;
  /** ISO 8601. */
  at: string;
}

/**
 * `rollouts/<unit>`: a rolling update of a submitted unit from one content to another.
 * While in progress, both contents stay referenced; the engine gives each copy the
 * content `hashOn` names for its machine, leaves copies the rollout has not reached as
 * they are, and gives new copies the job's content.
 */
export interface Rollout {
  unit: string;
  fromHash: string;
  toHash: string;
  phase: RolloutPhase;
  hashOn: Record<string, string>;
  options: RolloutOptions;
  steps: RolloutStep[];
  error?: string;
  /** ISO 8601. */
  startedAt: string;
  updatedAt: string;
  /** etcd mod revision of the record (not stored): pass it back to change the record. */
  revision: string;
}

/** `placement/<unit>`: why the engine could not place a unit. */
export interface Placement {
  unit: string;
  status: 'unplaceable';
  /** The content the verdict is about. */
  hash: string;
  reason: string;
  /** ISO 8601. */
  at: string;
}

/**
 * Proof of engine leadership: the leader key and the create revision it had when this
 * candidate won. Fenced writes compare the key's create revision against it.
 */
export interface Fence {
  readonly key: string;
  readonly createRevision: string;
}

export interface LeaderInfo {
  candidateId: string;
  leaseId: string;
  since: string;
  createRevision: string;
}

/** All scheduling state read at one etcd revision (unit bodies left out). */
export interface RegistrySnapshot {
  revision: string;
  jobs: Job[];
  machines: MachineInfo[];
  schedule: Assignment[];
  states: UnitState[];
  placements: Placement[];
  health: UnitHealth[];
  rollouts: Rollout[];
  leader: LeaderInfo | undefined;
}

/**
 * What typed watches deliver. A watch opens with a `snapshot` of everything under its
 * prefix, then delivers every later change exactly once, in revision order. After a
 * failure it cannot resume from (e.g. the revision was compacted) it delivers a fresh
 * `snapshot` and continues from there; consumers replace their view on each snapshot.
 */
export type WatchEvent<T> =
  | { type: 'snapshot'; items: T[]; revision: string }
  | { type: 'put'; item: T; revision: string }
  /** `id` is the unit name (assignments) or the machine ID (machines). */
  | { type: 'delete'; id: string; revision: string };

export type RegistryKind = 'job' | 'machine' | 'schedule' | 'state' | 'placement' | 'health' | 'rollout';

/**
 * What `watchAll` delivers: notifications only (read state with `snapshot()`), except that
 * a state put carries the reported state, so the engine can react to failures without
 * reading every state.
 */
export type RegistryChange =
  | { type: 'resync'; revision: string }
  | { type: 'put' | 'delete'; kind: RegistryKind; unit?: string; machineId?: string; revision: string; state?: UnitState };

export interface WatchOptions {
  /** Receives callback exceptions, malformed values and watch failures. Default: process.emitWarning. */
  onError?: (err: Error) => void;
}

export interface RegistryWatch {
  close(): Promise<void>;
}

export interface RegistryTls {
  /** PEM CA bundle that signed the etcd server certificates. */
  ca: Buffer | string;
  /** PEM client certificate and key, for etcd's --client-cert-auth. */
  cert?: Buffer | string;
  key?: Buffer | string;
}

export interface RegistryOptions {
  /** Client URLs, e.g. ['http://127.0.0.1:2379']. */
  endpoints: readonly string[];
  /** Key prefix; default `/flotilla/<cluster>/`. Always ends with '/'. */
  prefix?: string;
  /** Cluster name for the default prefix; required when `prefix` is not given. */
  cluster?: string;
  tls?: RegistryTls;
  /** How long connect() waits for etcd to answer (default 5000 ms). */
  dialTimeoutMs?: number;
  /** Deadline of each unary etcd call (default 5000 ms). */
  requestTimeoutMs?: number;
  /** Keys per reply when listing a prefix (default 2000), so a reply stays under gRPC's 4 MiB. */
  pageSize?: number;
}

export interface CampaignOptions {
  /** TTL of the leader lease; a crashed leader is replaced this long after its last keepalive (default 10). */
  ttlSeconds?: number;
  /** Gives up waiting for leadership; campaign() then rejects. */
  signal?: AbortSignal;
}

// ---------------------------------------------------------------------------
// Key layout: src/config/key-layout.ts, the only place keys are built or parsed.

export { registryPrefix };
const checkName = checkRegistryName;
const keys = registryKeys;
type Keys = RegistryKeys;

// ---------------------------------------------------------------------------
// Values: JSON, checked on the way in.

type Json = Record<string, unknown>;

class Malformed extends Error {}

function asObject(v: unknown): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Malformed('not a JSON object');
  return v as Json;
}
function str(o: Json, k: string): string {
  const v = o[k];
  if (typeof v !== 'string') throw new Malformed(`field ${k} is not a string`);
  return v;
}
function optStr(o: Json, k: string): string | undefined {
  return o[k] === undefined ? undefined : str(o, k);
}
function num(o: Json, k: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Malformed(`field ${k} is not a number`);
  return v;
}

function decodeJob(o: Json): Job {
  const desiredState = str(o, 'desiredState');
  if (!(DESIRED_STATES as readonly string[]).includes(desiredState)) throw new Malformed(`bad desiredState ${desiredState}`);
  return { name: str(o, 'name'), hash: str(o, 'hash'), desiredState: desiredState as DesiredState, submittedAt: str(o, 'submittedAt') };
}
function decodeMachine(o: Json): MachineInfo {
  const meta = asObject(o['metadata']);
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta)) {
    if (typeof v !== 'string') throw new Malformed(`metadata ${k} is not a string`);
    metadata[k] = v;
  }
  const cap = asObject(o['capacity']);
  return {
    id: str(o, 'id'),
    metadata,
    address: str(o, 'address'),
    capacity: { cpus: num(cap, 'cpus'), memoryMiB: num(cap, 'memoryMiB') },
    startedAt: str(o, 'startedAt'),
    version: str(o, 'version'),
  };
}
function decodeAssignment(machineId: string, o: Json): Assignment {
  const reason = optStr(o, 'reason');
  const desiredState = optStr(o, 'desiredState') ?? 'launched';
  if (desiredState !== 'loaded' && desiredState !== 'launched') throw new Malformed(`desiredState ${JSON.stringify(desiredState)} is not loaded or launched`);
  return { machineId, unit: str(o, 'unit'), hash: str(o, 'hash'), desiredState, assignedAt: str(o, 'assignedAt'), ...(reason !== undefined ? { reason } : {}) };
}
function decodeState(machineId: string, o: Json): UnitState {
  const result = optStr(o, 'result');
  return { machineId, unit: str(o, 'unit'), hash: str(o, 'hash'), active: str(o, 'active'), sub: str(o, 'sub'), ...(result !== undefined ? { result } : {}), updatedAt: str(o, 'updatedAt') };
}
function decodeHealth(o: Json): UnitHealth {
  return {
    unit: str(o, 'unit'),
    machineId: str(o, 'machineId'),
    hash: str(o, 'hash'),
    failures: num(o, 'failures'),
    lastResult: str(o, 'lastResult'),
    lastFailureAt: str(o, 'lastFailureAt'),
    avoidUntil: str(o, 'avoidUntil'),
    stateUpdatedAt: str(o, 'stateUpdatedAt'),
  };
}
function decodeRollout(o: Json, revision: string): Rollout {
  const phase = str(o, 'phase');
  if (!(ROLLOUT_PHASES as readonly string[]).includes(phase)) throw new Malformed(`bad phase ${phase}`);
  const hashOn: Record<string, string> = {};
  for (const [m, h] of Object.entries(asObject(o['hashOn']))) {
    if (typeof h !== 'string') throw new Malformed(`hashOn.${m} is not a string`);
    hashOn[m] = h;
  }
  const opts = asObject(o['options']);
  const healthCmd = optStr(opts, 'healthCmd');
  if (typeof opts['rollbackOnFailure'] !== 'boolean') throw new Malformed('options.rollbackOnFailure is not a boolean');
  const stepsRaw = o['steps'];
  if (!Array.isArray(stepsRaw)) throw new Malformed('steps is not a list');
  const steps = stepsRaw.map((x) => {
    const st = asObject(x);
    if (typeof st['ok'] !== 'boolean') throw new Malformed('steps[].ok is not a boolean');
    return { machineId: str(st, 'machineId'), hash: str(st, 'hash'), ok: st['ok'], detail: str(st, 'detail'), at: str(st, 'at') };
  });
  const error = optStr(o, 'error');
  return {
    unit: str(o, 'unit'),
    fromHash: str(o, 'fromHash'),
    toHash: str(o, 'toHash'),
    phase: phase as RolloutPhase,
    hashOn,
    options: {
      maxUnavailable: num(opts, 'maxUnavailable'),
      ...(healthCmd !== undefined ? { healthCmd } : {}),
      timeoutMs: num(opts, 'timeoutMs'),
      minReadyMs: num(opts, 'minReadyMs'),
      rollbackOnFailure: opts['rollbackOnFailure'],
    },
    steps,
    ...(error !== undefined ? { error } : {}),
    startedAt: str(o, 'startedAt'),
    updatedAt: str(o, 'updatedAt'),
    revision,
  };
}
function encodeRollout(r: Rollout): string {
  const { revision: _rev, ...stored } = r;
  return JSON.stringify(stored);
}
function decodePlacement(o: Json): Placement {
  if (o['status'] !== 'unplaceable') throw new Malformed('status is not "unplaceable"');
  return { unit: str(o, 'unit'), status: 'unplaceable', hash: str(o, 'hash'), reason: str(o, 'reason'), at: str(o, 'at') };
}

// ---------------------------------------------------------------------------
// Transaction building blocks (raw etcd requests, so that range compares and nested
// transactions are available).

const buf = (s: string): Buffer => Buffer.from(s, 'utf8');
const text = (kv: IKeyValue): string => kv.value.toString('utf8');
const keyOf = (kv: IKeyValue): string => kv.key.toString('utf8');

/** The exclusive end of the key range sharing `prefix`. */
function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix, 'utf8');
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) return Buffer.concat([b.subarray(0, i), Buffer.from([b[i]! + 1])]);
  }
  return Buffer.from([0]);
}

const op = {
  put: (key: string, value: string, lease?: string): IRequestOp => ({ request_put: { key: buf(key), value: buf(value), ...(lease ? { lease } : {}) } }),
  del: (key: string): IRequestOp => ({ request_delete_range: { key: buf(key) } }),
  get: (key: string): IRequestOp => ({ request_range: { key: buf(key) } }),
  txn: (req: ITxnRequest): IRequestOp => ({ request_txn: req }),
};

type Cmp = 'Equal' | 'Greater' | 'Less' | 'NotEqual';
const cmp = {
  /** create_revision; 0 means "absent", > 0 "present". */
  created: (key: string, c: Cmp, rev: string | number): ICompare => ({ key: buf(key), target: CompareTarget.Create, result: CompareResult[c], create_revision: rev }),
  /** Holds for every key under the prefix, hence `noneUnder` with Equal 0. */
  noneUnder: (prefix: string): ICompare => ({ key: buf(prefix), range_end: prefixEnd(prefix), target: CompareTarget.Create, result: CompareResult.Equal, create_revision: 0 }),
  modified: (key: string, rev: string): ICompare => ({ key: buf(key), target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: rev }),
  lease: (key: string, lease: string): ICompare => ({ key: buf(key), target: CompareTarget.Lease, result: CompareResult.Equal, lease }),
};

function rangeKvs(res: ITxnResponse, i: number): IKeyValue[] {
  return res.responses[i]?.response_range?.kvs ?? [];
}

const now = (): string => new Date().toISOString();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function warn(err: Error): void {
  process.emitWarning(err.message, { code: 'FLOTILLA_REGISTRY' });
}

// ---------------------------------------------------------------------------
// Leases

/**
 * An etcd lease kept alive in the background. Emits 'lost' once when it can no longer
 * be trusted: etcd says it expired, or no keepalive has been answered for a whole TTL
 * (etcd3 alone would wait two TTLs). On loss the lease is revoked, best effort, so
 * that anything it holds disappears now rather than at expiry.
 */
class KeptLease extends EventEmitter {
  private done = false;
  private lastOk = Date.now();
  private probing = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly lease: Lease,
    readonly leaseId: string,
    readonly ttlSeconds: number,
    private readonly what: string,
    private readonly reg: Registry,
    /** Declared lost after this long without a keepalive answer (default: the TTL). */
    lostAfterMs = ttlSeconds * 1000,
  ) {
    super();
    lease.on('lost', (err) => this.markLost(err.message));
    lease.on('keepaliveSucceeded', () => {
      this.lastOk = Date.now();
    });
    const overdueMs = (ttlSeconds * 1000) / 3 + 300;
    this.timer = setInterval(() => {
      const silent = Date.now() - this.lastOk;
      if (silent > lostAfterMs) return this.markLost(`no keepalive answered for ${(lostAfterMs / 1000).toFixed(1)} s (TTL ${ttlSeconds} s)`);
      // etcd3 keeps alive every TTL/3; after an outage (an etcd leader election) its next try
      // can come a third of a TTL late. Probe at once instead, so a short outage is bridged.
      if (silent > overdueMs && !this.probing) {
        this.probing = true;
        Promise.race([this.lease.keepaliveOnce().then(() => (this.lastOk = Date.now())), sleep(1000)])
          .catch(() => undefined)
          .finally(() => (this.probing = false));
      }
      return undefined;
    }, Math.min(lostAfterMs / 10, 100));
    this.timer.unref();
    reg.track(this);
  }

  get alive(): boolean {
    return !this.done;
  }

  markLost(reason: string): void {
    if (this.done) return;
    this.finish();
    this.lease.revoke().catch(() => undefined);
    this.emit('lost', new FlotillaError('external', `${this.what}: lease ${this.leaseId} lost: ${reason}`));
  }

  /** Revokes the lease: what it holds disappears at once. No 'lost' follows. */
  async revoke(): Promise<void> {
    this.finish();
    await this.reg.call(`revoke lease ${this.leaseId}`, () => this.lease.revoke());
  }

  /** @internal Registry.close() */
  shutdown(): void {
    this.release();
  }

  /** Stops keepalives without revoking: what the lease holds disappears after its TTL. */
  release(): void {
    if (this.done) return;
    this.finish();
    this.lease.release();
  }

  private finish(): void {
    this.done = true;
    clearInterval(this.timer);
    this.reg.untrack(this);
  }
}

/** An agent's registration: `machines/<id>` and its unit states live under this lease. */
export class MachineLease {
  private readonly events = new EventEmitter();

  /** @internal */
  constructor(
    readonly machineId: string,
    private readonly kept: KeptLease,
  ) {
    kept.on('lost', (err: FlotillaError) => this.events.emit('lost', err));
  }

  get leaseId(): string {
    return this.kept.leaseId;
  }
  get ttlSeconds(): number {
    return this.kept.ttlSeconds;
  }
  /** False once lost, revoked or released. */
  get alive(): boolean {
    return this.kept.alive;
  }
  /** Fires once if the lease can no longer be kept; the agent should stop its units' reporting and register again. */
  on(event: 'lost', listener: (err: FlotillaError) => void): this {
    this.events.on(event, listener);
    return this;
  }
  /** Deregisters now: the machine key and its states vanish. */
  revoke(): Promise<void> {
    return this.kept.revoke();
  }
  /** Stops keepalives only (as a crash would): everything vanishes after the TTL. */
  release(): void {
    this.kept.release();
  }
}

/** Engine leadership won by campaign(). */
export class Leadership {
  private readonly events = new EventEmitter();
  private state: 'leading' | 'lost' | 'resigned' = 'leading';
  private watch: ResilientWatch | undefined;

  /** @internal */
  constructor(
    readonly candidateId: string,
    readonly fence: Fence,
    private readonly kept: KeptLease,
    private readonly reg: Registry,
  ) {
    kept.on('lost', (err: FlotillaError) => this.lose(err));
    reg.track(this);
  }

  get leaseId(): string {
    return this.kept.leaseId;
  }
  get isLeader(): boolean {
    return this.state === 'leading';
  }

  /** Fires once when leadership ends other than by resign(): lease lost, or the leader key deleted or replaced. */
  on(event: 'lost', listener: (err: FlotillaError) => void): this {
    this.events.on(event, listener);
    return this;
  }

  /** @internal Watches the leader key so that its deletion or replacement ends leadership at once. */
  async watchKey(k: Keys): Promise<void> {
    const mine = (kv: IKeyValue | undefined): boolean => kv !== undefined && kv.create_revision === this.fence.createRevision;
    this.watch = new ResilientWatch(this.reg, k.leader, false, {
      snapshot: (kvs) => {
        if (!mine(kvs[0])) this.lose(new FlotillaError('conflict', `engine leadership of ${this.candidateId} ended: leader key ${k.leader} no longer ours`));
      },
      event: (type, kv) => {
        if (type === 'delete' || !mine(kv)) this.lose(new FlotillaError('conflict', `engine leadership of ${this.candidateId} ended: leader key ${k.leader} ${type === 'delete' ? 'deleted' : 'replaced'}`));
      },
    }, warn);
    await this.watch.start();
  }

  /** Gives leadership up: deletes the leader key (if still ours) and revokes the lease. */
  async resign(): Promise<void> {
    if (this.state === 'resigned') return;
    const wasLeading = this.state === 'leading';
    this.state = 'resigned';
    this.reg.untrack(this);
    await this.watch?.close();
    if (wasLeading) {
      await this.reg.call('resign', () =>
        this.reg.client.kv.txn({ compare: [cmp.created(this.fence.key, 'Equal', this.fence.createRevision)], success: [op.del(this.fence.key)] }),
      );
    }
    if (this.kept.alive) await this.kept.revoke();
  }

  /** @internal Registry.close(): stop without deleting anything (like a crash). */
  async shutdown(): Promise<void> {
    if (this.state === 'leading') this.state = 'resigned';
    this.reg.untrack(this);
    await this.watch?.close();
    this.kept.release();
  }

  private lose(err: FlotillaError): void {
    if (this.state !== 'leading') return;
    this.state = 'lost';
    this.reg.untrack(this);
    void this.watch?.close();
    if (this.kept.alive) this.kept.markLost(err.message);
    this.events.emit('lost', err);
  }
}

// ---------------------------------------------------------------------------
// Watches

interface RawHandlers {
  snapshot(kvs: IKeyValue[], revision: string): void;
  event(type: 'put' | 'delete', kv: IKeyValue, revision: string): void;
}

/**
 * List, then watch from the listed revision + 1, so nothing falls between. Each event is
 * delivered once: events at or below the last delivered revision are dropped, and on
 * a reconnect etcd3 is told to resume after the last delivered revision (it would
 * otherwise resume after the last header it saw, which can skip events still queued).
 * When etcd cancels the watch (compaction, or any error etcd3 does not retry), it
 * lists again, delivers a fresh snapshot and watches from there.
 */
class ResilientWatch {
  private watcher: Watcher | undefined;
  private lastRev = 0n;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = 100;

  constructor(
    private readonly reg: Registry,
    private readonly key: string,
    private readonly isPrefix: boolean,
    private readonly h: RawHandlers,
    private readonly onError: (err: Error) => void,
    /** The snapshot handler needs only the revision, not the keys. */
    private readonly revisionOnly = false,
  ) {}

  /** Lists and starts watching; rejects if the first listing fails. */
  async start(): Promise<void> {
    this.reg.track(this);
    try {
      await this.listAndWatch();
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** @internal Registry.close() */
  shutdown(): Promise<void> {
    return this.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.reg.untrack(this);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const w = this.watcher;
    this.watcher = undefined;
    if (w) {
      await Promise.race([w.cancel().catch(() => undefined), sleep(1000)]);
      w.removeAllListeners();
    }
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.onError(err as Error);
    }
  }

  private async listAndWatch(): Promise<void> {
    // A consumer that wants only the revision (watchAll) lists nothing: the whole prefix,
    // bodies included, can be far beyond a gRPC message; others list in pages.
    const res = this.revisionOnly
      ? await this.reg.call(`list ${this.key}`, () => this.reg.client.kv.range({ key: buf(this.key), range_end: prefixEnd(this.key), count_only: true }))
      : this.isPrefix
        ? await this.reg.rangeAll(`list ${this.key}`, this.key)
        : await this.reg.call(`list ${this.key}`, () => this.reg.client.kv.range({ key: buf(this.key) }));
    if (this.closed) return;
    this.lastRev = BigInt(res.header.revision);
    this.safely(() => this.h.snapshot(this.revisionOnly ? [] : res.kvs, res.header.revision));
    const builder = this.reg.client.watch();
    if (this.isPrefix) builder.prefix(this.key);
    else builder.key(this.key);
    const w = builder.startRevision(String(this.lastRev + 1n)).watcher();
    this.watcher = w;
    w.on('data', (r: IWatchResponse) => this.onData(w, r));
    w.on('disconnected', () => {
      (w.request as { start_revision?: string | number }).start_revision = String(this.lastRev + 1n);
    });
    w.on('error', (err: Error) => this.onWatchError(w, err));
  }

  private onData(w: Watcher, res: IWatchResponse): void {
    if (w !== this.watcher || this.closed) return;
    const floor = this.lastRev;
    let top = floor;
    for (const ev of res.events) {
      const rev = BigInt(ev.kv.mod_revision);
      if (rev <= floor) continue;
      if (rev > top) top = rev;
      const type = ev.type === 'Delete' ? 'delete' : 'put';
      this.safely(() => this.h.event(type, ev.kv, ev.kv.mod_revision));
    }
    this.lastRev = top;
    this.retryDelay = 100;
  }

  private onWatchError(w: Watcher, err: Error): void {
    if (w !== this.watcher || this.closed) return;
    w.removeAllListeners();
    this.watcher = undefined;
    this.onError(new FlotillaError('external', `etcd at ${this.reg.endpoints.join(',')}: watch on ${this.key} ended (${err.message.replace(/:\s*$/, '')}); listing again`, [], { cause: err }));
    this.scheduleResync();
  }

  private scheduleResync(): void {
    if (this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.listAndWatch().catch((err: Error) => {
        this.onError(err);
        this.retryDelay = Math.min(this.retryDelay * 2, 2000);
        this.scheduleResync();
      });
    }, this.retryDelay);
  }
}

// ---------------------------------------------------------------------------
// Registry

/** What Registry.close() shuts down. */
interface Tracked {
  shutdown(): void | Promise<void>;
}

const MAX_UNIT_BYTES = 512 * 1024;
/** Keys per range reply; with values of a few hundred bytes, far below 4 MiB. Bodies are never listed. */
const RANGE_PAGE = 2000;
const MAX_RETRIES = 20;

/** etcd3's watch reconnect backoff: 100 ms doubling to 1 s (its default grows to 30 s). */
type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;
function cappedBackoff(duration: number): WatchBackoff {
  return { duration, next: () => cappedBackoff(Math.min(duration * 2, 1000)) };
}

/**
 * etcd3 puts a circuit breaker in front of each host (open for 5 s after 3 failures),
 * so that calls skip a failing member. With a single endpoint there is nothing to skip
 * to: the breaker only keeps refusing calls for 5 s after etcd is back. One endpoint
 * therefore gets this pass-through policy instead (etcd3 only calls `execute`).
 */
type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;
const passThroughPolicy = (): HostPolicy => {
  const noEvent = (): { dispose(): void } => ({ dispose: () => undefined });
  const policy = {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> => fn({ signal: new AbortController().signal }),
  };
  return policy as unknown as HostPolicy;
};

export class Registry {
  /** @internal */ readonly client: Etcd3;
  readonly prefix: string;
  readonly endpoints: readonly string[];
  private readonly k: Keys;
  /** Leases, watches and leaderships to shut down on close(). */
  private readonly live = new Set<Tracked>();
  private closed = false;
  private readonly pageSize: number;

  private constructor(opts: RegistryOptions, prefix: string) {
    this.prefix = prefix;
    this.pageSize = opts.pageSize ?? RANGE_PAGE;
    this.endpoints = [...opts.endpoints];
    this.k = keys(prefix);
    const requestTimeoutMs = opts.requestTimeoutMs ?? 5000;
    const toBuf = (v: Buffer | string | undefined): Buffer | undefined => (v === undefined ? undefined : Buffer.isBuffer(v) ? v : Buffer.from(v));
    this.client = new Etcd3({
      hosts: [...opts.endpoints],
      ...(opts.tls
        ? { credentials: { rootCertificate: toBuf(opts.tls.ca)!, privateKey: toBuf(opts.tls.key), certChain: toBuf(opts.tls.cert) } }
        : {}),
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + requestTimeoutMs }),
      faultHandling: { watchBackoff: cappedBackoff(100), ...(opts.endpoints.length === 1 ? { host: passThroughPolicy } : {}) },
    });
  }

  /** Connects and checks that etcd answers within `dialTimeoutMs`. */
  static async connect(opts: RegistryOptions): Promise<Registry> {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) throw new FlotillaError('invalid-input', 'registry: no etcd endpoints given');
    for (const e of opts.endpoints) {
      if (!/^https?:\/\/[^/\s]+:\d+\/?$/.test(e)) throw new FlotillaError('invalid-input', `registry: bad etcd endpoint ${JSON.stringify(e)}: want http(s)://host:port`);
    }
    const prefix = resolvePrefix(opts);
    const reg = new Registry(opts, prefix);
    const dialTimeoutMs = opts.dialTimeoutMs ?? 5000;
    try {
      await reg.call('connect', () =>
        reg.client.kv.range({ key: buf(prefix), range_end: prefixEnd(prefix), count_only: true }, { deadline: Date.now() + dialTimeoutMs }),
      );
    } catch (err) {
      reg.client.close();
      throw err;
    }
    return reg;
  }

  /** @internal Runs an etcd call, turning its failure into FlotillaError('external'). */
  async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new FlotillaError('internal', `registry: ${what} after close()`);
    try {
      return await fn();
    } catch (err) {
      if (FlotillaError.is(err)) throw err;
      throw new FlotillaError('external', `etcd at ${this.endpoints.join(',')}: ${what}: ${(err as Error).message}`, [], { cause: err });
    }
  }

  /** @internal */
  track(x: Tracked): void {
    this.live.add(x);
  }
  /** @internal */
  untrack(x: Tracked): void {
    this.live.delete(x);
  }

  private txn(what: string, req: ITxnRequest): Promise<ITxnResponse> {
    return this.call(what, () => this.client.kv.txn(req));
  }

  private range(what: string, prefix: string, revision?: string): Promise<IRangeResponse> {
    return this.rangeAll(what, prefix, revision);
  }

  /**
   * @internal Everything under `prefix` at one revision, read in pages of `pageSize`
   * keys: one reply must stay under gRPC's 4 MiB message limit (10,000 states and
   * assignments are more than that).
   */
  async rangeAll(what: string, prefix: string, revision?: string): Promise<IRangeResponse> {
    const end = prefixEnd(prefix);
    let first: IRangeResponse | undefined;
    const kvs: IKeyValue[] = [];
    let from = buf(prefix);
    for (;;) {
      const rev = revision ?? first?.header.revision;
      const res: IRangeResponse = await this.call(what, () => this.client.kv.range({ key: from, range_end: end, limit: this.pageSize, ...(rev ? { revision: rev } : {}) }));
      first ??= res;
      kvs.push(...res.kvs);
      const last = res.kvs[res.kvs.length - 1];
      if (!res.more || !last) break;
      from = Buffer.concat([last.key, Buffer.from([0])]);
    }
    return { ...first, kvs, more: false, count: String(kvs.length) };
  }

  private async getKv(key: string): Promise<IKeyValue | undefined> {
    const res = await this.call(`get ${key}`, () => this.client.kv.range({ key: buf(key) }));
    return res.kvs[0];
  }

  /** Decodes a stored value, or throws naming the key. */
  private decode<T>(kv: IKeyValue, what: string, fn: (o: Json) => T): T {
    try {
      return fn(asObject(JSON.parse(text(kv))));
    } catch (err) {
      throw new FlotillaError('external', `etcd key ${keyOf(kv)} holds a malformed ${what}: ${(err as Error).message}`, [], { cause: err });
    }
  }

  private decodeMany<T>(kvs: IKeyValue[], what: string, fn: (kv: IKeyValue, o: Json) => T): T[] {
    return kvs.map((kv) => this.decode(kv, what, (o) => fn(kv, o)));
  }

  private checkFence(fence: Fence): void {
    if (fence.key !== this.k.leader) throw new FlotillaError('internal', `fence for ${fence.key} used with registry prefix ${this.prefix}`);
  }

  /** Explains why a fenced transaction failed, from the leader key read in its failure branch. */
  private fencedOut(fence: Fence, leaderKv: IKeyValue | undefined, what: string): FlotillaError {
    const now = leaderKv ? `now created at revision ${leaderKv.create_revision}` : 'now absent';
    return new FlotillaError('conflict', `${what}: not the engine leader any more (leadership from revision ${fence.createRevision}; leader key ${now})`);
  }

  // ---- units -------------------------------------------------------------

  /**
   * Submits a unit. Same name and same content again is a no-op (`created: false`);
   * same name with different content is a 'conflict' (destroy first, as in fleet).
   * Job, body and body reference are written in one transaction.
   */
  async submitUnit(name: string, unitText: string, opts: { desiredState?: DesiredState } = {}): Promise<SubmitResult> {
    checkName('unit name', name);
    if (typeof unitText !== 'string') throw new FlotillaError('invalid-input', `unit ${name}: text is not a string`);
    if (Buffer.byteLength(unitText) > MAX_UNIT_BYTES) throw new FlotillaError('too-large', `unit ${name}: ${Buffer.byteLength(unitText)} bytes exceeds ${MAX_UNIT_BYTES}`);
    const desiredState = opts.desiredState ?? 'inactive';
    if (!DESIRED_STATES.includes(desiredState)) throw new FlotillaError('invalid-input', `unit ${name}: bad desired state ${JSON.stringify(desiredState)}`);
    const hash = createHash('sha256').update(unitText, 'utf8').digest('hex');
    const job: Job = { name, hash, desiredState, submittedAt: now() };
    const k = this.k;
    const res = await this.txn(`submit ${name}`, {
      compare: [cmp.created(k.job(name), 'Equal', 0)],
      success: [
        op.put(k.job(name), JSON.stringify(job)),
        op.put(k.ref(hash, name), ''),
        op.txn({ compare: [cmp.created(k.body(hash), 'Equal', 0)], success: [op.put(k.body(hash), unitText)] }),
      ],
      failure: [op.get(k.job(name))],
    });
    if (res.succeeded) return { job, created: true };
    const kv = rangeKvs(res, 0)[0];
    if (!kv) return this.submitUnit(name, unitText, opts); // destroyed in between: try again
    const existing = this.decode(kv, 'job', decodeJob);
    if (existing.hash === hash) return { job: existing, created: false };
    throw new FlotillaError('conflict', `unit ${name} is already submitted with different content (sha256 ${existing.hash.slice(0, 12)}, new ${hash.slice(0, 12)}); update it (flotilla units update) or destroy it first`);
  }

  /** The job and its unit file text, or undefined. */
  async getUnit(name: string): Promise<Unit | undefined> {
    checkName('unit name', name);
    const kv = await this.getKv(this.k.job(name));
    if (!kv) return undefined;
    const job = this.decode(kv, 'job', decodeJob);
    const body = await this.getKv(this.k.body(job.hash));
    if (!body) throw new FlotillaError('external', `etcd: unit ${name}: body ${this.k.body(job.hash)} is missing`);
    return { ...job, text: text(body) };
  }

  /** A unit body by its content hash (bodies are immutable), or undefined once collected. */
  async getBody(hash: string): Promise<string | undefined> {
    checkHash(hash);
    const kv = await this.getKv(this.k.body(hash));
    return kv ? text(kv) : undefined;
  }

  /** All jobs, by name. */
  async listUnits(): Promise<Job[]> {
    const res = await this.range('list units', this.k.jobs);
    return this.decodeMany(res.kvs, 'job', (_, o) => decodeJob(o));
  }

  /** Sets the desired state; 'not-found' if the unit is not submitted. */
  async setDesiredState(name: string, state: DesiredState): Promise<Job> {
    checkName('unit name', name);
    if (!DESIRED_STATES.includes(state)) throw new FlotillaError('invalid-input', `unit ${name}: bad desired state ${JSON.stringify(state)}`);
    for (let i = 0; i < MAX_RETRIES; i++) {
      const kv = await this.getKv(this.k.job(name));
      if (!kv) throw new FlotillaError('not-found', `unit ${name} is not submitted`);
      const job = this.decode(kv, 'job', decodeJob);
      if (job.desiredState === state) return job;
      const next: Job = { ...job, desiredState: state };
      const res = await this.txn(`set desired state of ${name}`, {
        compare: [cmp.modified(this.k.job(name), kv.mod_revision)],
        success: [op.put(this.k.job(name), JSON.stringify(next))],
      });
      if (res.succeeded) return next;
    }
    throw new FlotillaError('conflict', `unit ${name}: desired state kept changing under us`);
  }

  /**
   * Destroys a unit: job, placement verdict and every assignment made for it go; the
   * body goes too once no other unit uses it. Returns false if there was nothing to destroy.
   */
  async destroyUnit(name: string): Promise<boolean> {
    checkName('unit name', name);
    const k = this.k;
    let job: Job | undefined;
    let destroyedAt = '';
    /** Every content the unit references: its own, and both sides of a rollout in progress. */
    let hashes: string[] = [];
    for (let i = 0; i < MAX_RETRIES && !job; i++) {
      const kv = await this.getKv(k.job(name));
      if (!kv) return false;
      const candidate = this.decode(kv, 'job', decodeJob);
      const rkv = await this.getKv(k.rollout(name));
      const rollout = rkv ? this.decode(rkv, 'rollout', (o) => decodeRollout(o, rkv.mod_revision)) : undefined;
      const refs = [...new Set([candidate.hash, ...(rollout ? [rollout.fromHash, rollout.toHash] : [])])];
      const res = await this.txn(`destroy ${name}`, {
        compare: [cmp.modified(k.job(name), kv.mod_revision), rkv ? cmp.modified(k.rollout(name), rkv.mod_revision) : cmp.created(k.rollout(name), 'Equal', 0)],
        success: [
          op.del(k.job(name)),
          ...refs.map((h) => op.del(k.ref(h, name))),
          op.del(k.placement(name)),
          op.del(k.rollout(name)),
          { request_delete_range: { key: buf(k.healthOf(name)), range_end: prefixEnd(k.healthOf(name)) } },
        ],
      });
      if (res.succeeded) {
        job = candidate;
        hashes = refs;
        destroyedAt = res.header.revision;
      }
    }
    if (!job) throw new FlotillaError('conflict', `unit ${name}: kept changing while being destroyed`);
    // Assignments can only be made while the job's ref exists (see assign), so every
    // assignment of this unit created before the destroy belongs to it; later ones
    // belong to a resubmitted unit and stay.
    const sched = await this.range('list schedule', k.schedule);
    for (const kv of sched.kvs) {
      const parsed = k.parse(keyOf(kv));
      if (parsed.kind !== 'schedule' || parsed.unit !== name || BigInt(kv.create_revision) >= BigInt(destroyedAt)) continue;
      await this.txn(`unassign ${name}`, { compare: [cmp.modified(keyOf(kv), kv.mod_revision)], success: [op.del(keyOf(kv))] });
    }
    for (const h of hashes) await this.collectBody(h);
    return true;
  }

  /** Deletes the body for `hash` if no unit references it (atomic with respect to submits). */
  private async collectBody(hash: string): Promise<boolean> {
    const res = await this.txn(`collect body ${hash}`, { compare: [cmp.noneUnder(this.k.refs(hash))], success: [op.del(this.k.body(hash))] });
    return res.succeeded;
  }

  /** Removes every unreferenced body (left by a destroy that was interrupted). Returns how many. */
  async collectGarbage(): Promise<number> {
    const res = await this.call('list bodies', () =>
      this.client.kv.range({ key: buf(this.k.bodies), range_end: prefixEnd(this.k.bodies), keys_only: true }),
    );
    let n = 0;
    for (const kv of res.kvs) if (await this.collectBody(this.k.tail(keyOf(kv), this.k.bodies))) n++;
    return n;
  }

  // ---- machines ----------------------------------------------------------

  /**
   * Announces a machine under a new lease kept alive in the background. 'conflict' if
   * the ID is held by another live registration (e.g. a previous agent whose lease has
   * not expired yet).
   */
  /**
   * Registers a machine under a lease of `ttlSeconds`. The lease is declared lost after
   * `lostAfterMs` without a keepalive answer (default: the TTL less a fifth, at least
   * 500 ms): earlier than etcd can expire it, so an agent that fences on 'lost' has
   * stopped its units before the engine may place them elsewhere, yet later than an etcd
   * leader election (election timeout, 2.5 s by default for a 4 s TTL) lasts.
   */
  async registerMachine(info: MachineInfo, ttlSeconds: number, opts: { lostAfterMs?: number } = {}): Promise<MachineLease> {
    checkName('machine ID', info.id);
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw new FlotillaError('invalid-input', `machine ${info.id}: lease TTL must be a whole number of seconds >= 1`);
    const value = JSON.stringify({
      id: info.id,
      metadata: { ...info.metadata },
      address: info.address,
      capacity: { cpus: info.capacity.cpus, memoryMiB: info.capacity.memoryMiB },
      startedAt: info.startedAt,
      version: info.version,
    });
    this.decode({ key: buf(this.k.machine(info.id)), value: buf(value) } as IKeyValue, 'machine', decodeMachine); // same checks as readers
    const lease = this.client.lease(ttlSeconds);
    lease.on('lost', () => undefined);
    const leaseId = await this.call(`grant lease for machine ${info.id}`, () => lease.grant());
    const kept = new KeptLease(lease, leaseId, ttlSeconds, `machine ${info.id}`, this, opts.lostAfterMs ?? ttlSeconds * 1000 - Math.max(500, ttlSeconds * 200));
    try {
      const key = this.k.machine(info.id);
      const res = await this.txn(`register machine ${info.id}`, {
        compare: [cmp.created(key, 'Equal', 0)],
        success: [op.put(key, value, leaseId)],
        failure: [op.get(key)],
      });
      if (!res.succeeded) {
        const held = rangeKvs(res, 0)[0];
        throw new FlotillaError('conflict', `machine ${info.id} is already registered (lease ${held?.lease ?? '?'}); a stale registration expires within its TTL`);
      }
    } catch (err) {
      await kept.revoke().catch(() => undefined);
      throw err;
    }
    return new MachineLease(info.id, kept);
  }

  async listMachines(): Promise<MachineInfo[]> {
    const res = await this.range('list machines', this.k.machines);
    return this.decodeMany(res.kvs, 'machine', (_, o) => decodeMachine(o));
  }

  watchMachines(cb: (ev: WatchEvent<MachineInfo>) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
    return this.typedWatch(this.k.machines, 'machine', (_kv, o) => decodeMachine(o), (key) => this.k.tail(key, this.k.machines), cb, opts);
  }

  // ---- schedule (engine writes, fenced) ----------------------------------

  /**
   * Assigns `unit` with content `hash` to `machineId`. Commits only if `fence` still
   * holds, the unit is submitted with that content, and the machine is registered;
   * otherwise 'conflict' (fenced out) or 'not-found'.
   */
  async assign(machineId: string, unit: string, hash: string, fence: Fence, opts: { reason?: string; desiredState?: 'loaded' | 'launched' } = {}): Promise<Assignment> {
    checkName('machine ID', machineId);
    checkName('unit name', unit);
    checkHash(hash);
    this.checkFence(fence);
    const k = this.k;
    const { reason, desiredState = 'launched' } = opts;
    const assignment: Assignment = { machineId, unit, hash, desiredState, assignedAt: now(), ...(reason !== undefined ? { reason } : {}) };
    const { machineId: _omit, ...stored } = assignment;
    const res = await this.txn(`assign ${unit} to ${machineId}`, {
      compare: [
        cmp.created(k.leader, 'Equal', fence.createRevision),
        cmp.created(k.ref(hash, unit), 'Greater', 0),
        cmp.created(k.machine(machineId), 'Greater', 0),
      ],
      success: [op.put(k.assignment(machineId, unit), JSON.stringify(stored))],
      failure: [op.get(k.leader), op.get(k.ref(hash, unit)), op.get(k.machine(machineId))],
    });
    if (res.succeeded) return assignment;
    const leader = rangeKvs(res, 0)[0];
    if (leader?.create_revision !== fence.createRevision) throw this.fencedOut(fence, leader, `assign ${unit} to ${machineId}`);
    if (rangeKvs(res, 1).length === 0) throw new FlotillaError('not-found', `assign ${unit} to ${machineId}: unit ${unit} with content ${hash.slice(0, 12)} is not submitted`);
    throw new FlotillaError('not-found', `assign ${unit} to ${machineId}: machine ${machineId} is not registered`);
  }

  /** Removes an assignment (fenced). Returns false if there was none. */
  async unassign(machineId: string, unit: string, fence: Fence): Promise<boolean> {
    checkName('machine ID', machineId);
    checkName('unit name', unit);
    this.checkFence(fence);
    const key = this.k.assignment(machineId, unit);
    const res = await this.txn(`unassign ${unit} from ${machineId}`, {
      compare: [cmp.created(this.k.leader, 'Equal', fence.createRevision)],
      success: [{ request_delete_range: { key: buf(key) } }],
      failure: [op.get(this.k.leader)],
    });
    if (!res.succeeded) throw this.fencedOut(fence, rangeKvs(res, 0)[0], `unassign ${unit} from ${machineId}`);
    return Number(res.responses[0]?.response_delete_range?.deleted ?? 0) > 0;
  }

  /**
   * Applies many schedule changes with few transactions: removals first, then
   * assignments, in fenced batches (etcd allows 128 operations per transaction). A batch
   * whose checks fail (a unit destroyed or a machine gone meanwhile) is retried one change
   * at a time, so only the stale changes fail; they are returned, not thrown. A fence
   * failure throws 'conflict' at once.
   */
  async applySchedule(
    changes: {
      unassign: ReadonlyArray<{ machineId: string; unit: string }>;
      assign: ReadonlyArray<{ machineId: string; unit: string; hash: string; reason?: string; desiredState?: 'loaded' | 'launched' }>;
    },
    fence: Fence,
    opts: { batchSize?: number; concurrency?: number } = {},
  ): Promise<{ failed: Array<{ machineId: string; unit: string; error: FlotillaError }> }> {
    this.checkFence(fence);
    const k = this.k;
    const batchSize = opts.batchSize ?? 40;
    const concurrency = opts.concurrency ?? 8;
    const failed: Array<{ machineId: string; unit: string; error: FlotillaError }> = [];
    const batches = <T>(items: readonly T[]): T[][] => {
      const out: T[][] = [];
      for (let i = 0; i < items.length; i += batchSize) out.push(items.slice(i, i + batchSize));
      return out;
    };
    const runLimited = async <T>(items: T[], fn: (t: T) => Promise<void>): Promise<void> => {
      let next = 0;
      await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
        while (next < items.length) await fn(items[next++]!);
      }));
    };
    await runLimited(batches(changes.unassign), async (batch) => {
      for (const u of batch) { checkName('machine ID', u.machineId); checkName('unit name', u.unit); }
      const res = await this.txn(`unassign ${batch.length} units`, {
        compare: [cmp.created(k.leader, 'Equal', fence.createRevision)],
        success: batch.map((u) => ({ request_delete_range: { key: buf(k.assignment(u.machineId, u.unit)) } })),
        failure: [op.get(k.leader)],
      });
      if (!res.succeeded) throw this.fencedOut(fence, rangeKvs(res, 0)[0], `unassign ${batch.length} units`);
    });
    const at = now();
    await runLimited(batches(changes.assign), async (batch) => {
      for (const a of batch) { checkName('machine ID', a.machineId); checkName('unit name', a.unit); checkHash(a.hash); }
      const refs = [...new Set(batch.map((a) => k.ref(a.hash, a.unit)))];
      const machines = [...new Set(batch.map((a) => k.machine(a.machineId)))];
      const res = await this.txn(`assign ${batch.length} units`, {
        compare: [cmp.created(k.leader, 'Equal', fence.createRevision), ...refs.map((r) => cmp.created(r, 'Greater', 0)), ...machines.map((m) => cmp.created(m, 'Greater', 0))],
        success: batch.map((a) => {
          const stored = { unit: a.unit, hash: a.hash, desiredState: a.desiredState ?? 'launched', assignedAt: at, ...(a.reason !== undefined ? { reason: a.reason } : {}) };
          return op.put(k.assignment(a.machineId, a.unit), JSON.stringify(stored));
        }),
        failure: [op.get(k.leader)],
      });
      if (res.succeeded) return;
      const leader = rangeKvs(res, 0)[0];
      if (leader?.create_revision !== fence.createRevision) throw this.fencedOut(fence, leader, `assign ${batch.length} units`);
      for (const a of batch) {
        try {
          await this.assign(a.machineId, a.unit, a.hash, fence, { ...(a.reason !== undefined ? { reason: a.reason } : {}), ...(a.desiredState ? { desiredState: a.desiredState } : {}) });
        } catch (err) {
          if (FlotillaError.is(err) && err.code === 'not-found') failed.push({ machineId: a.machineId, unit: a.unit, error: err });
          else throw err;
        }
      }
    });
    return { failed };
  }

  /** Every assignment, or one machine's. */
  async listSchedule(machineId?: string): Promise<Assignment[]> {
    const base = machineId === undefined ? this.k.schedule : this.k.scheduleOf(checkName('machine ID', machineId));
    const res = await this.range('list schedule', base);
    return this.decodeMany(res.kvs, 'assignment', (kv, o) => this.decodeAssignmentKv(kv, o));
  }

  private decodeAssignmentKv(kv: IKeyValue, o: Json): Assignment {
    const parsed = this.k.parse(keyOf(kv));
    if (parsed.kind !== 'schedule') throw new Malformed('not a schedule key');
    return decodeAssignment(parsed.machineId, o);
  }

  /** One machine's assignments only: this watch never sees other machines' events. */
  watchAssignments(machineId: string, cb: (ev: WatchEvent<Assignment>) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
    const base = this.k.scheduleOf(checkName('machine ID', machineId));
    return this.typedWatch(base, 'assignment', (kv, o) => this.decodeAssignmentKv(kv, o), (key) => this.k.tail(key, base), cb, opts);
  }

  /** Records that `unit` cannot be placed (fenced), or clears the verdict with `undefined`. */
  async setPlacement(unit: string, info: { hash: string; reason: string } | undefined, fence: Fence): Promise<void> {
    checkName('unit name', unit);
    this.checkFence(fence);
    const k = this.k;
    if (info === undefined) {
      const res = await this.txn(`clear placement of ${unit}`, {
        compare: [cmp.created(k.leader, 'Equal', fence.createRevision)],
        success: [op.del(k.placement(unit))],
        failure: [op.get(k.leader)],
      });
      if (!res.succeeded) throw this.fencedOut(fence, rangeKvs(res, 0)[0], `clear placement of ${unit}`);
      return;
    }
    checkHash(info.hash);
    const placement: Placement = { unit, status: 'unplaceable', hash: info.hash, reason: String(info.reason), at: now() };
    const res = await this.txn(`set placement of ${unit}`, {
      compare: [cmp.created(k.leader, 'Equal', fence.createRevision), cmp.created(k.ref(info.hash, unit), 'Greater', 0)],
      success: [op.put(k.placement(unit), JSON.stringify(placement))],
      failure: [op.get(k.leader)],
    });
    if (res.succeeded) return;
    const leader = rangeKvs(res, 0)[0];
    if (leader?.create_revision !== fence.createRevision) throw this.fencedOut(fence, leader, `set placement of ${unit}`);
    throw new FlotillaError('not-found', `set placement of ${unit}: unit with content ${info.hash.slice(0, 12)} is not submitted`);
  }

  async listPlacements(): Promise<Placement[]> {
    const res = await this.range('list placements', this.k.placements);
    return this.decodeMany(res.kvs, 'placement', (_, o) => decodePlacement(o));
  }

  // ---- health (engine writes, fenced) -------------------------------------

  /** Records a unit's failure on a machine (fenced; only while that content is submitted). */
  async recordFailure(h: UnitHealth, fence: Fence): Promise<void> {
    checkName('unit name', h.unit);
    checkName('machine ID', h.machineId);
    checkHash(h.hash);
    this.checkFence(fence);
    const k = this.k;
    const res = await this.txn(`record failure of ${h.unit} on ${h.machineId}`, {
      compare: [cmp.created(k.leader, 'Equal', fence.createRevision), cmp.created(k.ref(h.hash, h.unit), 'Greater', 0)],
      success: [op.put(k.health(h.unit, h.machineId), JSON.stringify(h))],
      failure: [op.get(k.leader)],
    });
    if (res.succeeded) return;
    const leader = rangeKvs(res, 0)[0];
    if (leader?.create_revision !== fence.createRevision) throw this.fencedOut(fence, leader, `record failure of ${h.unit}`);
    throw new FlotillaError('not-found', `record failure of ${h.unit}: content ${h.hash.slice(0, 12)} is not submitted`);
  }

  /** Forgets a unit's failures on a machine (fenced). */
  async clearHealth(unit: string, machineId: string, fence: Fence): Promise<void> {
    checkName('unit name', unit);
    checkName('machine ID', machineId);
    this.checkFence(fence);
    const res = await this.txn(`clear health of ${unit} on ${machineId}`, {
      compare: [cmp.created(this.k.leader, 'Equal', fence.createRevision)],
      success: [op.del(this.k.health(unit, machineId))],
      failure: [op.get(this.k.leader)],
    });
    if (!res.succeeded) throw this.fencedOut(fence, rangeKvs(res, 0)[0], `clear health of ${unit}`);
  }

  async listHealth(unit?: string): Promise<UnitHealth[]> {
    const res = await this.range('list health', unit === undefined ? this.k.healthAll : this.k.healthOf(checkName('unit name', unit)));
    return this.decodeMany(res.kvs, 'health record', (_, o) => decodeHealth(o));
  }

  // ---- rolling updates (client writes) -------------------------------------

  async getRollout(unit: string): Promise<Rollout | undefined> {
    const kv = await this.getKv(this.k.rollout(checkName('unit name', unit)));
    return kv ? this.decode(kv, 'rollout', (o) => decodeRollout(o, kv.mod_revision)) : undefined;
  }

  /**
   * Starts a rolling update: in one transaction the job's content becomes `unitText`
   * (body and reference added), the old content stays referenced, and the rollout record
   * is written. 'not-found' if the unit is not submitted; 'conflict' if a rollout of it
   * is in progress or the job changed meanwhile. `undefined` when the content is the same.
   */
  async beginRollout(name: string, unitText: string, options: RolloutOptions): Promise<Rollout | undefined> {
    checkName('unit name', name);
    if (Buffer.byteLength(unitText) > MAX_UNIT_BYTES) throw new FlotillaError('too-large', `unit ${name}: ${Buffer.byteLength(unitText)} bytes exceeds ${MAX_UNIT_BYTES}`);
    const k = this.k;
    const hash = createHash('sha256').update(unitText, 'utf8').digest('hex');
    const kv = await this.getKv(k.job(name));
    if (!kv) throw new FlotillaError('not-found', `unit ${name} is not submitted: submit it first (an update replaces a submitted unit)`);
    const job = this.decode(kv, 'job', decodeJob);
    const rkv = await this.getKv(k.rollout(name));
    const previous = rkv ? this.decode(rkv, 'rollout', (o) => decodeRollout(o, rkv.mod_revision)) : undefined;
    if (previous && ROLLOUT_IN_PROGRESS.includes(previous.phase)) {
      throw new FlotillaError('conflict', `unit ${name}: a rolling update is in progress (phase ${previous.phase}, to ${previous.toHash.slice(0, 12)}); resume it or roll it back first`);
    }
    if (job.hash === hash) return undefined;
    const at = now();
    const rollout: Rollout = { unit: name, fromHash: job.hash, toHash: hash, phase: 'rolling', hashOn: {}, options, steps: [], startedAt: at, updatedAt: at, revision: '' };
    const res = await this.txn(`begin update of ${name}`, {
      compare: [cmp.modified(k.job(name), kv.mod_revision), rkv ? cmp.modified(k.rollout(name), rkv.mod_revision) : cmp.created(k.rollout(name), 'Equal', 0)],
      success: [
        op.put(k.job(name), JSON.stringify({ ...job, hash })),
        op.put(k.ref(hash, name), ''),
        op.txn({ compare: [cmp.created(k.body(hash), 'Equal', 0)], success: [op.put(k.body(hash), unitText)] }),
        op.put(k.rollout(name), encodeRollout(rollout)),
      ],
    });
    if (!res.succeeded) throw new FlotillaError('conflict', `unit ${name} changed while its update was starting; try again`);
    return { ...rollout, revision: res.header.revision };
  }

  /**
   * Writes a changed rollout record if nobody changed it since `r.revision`. A new phase
   * changes the job too: `rolling-back` puts the old content back as the job's; `done`
   * drops the old content, `rolled-back` the new one (their bodies go when unreferenced).
   * Returns the record with its new revision; 'conflict' if it changed meanwhile.
   */
  async saveRollout(r: Rollout): Promise<Rollout> {
    checkName('unit name', r.unit);
    const k = this.k;
    const stored = await this.getKv(k.rollout(r.unit));
    if (!stored || stored.mod_revision !== r.revision) throw new FlotillaError('conflict', `rollout of ${r.unit} was changed by someone else (revision ${stored?.mod_revision ?? 'deleted'}, expected ${r.revision})`);
    const before = this.decode(stored, 'rollout', (o) => decodeRollout(o, stored.mod_revision));
    const next: Rollout = { ...r, updatedAt: now() };
    const compare: ICompare[] = [cmp.modified(k.rollout(r.unit), r.revision)];
    const success: IRequestOp[] = [op.put(k.rollout(r.unit), encodeRollout(next))];
    let drop: string | undefined;
    if (next.phase !== before.phase) {
      const jkv = await this.getKv(k.job(r.unit));
      if (!jkv) throw new FlotillaError('not-found', `unit ${r.unit} was destroyed during its update`);
      const job = this.decode(jkv, 'job', decodeJob);
      compare.push(cmp.modified(k.job(r.unit), jkv.mod_revision));
      if (next.phase === 'rolling-back') success.push(op.put(k.job(r.unit), JSON.stringify({ ...job, hash: r.fromHash })));
      if (next.phase === 'rolling') success.push(op.put(k.job(r.unit), JSON.stringify({ ...job, hash: r.toHash })));
      if (next.phase === 'done') drop = r.fromHash;
      if (next.phase === 'rolled-back') drop = r.toHash;
      if (drop !== undefined && drop !== job.hash) success.push(op.del(k.ref(drop, r.unit)));
      else drop = undefined;
    }
    const res = await this.txn(`save rollout of ${r.unit}`, { compare, success });
    if (!res.succeeded) throw new FlotillaError('conflict', `rollout of ${r.unit} or its job changed meanwhile; try again`);
    if (drop !== undefined) await this.collectBody(drop);
    return { ...next, revision: res.header.revision };
  }

  /**
   * Takes the lock that makes one client the driver of a unit's rollout, held under a
   * lease: a driver that dies lets it go after `ttlSeconds`. 'conflict' if held.
   */
  async lockRollout(unit: string, driver: string, ttlSeconds = 10): Promise<{ release(): Promise<void>; readonly alive: boolean }> {
    checkName('unit name', unit);
    const key = this.k.rolloutLock(unit);
    const lease = this.client.lease(ttlSeconds);
    lease.on('lost', () => undefined);
    const leaseId = await this.call(`grant lease for the rollout lock of ${unit}`, () => lease.grant());
    const kept = new KeptLease(lease, leaseId, ttlSeconds, `rollout lock of ${unit}`, this);
    kept.on('lost', () => undefined);
    const res = await this.txn(`lock rollout of ${unit}`, {
      compare: [cmp.created(key, 'Equal', 0)],
      success: [op.put(key, JSON.stringify({ driver, since: now() }), leaseId)],
      failure: [op.get(key)],
    }).catch(async (err: unknown) => {
      await kept.revoke().catch(() => undefined);
      throw err;
    });
    if (!res.succeeded) {
      await kept.revoke().catch(() => undefined);
      const held = rangeKvs(res, 0)[0];
      throw new FlotillaError('conflict', `the rollout of ${unit} is being driven by ${held ? text(held) : 'another client'}; it lets go within ${ttlSeconds} s of stopping`);
    }
    return {
      release: () => kept.revoke(),
      get alive() {
        return kept.alive;
      },
    };
  }

  /** Every unit state report as it changes (a snapshot first, as typed watches do). */
  watchStates(cb: (ev: WatchEvent<UnitState>) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
    return this.typedWatch(this.k.states, 'unit state', (kv, o) => this.decodeStateKv(kv, o), (key) => {
      const p = this.k.parse(key);
      return p.kind === 'state' ? `${p.machineId}/${p.unit}` : key;
    }, cb, opts);
  }

  // ---- unit states (agent writes, under its lease) ------------------------

  /** Reports what systemd says of a unit; only while `lease` still holds the machine's registration. */
  async reportState(machineId: string, lease: MachineLease, state: { unit: string; hash: string; active: string; sub: string; result?: string; updatedAt?: string }): Promise<UnitState> {
    checkName('machine ID', machineId);
    checkName('unit name', state.unit);
    checkHash(state.hash);
    if (lease.machineId !== machineId) throw new FlotillaError('internal', `reportState: lease of machine ${lease.machineId} used for ${machineId}`);
    const full: UnitState = { machineId, unit: state.unit, hash: state.hash, active: String(state.active), sub: String(state.sub), ...(state.result !== undefined ? { result: String(state.result) } : {}), updatedAt: state.updatedAt ?? now() };
    const { machineId: _omit, ...stored } = full;
    const res = await this.txn(`report state of ${state.unit} on ${machineId}`, {
      compare: [cmp.lease(this.k.machine(machineId), lease.leaseId)],
      success: [op.put(this.k.state(machineId, state.unit), JSON.stringify(stored), lease.leaseId)],
    });
    if (!res.succeeded) throw new FlotillaError('conflict', `report state of ${state.unit}: machine ${machineId} is no longer registered under lease ${lease.leaseId}`);
    return full;
  }

  /** Reports several units' states in one transaction per 100 (an agent's batch). */
  async reportStates(machineId: string, lease: MachineLease, states: ReadonlyArray<{ unit: string; hash: string; active: string; sub: string; result?: string }>): Promise<void> {
    checkName('machine ID', machineId);
    if (lease.machineId !== machineId) throw new FlotillaError('internal', `reportStates: lease of machine ${lease.machineId} used for ${machineId}`);
    const at = now();
    for (let i = 0; i < states.length; i += 100) {
      const chunk = states.slice(i, i + 100);
      const res = await this.txn(`report ${chunk.length} states on ${machineId}`, {
        compare: [cmp.lease(this.k.machine(machineId), lease.leaseId)],
        success: chunk.map((st) => {
          checkName('unit name', st.unit);
          checkHash(st.hash);
          const stored = { unit: st.unit, hash: st.hash, active: String(st.active), sub: String(st.sub), ...(st.result !== undefined ? { result: String(st.result) } : {}), updatedAt: at };
          return op.put(this.k.state(machineId, st.unit), JSON.stringify(stored), lease.leaseId);
        }),
      });
      if (!res.succeeded) throw new FlotillaError('conflict', `report states on ${machineId}: machine is no longer registered under lease ${lease.leaseId}`);
    }
  }

  /** Removes a unit's reported state (the agent unloaded it). */
  async clearState(machineId: string, lease: MachineLease, unit: string): Promise<void> {
    checkName('machine ID', machineId);
    checkName('unit name', unit);
    const res = await this.txn(`clear state of ${unit} on ${machineId}`, {
      compare: [cmp.lease(this.k.machine(machineId), lease.leaseId)],
      success: [op.del(this.k.state(machineId, unit))],
    });
    if (!res.succeeded) throw new FlotillaError('conflict', `clear state of ${unit}: machine ${machineId} is no longer registered under lease ${lease.leaseId}`);
  }

  /** Every reported state, or one machine's. */
  async listStates(machineId?: string): Promise<UnitState[]> {
    const base = machineId === undefined ? this.k.states : this.k.statesOf(checkName('machine ID', machineId));
    const res = await this.range('list states', base);
    return this.decodeMany(res.kvs, 'unit state', (kv, o) => this.decodeStateKv(kv, o));
  }

  private decodeStateKv(kv: IKeyValue, o: Json): UnitState {
    const parsed = this.k.parse(keyOf(kv));
    if (parsed.kind !== 'state') throw new Malformed('not a state key');
    return decodeState(parsed.machineId, o);
  }

  // ---- engine leadership --------------------------------------------------

  /**
   * Waits until `candidateId` holds `engine/leader` (created under a fresh lease when
   * absent), then returns the leadership with its fence. Rejects with 'timeout' on
   * abort, or 'external' when etcd fails.
   */
  async campaign(candidateId: string, opts: CampaignOptions = {}): Promise<Leadership> {
    if (typeof candidateId !== 'string' || candidateId.length === 0 || candidateId.length > 256) throw new FlotillaError('invalid-input', 'campaign: bad candidate ID');
    const ttl = opts.ttlSeconds ?? 10;
    if (!Number.isInteger(ttl) || ttl < 1) throw new FlotillaError('invalid-input', 'campaign: TTL must be a whole number of seconds >= 1');
    const key = this.k.leader;
    const aborted = (): void => {
      if (opts.signal?.aborted) throw new FlotillaError('timeout', `campaign of ${candidateId} aborted`);
    };
    for (;;) {
      aborted();
      const lease = this.client.lease(ttl);
      lease.on('lost', () => undefined);
      const leaseId = await this.call('grant leader lease', () => lease.grant());
      const value = JSON.stringify({ candidateId, leaseId, since: now() });
      let res: ITxnResponse;
      try {
        res = await this.txn(`campaign ${candidateId}`, {
          compare: [cmp.created(key, 'Equal', 0)],
          success: [op.put(key, value, leaseId)],
          failure: [op.get(key)],
        });
      } catch (err) {
        await lease.revoke().catch(() => undefined);
        throw err;
      }
      if (res.succeeded) {
        const kept = new KeptLease(lease, leaseId, ttl, `engine leadership of ${candidateId}`, this);
        const leadership = new Leadership(candidateId, { key, createRevision: res.header.revision }, kept, this);
        try {
          await leadership.watchKey(this.k);
        } catch (err) {
          await leadership.resign().catch(() => undefined);
          throw err;
        }
        return leadership;
      }
      await lease.revoke().catch(() => undefined);
      const holder = rangeKvs(res, 0)[0];
      if (holder) await this.waitForChange(key, holder.mod_revision, ttl * 1000, opts.signal);
    }
  }

  /** Resolves when `key` changes after `revision`, after `timeoutMs`, or on abort. */
  private async waitForChange(key: string, revision: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    const w = this.client.watch().key(key).startRevision(String(BigInt(revision) + 1n)).watcher();
    let onAbort: (() => void) | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve) => {
        w.on('data', (r: IWatchResponse) => {
          if (r.events.length > 0) resolve();
        });
        w.on('error', () => resolve());
        timer = setTimeout(resolve, timeoutMs);
        onAbort = resolve;
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    } finally {
      if (timer) clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
      await Promise.race([w.cancel().catch(() => undefined), sleep(1000)]);
      w.removeAllListeners();
    }
  }

  /** Who leads now, if anyone. */
  async getLeader(): Promise<LeaderInfo | undefined> {
    const kv = await this.getKv(this.k.leader);
    if (!kv) return undefined;
    return this.decode(kv, 'leader record', (o) => ({ candidateId: str(o, 'candidateId'), leaseId: str(o, 'leaseId'), since: str(o, 'since'), createRevision: kv.create_revision }));
  }

  // ---- whole-registry views for the engine --------------------------------

  /** Everything at one revision; `states: false` skips unit states (the engine does not place by them). */
  async snapshot(opts: { states?: boolean } = {}): Promise<RegistrySnapshot> {
    const k = this.k;
    const jobs = await this.range('snapshot', k.jobs);
    const rev = jobs.header.revision;
    const [machines, schedule, states, placements, health, rollouts, leader] = await Promise.all([
      this.range('snapshot', k.machines, rev),
      this.range('snapshot', k.schedule, rev),
      opts.states === false ? Promise.resolve({ kvs: [] as IKeyValue[] } as unknown as IRangeResponse) : this.range('snapshot', k.states, rev),
      this.range('snapshot', k.placements, rev),
      this.range('snapshot', k.healthAll, rev),
      this.range('snapshot', k.rollouts, rev),
      this.call('snapshot', () => this.client.kv.range({ key: buf(k.leader), revision: rev })),
    ]);
    const leaderKv = leader.kvs[0];
    return {
      revision: rev,
      jobs: this.decodeMany(jobs.kvs, 'job', (_, o) => decodeJob(o)),
      machines: this.decodeMany(machines.kvs, 'machine', (_, o) => decodeMachine(o)),
      schedule: this.decodeMany(schedule.kvs, 'assignment', (kv, o) => this.decodeAssignmentKv(kv, o)),
      states: this.decodeMany(states.kvs, 'unit state', (kv, o) => this.decodeStateKv(kv, o)),
      placements: this.decodeMany(placements.kvs, 'placement', (_, o) => decodePlacement(o)),
      health: this.decodeMany(health.kvs, 'health record', (_, o) => decodeHealth(o)),
      rollouts: this.decodeMany(rollouts.kvs, 'rollout', (kv, o) => decodeRollout(o, kv.mod_revision)),
      leader: leaderKv
        ? this.decode(leaderKv, 'leader record', (o) => ({ candidateId: str(o, 'candidateId'), leaseId: str(o, 'leaseId'), since: str(o, 'since'), createRevision: leaderKv.create_revision }))
        : undefined,
    };
  }

  /**
   * Notifies of every change to jobs, machines, schedule, states and placements (not
   * bodies, references or the leader key). Starts with a 'resync'; a later 'resync'
   * means changes may have been missed: re-read with snapshot().
   */
  async watchAll(cb: (ev: RegistryChange) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
    const onError = opts.onError ?? warn;
    const w = new ResilientWatch(this, this.k.root, true, {
      snapshot: (_, revision) => cb({ type: 'resync', revision }),
      event: (type, kv, revision) => {
        const p = this.k.parse(keyOf(kv));
        if (p.kind === 'body' || p.kind === 'ref' || p.kind === 'leader' || p.kind === 'rollout-lock' || p.kind === 'unknown') return;
        const change: RegistryChange = { type, kind: p.kind, revision };
        if ('unit' in p) change.unit = p.unit;
        if ('machineId' in p) change.machineId = p.machineId;
        if (p.kind === 'state' && type === 'put') {
          try {
            change.state = this.decode(kv, 'unit state', (o) => decodeState(p.machineId, o));
          } catch (err) {
            onError(err as Error);
            return;
          }
        }
        cb(change);
      },
    }, onError, true);
    await w.start();
    return { close: () => w.close() };
  }

  private async typedWatch<T>(
    base: string,
    what: string,
    decode: (kv: IKeyValue, o: Json) => T,
    idOf: (key: string) => string,
    cb: (ev: WatchEvent<T>) => void,
    opts: WatchOptions,
  ): Promise<RegistryWatch> {
    const onError = opts.onError ?? warn;
    const decodeOrReport = (kv: IKeyValue): T | undefined => {
      try {
        return this.decode(kv, what, (o) => decode(kv, o));
      } catch (err) {
        onError(err as Error);
        return undefined;
      }
    };
    const w = new ResilientWatch(this, base, true, {
      snapshot: (kvs, revision) => {
        const items: T[] = [];
        for (const kv of kvs) {
          const item = decodeOrReport(kv);
          if (item !== undefined) items.push(item);
        }
        cb({ type: 'snapshot', items, revision });
      },
      event: (type, kv, revision) => {
        if (type === 'delete') {
          cb({ type: 'delete', id: idOf(keyOf(kv)), revision });
          return;
        }
        const item = decodeOrReport(kv);
        if (item !== undefined) cb({ type: 'put', item, revision });
      },
    }, onError);
    await w.start();
    return { close: () => w.close() };
  }

  /**
   * Closes watches, stops keepalives without revoking (machine registrations and
   * leadership lapse after their TTL, as after a crash), and closes the client.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    // Leaderships first: each also shuts down its own watch and lease.
    for (const x of [...this.live]) if (x instanceof Leadership) await x.shutdown();
    for (const x of [...this.live]) await x.shutdown();
    this.closed = true;
    this.client.close();
  }
}
