/** Unit states: `states/<machineId>/<unit>`, what agents report, each under its machine's lease. */
import type { IKeyValue } from 'etcd3';
import { FlotillaError } from '../../errors';
import { checkHash, checkRegistryName, type RegistryKeys } from '../../config/key-layout';
import { decodeState, Malformed, type Json } from './codec';
import type { RegistryCore } from './core';
import { cmp, keyOf, now, op } from './etcd';
import type { MachineLease, RegistryWatch, StateReport, UnitState, WatchEvent, WatchOptions } from './model';
import { typedWatch } from './watch';

/** Reports what systemd says of a unit; only while `lease` still holds the machine's registration. */
export async function reportState(core: RegistryCore, machineId: string, lease: MachineLease, state: { unit: string; hash: string; active: string; sub: string; result?: string; updatedAt?: string }): Promise<UnitState> {
  checkRegistryName('machine ID', machineId);
  checkRegistryName('unit name', state.unit);
  checkHash(state.hash);
  if (lease.machineId !== machineId) throw new FlotillaError('internal', `reportState: lease of machine ${lease.machineId} used for ${machineId}`);
  const full: UnitState = { machineId, unit: state.unit, hash: state.hash, active: String(state.active), sub: String(state.sub), ...(state.result !== undefined ? { result: String(state.result) } : {}), updatedAt: state.updatedAt ?? now() };
  const { machineId: _omit, ...stored } = full;
  const res = await core.txn(`report state of ${state.unit} on ${machineId}`, {
    compare: [cmp.lease(core.k.machine(machineId), lease.leaseId)],
    success: [op.put(core.k.state(machineId, state.unit), JSON.stringify(stored), lease.leaseId)],
  });
  if (!res.succeeded) throw new FlotillaError('conflict', `report state of ${state.unit}: machine ${machineId} is no longer registered under lease ${lease.leaseId}`);
  return full;
}

/** Reports several units' states in one transaction per 100 (an agent's batch). */
export async function reportStates(core: RegistryCore, machineId: string, lease: MachineLease, states: ReadonlyArray<StateReport>): Promise<void> {
  checkRegistryName('machine ID', machineId);
  if (lease.machineId !== machineId) throw new FlotillaError('internal', `reportStates: lease of machine ${lease.machineId} used for ${machineId}`);
  const at = now();
  for (let i = 0; i < states.length; i += 100) {
    const chunk = states.slice(i, i + 100);
    const res = await core.txn(`report ${chunk.length} states on ${machineId}`, {
      compare: [cmp.lease(core.k.machine(machineId), lease.leaseId)],
      success: chunk.map((st) => {
        checkRegistryName('unit name', st.unit);
        checkHash(st.hash);
        const stored = { unit: st.unit, hash: st.hash, active: String(st.active), sub: String(st.sub), ...(st.result !== undefined ? { result: String(st.result) } : {}), updatedAt: at };
        return op.put(core.k.state(machineId, st.unit), JSON.stringify(stored), lease.leaseId);
      }),
    });
    if (!res.succeeded) throw new FlotillaError('conflict', `report states on ${machineId}: machine is no longer registered under lease ${lease.leaseId}`);
  }
}

/** Removes a unit's reported state (the agent unloaded it). */
export async function clearState(core: RegistryCore, machineId: string, lease: MachineLease, unit: string): Promise<void> {
  checkRegistryName('machine ID', machineId);
  checkRegistryName('unit name', unit);
  const res = await core.txn(`clear state of ${unit} on ${machineId}`, {
    compare: [cmp.lease(core.k.machine(machineId), lease.leaseId)],
    success: [op.del(core.k.state(machineId, unit))],
  });
  if (!res.succeeded) throw new FlotillaError('conflict', `clear state of ${unit}: machine ${machineId} is no longer registered under lease ${lease.leaseId}`);
}

/** Every reported state, or one machine's. */
export async function listStates(core: RegistryCore, machineId?: string): Promise<UnitState[]> {
  const base = machineId === undefined ? core.k.states : core.k.statesOf(checkRegistryName('machine ID', machineId));
  const res = await core.range('list states', base);
  return core.decodeMany(res.kvs, 'unit state', (kv, o) => stateOf(core.k, kv, o));
}

/** A unit state from its key (machine ID) and value. */
export function stateOf(k: RegistryKeys, kv: IKeyValue, o: Json): UnitState {
  const parsed = k.parse(keyOf(kv));
  if (parsed.kind !== 'state') throw new Malformed('not a state key');
  return decodeState(parsed.machineId, o);
}

/** Every unit state report as it changes (a snapshot first, as typed watches do). */
export function watchStates(core: RegistryCore, cb: (ev: WatchEvent<UnitState>) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
  return typedWatch(core, core.k.states, 'unit state', (kv, o) => stateOf(core.k, kv, o), (key) => {
    const p = core.k.parse(key);
    return p.kind === 'state' ? `${p.machineId}/${p.unit}` : key;
  }, cb, opts);
}
