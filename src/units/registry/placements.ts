/** Placement verdicts: `placement/<unit>`, why the engine could not place a unit (fenced). */
import { FlotillaError } from '../../errors';
import { checkHash, checkRegistryName } from '../../config/key-layout';
import { decodePlacement } from './codec';
import type { RegistryCore } from './core';
import { cmp, now, op, rangeKvs } from './etcd';
import type { Fence, Placement } from './model';

/** Records that `unit` cannot be placed (fenced), or clears the verdict with `undefined`. */
export async function setPlacement(core: RegistryCore, unit: string, info: { hash: string; reason: string } | undefined, fence: Fence): Promise<void> {
  checkRegistryName('unit name', unit);
  core.checkFence(fence);
  const k = core.k;
  if (info === undefined) {
    const res = await core.txn(`clear placement of ${unit}`, {
      compare: [cmp.created(k.leader, 'Equal', fence.createRevision)],
      success: [op.del(k.placement(unit))],
      failure: [op.get(k.leader)],
    });
    if (!res.succeeded) throw core.fencedOut(fence, rangeKvs(res, 0)[0], `clear placement of ${unit}`);
    return;
  }
  checkHash(info.hash);
  const placement: Placement = { unit, status: 'unplaceable', hash: info.hash, reason: String(info.reason), at: now() };
  const res = await core.txn(`set placement of ${unit}`, {
    compare: [cmp.created(k.leader, 'Equal', fence.createRevision), cmp.created(k.ref(info.hash, unit), 'Greater', 0)],
    success: [op.put(k.placement(unit), JSON.stringify(placement))],
    failure: [op.get(k.leader)],
  });
  if (res.succeeded) return;
  const leader = rangeKvs(res, 0)[0];
  if (leader?.create_revision !== fence.createRevision) throw core.fencedOut(fence, leader, `set placement of ${unit}`);
  throw new FlotillaError('not-found', `set placement of ${unit}: unit with content ${info.hash.slice(0, 12)} is not submitted`);
}

export async function listPlacements(core: RegistryCore): Promise<Placement[]> {
  const res = await core.range('list placements', core.k.placements);
  return core.decodeMany(res.kvs, 'placement', (_, o) => decodePlacement(o));
}
