/**
 * The narrow views of the registry its users take: each names only the operations that
 * user performs, so the engine cannot touch machine leases, an agent cannot write the
 * schedule, and either can be given a stand-in. `Registry` implements them all; the
 * methods are documented there (./registry.ts) and in docs/registry.md.
 */
import type {
  Assignment,
  CampaignOptions,
  Fence,
  Job,
  Leadership,
  MachineInfo,
  MachineLease,
  RegistryChange,
  RegistrySnapshot,
  RegistryWatch,
  Rollout,
  RolloutLock,
  RolloutOptions,
  ScheduleChanges,
  ScheduleResult,
  StateReport,
  Unit,
  UnitHealth,
  UnitState,
  WatchEvent,
  WatchOptions,
} from './model';

/**
 * What the engine (src/units/engine.ts) uses: leadership, the whole-registry views it
 * plans from, unit bodies to parse, and its fenced writes (schedule, placement verdicts,
 * health records).
 */
export interface EngineStore {
  campaign(candidateId: string, opts?: CampaignOptions): Promise<Leadership>;
  watchAll(cb: (ev: RegistryChange) => void, opts?: WatchOptions): Promise<RegistryWatch>;
  snapshot(opts?: { states?: boolean }): Promise<RegistrySnapshot>;
  getBody(hash: string): Promise<string | undefined>;
  applySchedule(changes: ScheduleChanges, fence: Fence, opts?: { batchSize?: number; concurrency?: number }): Promise<ScheduleResult>;
  setPlacement(unit: string, info: { hash: string; reason: string } | undefined, fence: Fence): Promise<void>;
  recordFailure(h: UnitHealth, fence: Fence): Promise<void>;
  clearHealth(unit: string, machineId: string, fence: Fence): Promise<void>;
}

/**
 * What an agent (src/units/agent.ts) uses: its machine's registration, its own
 * assignments, unit bodies to run, and its state reports under its lease.
 */
export interface AgentStore {
  registerMachine(info: MachineInfo, ttlSeconds: number, opts?: { lostAfterMs?: number }): Promise<MachineLease>;
  watchAssignments(machineId: string, cb: (ev: WatchEvent<Assignment>) => void, opts?: WatchOptions): Promise<RegistryWatch>;
  getBody(hash: string): Promise<string | undefined>;
  reportStates(machineId: string, lease: MachineLease, states: ReadonlyArray<StateReport>): Promise<void>;
  clearState(machineId: string, lease: MachineLease, unit: string): Promise<void>;
}

/**
 * What a rolling update's driver (src/units/rollout.ts) uses: the rollout record and its
 * lock, the units it updates, and where their copies run and how they report.
 */
export interface RolloutStore {
  beginRollout(name: string, unitText: string, options: RolloutOptions): Promise<Rollout | undefined>;
  getRollout(unit: string): Promise<Rollout | undefined>;
  saveRollout(r: Rollout): Promise<Rollout>;
  lockRollout(unit: string, driver: string, ttlSeconds?: number): Promise<RolloutLock>;
  listUnits(): Promise<Job[]>;
  getUnit(name: string): Promise<Unit | undefined>;
  listSchedule(machineId?: string): Promise<Assignment[]>;
  listMachines(): Promise<MachineInfo[]>;
  watchStates(cb: (ev: WatchEvent<UnitState>) => void, opts?: WatchOptions): Promise<RegistryWatch>;
}
