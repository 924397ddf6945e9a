/**
 * Values: how each kind of record is stored (JSON, except unit bodies) and checked on the
 * way in. A decoder throws `Malformed`; RegistryCore.decode turns that into an error
 * naming the key, and watches report it and skip the value.
 */
import {
  DESIRED_STATES,
  ROLLOUT_PHASES,
  type Assignment,
  type DesiredState,
  type Job,
  type LeaderInfo,
  type MachineInfo,
  type Placement,
  type Rollout,
  type RolloutPhase,
  type UnitHealth,
  type UnitState,
} from './model';

export type Json = Record<string, unknown>;

export class Malformed extends Error {}

export function asObject(v: unknown): Json {
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

export function decodeJob(o: Json): Job {
  const desiredState = str(o, 'desiredState');
  if (!(DESIRED_STATES as readonly string[]).includes(desiredState)) throw new Malformed(`bad desiredState ${desiredState}`);
  return { name: str(o, 'name'), hash: str(o, 'hash'), desiredState: desiredState as DesiredState, submittedAt: str(o, 'submittedAt') };
}
export function decodeMachine(o: Json): MachineInfo {
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
export function decodeAssignment(machineId: string, o: Json): Assignment {
  const reason = optStr(o, 'reason');
  const desiredState = optStr(o, 'desiredState') ?? 'launched';
  if (desiredState !== 'loaded' && desiredState !== 'launched') throw new Malformed(`desiredState ${JSON.stringify(desiredState)} is not loaded or launched`);
  return { machineId, unit: str(o, 'unit'), hash: str(o, 'hash'), desiredState, assignedAt: str(o, 'assignedAt'), ...(reason !== undefined ? { reason } : {}) };
}
export function decodeState(machineId: string, o: Json): UnitState {
  const result = optStr(o, 'result');
  return { machineId, unit: str(o, 'unit'), hash: str(o, 'hash'), active: str(o, 'active'), sub: str(o, 'sub'), ...(result !== undefined ? { result } : {}), updatedAt: str(o, 'updatedAt') };
}
export function decodeHealth(o: Json): UnitHealth {
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
export function decodeRollout(o: Json, revision: string): Rollout {
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
export function encodeRollout(r: Rollout): string {
  const { revision: _rev, ...stored } = r;
  return JSON.stringify(stored);
}
export function decodePlacement(o: Json): Placement {
  if (o['status'] !== 'unplaceable') throw new Malformed('status is not "unplaceable"');
  return { unit: str(o, 'unit'), status: 'unplaceable', hash: str(o, 'hash'), reason: str(o, 'reason'), at: str(o, 'at') };
}

/** `engine/leader`; the create revision comes from the key, not the value. */
export function decodeLeader(o: Json, createRevision: string): LeaderInfo {
  return { candidateId: str(o, 'candidateId'), leaseId: str(o, 'leaseId'), since: str(o, 'since'), createRevision };
}
