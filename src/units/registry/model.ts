/**
 * The registry's model: what it stores (one type per key kind, docs/registry.md "Key
 * layout"), what its watches deliver, the handles it returns (leases, leadership) and
 * how it is connected. Types only, and the constants that enumerate their values.
 */
import type { FlotillaError } from '../../errors';

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

/** Engine leadership won by `campaign()` (docs/registry.md, "Leadership and fencing"). */
export interface Leadership {
  readonly candidateId: string;
  /** Pass it to every write made as leader. */
  readonly fence: Fence;
  readonly leaseId: string;
  readonly isLeader: boolean;
  /** Fires once when leadership ends other than by resign(): lease lost, or the leader key deleted or replaced. */
  on(event: 'lost', listener: (err: FlotillaError) => void): this;
  /** Gives leadership up: deletes the leader key (if still ours) and revokes the lease. */
  resign(): Promise<void>;
}

/** An agent's registration: `machines/<id>` and its unit states live under this lease. */
export interface MachineLease {
  readonly machineId: string;
  readonly leaseId: string;
  readonly ttlSeconds: number;
  /** False once lost, revoked or released. */
  readonly alive: boolean;
  /** Fires once if the lease can no longer be kept; the agent should stop its units' reporting and register again. */
  on(event: 'lost', listener: (err: FlotillaError) => void): this;
  /** Deregisters now: the machine key and its states vanish. */
  revoke(): Promise<void>;
  /** Stops keepalives only (as a crash would): everything vanishes after the TTL. */
  release(): void;
}

/** The lock that makes one client the driver of a rollout (`lockRollout`). */
export interface RolloutLock {
  /** Lets go now (revokes its lease). */
  release(): Promise<void>;
  /** False once released or its lease was lost. */
  readonly alive: boolean;
}

/** The engine's bulk schedule change (`applySchedule`): removals, then assignments. */
export interface ScheduleChanges {
  unassign: ReadonlyArray<{ machineId: string; unit: string }>;
  assign: ReadonlyArray<{ machineId: string; unit: string; hash: string; reason?: string; desiredState?: 'loaded' | 'launched' }>;
}

/** The stale changes of an `applySchedule` (unit or machine gone meanwhile): redo them next pass. */
export interface ScheduleResult {
  failed: Array<{ machineId: string; unit: string; error: FlotillaError }>;
}

/** One unit's state as an agent reports it (`reportStates`); the registry adds the time. */
export interface StateReport {
  unit: string;
  hash: string;
  active: string;
  sub: string;
  result?: string;
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
