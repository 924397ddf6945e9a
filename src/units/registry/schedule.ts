/**
 * The schedule: `schedule/<machineId>/<unit>`, the engine's assignments, grouped by
 * machine so that each agent watches only its own. Every write is fenced.
 */
import type { IKeyValue } from 'etcd3';
import { FlotillaError } from '../../errors';
import { checkHash, checkRegistryName, type RegistryKeys } from '../../config/key-layout';
import { decodeAssignment, Malformed, type Json } from './codec';
import type { RegistryCore } from './core';
import { buf, cmp, keyOf, now, op, rangeKvs } from './etcd';
import type { Assignment, Fence, RegistryWatch, ScheduleChanges, ScheduleResult, WatchEvent, WatchOptions } from './model';
import { typedWatch } from './watch';

/**
 * Assigns `unit` with content `hash` to `machineId`. Commits only if `fence` still
 * holds, the unit is submitted with that content, and the machine is registered;
 * otherwise 'conflict' (fenced out) or 'not-found'.
 */
export async function assign(core: RegistryCore, machineId: string, unit: string, hash: string, fence: Fence, opts: { reason?: string; desiredState?: 'loaded' | 'launched' } = {}): Promise<Assignment> {
  checkRegistryName('machine ID', machineId);
  checkRegistryName('unit name', unit);
  checkHash(hash);
  core.checkFence(fence);
  const k = core.k;
  const { reason, desiredState = 'launched' } = opts;
  const assignment: Assignment = { machineId, unit, hash, desiredState, assignedAt: now(), ...(reason !== undefined ? { reason } : {}) };
  const { machineId: _omit, ...stored } = assignment;
  const res = await core.txn(`assign ${unit} to ${machineId}`, {
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
  if (leader?.create_revision !== fence.createRevision) throw core.fencedOut(fence, leader, `assign ${unit} to ${machineId}`);
  if (rangeKvs(res, 1).length === 0) throw new FlotillaError('not-found', `assign ${unit} to ${machineId}: unit ${unit} with content ${hash.slice(0, 12)} is not submitted`);
  throw new FlotillaError('not-found', `assign ${unit} to ${machineId}: machine ${machineId} is not registered`);
}

/** Removes an assignment (fenced). Returns false if there was none. */
export async function unassign(core: RegistryCore, machineId: string, unit: string, fence: Fence): Promise<boolean> {
  checkRegistryName('machine ID', machineId);
  checkRegistryName('unit name', unit);
  core.checkFence(fence);
  const key = core.k.assignment(machineId, unit);
  const res = await core.txn(`unassign ${unit} from ${machineId}`, {
    compare: [cmp.created(core.k.leader, 'Equal', fence.createRevision)],
    success: [{ request_delete_range: { key: buf(key) } }],
    failure: [op.get(core.k.leader)],
  });
  if (!res.succeeded) throw core.fencedOut(fence, rangeKvs(res, 0)[0], `unassign ${unit} from ${machineId}`);
  return Number(res.responses[0]?.response_delete_range?.deleted ?? 0) > 0;
}

/**
 * Applies many schedule changes with few transactions: removals first, then
 * assignments, in fenced batches (etcd allows 128 operations per transaction). A batch
 * whose checks fail (a unit destroyed or a machine gone meanwhile) is retried one change
 * at a time, so only the stale changes fail; they are returned, not thrown. A fence
 * failure throws 'conflict' at once.
 */
export async function applySchedule(core: RegistryCore, changes: ScheduleChanges, fence: Fence, opts: { batchSize?: number; concurrency?: number } = {}): Promise<ScheduleResult> {
  core.checkFence(fence);
  const k = core.k;
  const batchSize = opts.batchSize ?? 40;
  const concurrency = opts.concurrency ?? 8;
  const failed: ScheduleResult['failed'] = [];
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
    for (const u of batch) { checkRegistryName('machine ID', u.machineId); checkRegistryName('unit name', u.unit); }
    const res = await core.txn(`unassign ${batch.length} units`, {
      compare: [cmp.created(k.leader, 'Equal', fence.createRevision)],
      success: batch.map((u) => ({ request_delete_range: { key: buf(k.assignment(u.machineId, u.unit)) } })),
      failure: [op.get(k.leader)],
    });
    if (!res.succeeded) throw core.fencedOut(fence, rangeKvs(res, 0)[0], `unassign ${batch.length} units`);
  });
  const at = now();
  await runLimited(batches(changes.assign), async (batch) => {
    for (const a of batch) { checkRegistryName('machine ID', a.machineId); checkRegistryName('unit name', a.unit); checkHash(a.hash); }
    const refs = [...new Set(batch.map((a) => k.ref(a.hash, a.unit)))];
    const machines = [...new Set(batch.map((a) => k.machine(a.machineId)))];
    const res = await core.txn(`assign ${batch.length} units`, {
      compare: [cmp.created(k.leader, 'Equal', fence.createRevision), ...refs.map((r) => cmp.created(r, 'Greater', 0)), ...machines.map((m) => cmp.created(m, 'Greater', 0))],
      success: batch.map((a) => {
        const stored = { unit: a.unit, hash: a.hash, desiredState: a.desiredState ?? 'launched', assignedAt: at, ...(a.reason !== undefined ? { reason: a.reason } : {}) };
        return op.put(k.assignment(a.machineId, a.unit), JSON.stringify(stored));
      }),
      failure: [op.get(k.leader)],
    });
    if (res.succeeded) return;
    const leader = rangeKvs(res, 0)[0];
    if (leader?.create_revision !== fence.createRevision) throw core.fencedOut(fence, leader, `assign ${batch.length} units`);
    for (const a of batch) {
      try {
        await assign(core, a.machineId, a.unit, a.hash, fence, { ...(a.reason !== undefined ? { reason: a.reason } : {}), ...(a.desiredState ? { desiredState: a.desiredState } : {}) });
      } catch (err) {
        if (FlotillaError.is(err) && err.code === 'not-found') failed.push({ machineId: a.machineId, unit: a.unit, error: err });
        else throw err;
      }
    }
  });
  return { failed };
}

/** Every assignment, or one machine's. */
export async function listSchedule(core: RegistryCore, machineId?: string): Promise<Assignment[]> {
  const base = machineId === undefined ? core.k.schedule : core.k.scheduleOf(checkRegistryName('machine ID', machineId));
  const res = await core.range('list schedule', base);
  return core.decodeMany(res.kvs, 'assignment', (kv, o) => assignmentOf(core.k, kv, o));
}

/** An assignment from its key (machine ID) and value. */
export function assignmentOf(k: RegistryKeys, kv: IKeyValue, o: Json): Assignment {
  const parsed = k.parse(keyOf(kv));
  if (parsed.kind !== 'schedule') throw new Malformed('not a schedule key');
  return decodeAssignment(parsed.machineId, o);
}

/** One machine's assignments only: this watch never sees other machines' events. */
export function watchAssignments(core: RegistryCore, machineId: string, cb: (ev: WatchEvent<Assignment>) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
  const base = core.k.scheduleOf(checkRegistryName('machine ID', machineId));
  return typedWatch(core, base, 'assignment', (kv, o) => assignmentOf(core.k, kv, o), (key) => core.k.tail(key, base), cb, opts);
}
