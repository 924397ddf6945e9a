/** Health records: `health/<unit>/<machineId>`, the engine's memory of failures (fenced). */
import { FlotillaError } from '../../errors';
import { checkHash, checkRegistryName } from '../../config/key-layout';
import { decodeHealth } from './codec';
import type { RegistryCore } from './core';
import { cmp, op, rangeKvs } from './etcd';
import type { Fence, UnitHealth } from './model';

/** Records a unit's failure on a machine (fenced; only while that content is submitted). */
export async function recordFailure(core: RegistryCore, h: UnitHealth, fence: Fence): Promise<void> {
  checkRegistryName('unit name', h.unit);
  checkRegistryName('machine ID', h.machineId);
  checkHash(h.hash);
  core.checkFence(fence);
  const k = core.k;
  const res = await core.txn(`record failure of ${h.unit} on ${h.machineId}`, {
    compare: [cmp.created(k.leader, 'Equal', fence.createRevision), cmp.created(k.ref(h.hash, h.unit), 'Greater', 0)],
    success: [op.put(k.health(h.unit, h.machineId), JSON.stringify(h))],
    failure: [op.get(k.leader)],
  });
  if (res.succeeded) return;
  const leader = rangeKvs(res, 0)[0];
  if (leader?.create_revision !== fence.createRevision) throw core.fencedOut(fence, leader, `record failure of ${h.unit}`);
  throw new FlotillaError('not-found', `record failure of ${h.unit}: content ${h.hash.slice(0, 12)} is not submitted`);
}

/** Forgets a unit's failures on a machine (fenced). */
export async function clearHealth(core: RegistryCore, unit: string, machineId: string, fence: Fence): Promise<void> {
  checkRegistryName('unit name', unit);
  checkRegistryName('machine ID', machineId);
  core.checkFence(fence);
  const res = await core.txn(`clear health of ${unit} on ${machineId}`, {
    compare: [cmp.created(core.k.leader, 'Equal', fence.createRevision)],
    success: [op.del(core.k.health(unit, machineId))],
    failure: [op.get(core.k.leader)],
  });
  if (!res.succeeded) throw core.fencedOut(fence, rangeKvs(res, 0)[0], `clear health of ${unit}`);
}

export async function listHealth(core: RegistryCore, unit?: string): Promise<UnitHealth[]> {
  const res = await core.range('list health', unit === undefined ? core.k.healthAll : core.k.healthOf(checkRegistryName('unit name', unit)));
  return core.decodeMany(res.kvs, 'health record', (_, o) => decodeHealth(o));
}
