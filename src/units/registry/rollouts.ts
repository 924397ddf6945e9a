/**
 * Rolling updates: `rollouts/<unit>` records (compare-and-swap on their mod revision) and
 * `rollout-locks/<unit>`, which makes one client the driver (docs/registry.md, "Operations").
 */
import { createHash } from 'node:crypto';
import type { ICompare, IRequestOp } from 'etcd3';
import { FlotillaError } from '../../errors';
import { checkRegistryName } from '../../config/key-layout';
import { decodeJob, decodeRollout, encodeRollout } from './codec';
import type { RegistryCore } from './core';
import { cmp, now, op, rangeKvs, text } from './etcd';
import { KeptLease } from './leases';
import { ROLLOUT_IN_PROGRESS, type Rollout, type RolloutLock, type RolloutOptions } from './model';
import { collectBody, MAX_UNIT_BYTES } from './units';

export async function getRollout(core: RegistryCore, unit: string): Promise<Rollout | undefined> {
  const kv = await core.getKv(core.k.rollout(checkRegistryName('unit name', unit)));
  return kv ? core.decode(kv, 'rollout', (o) => decodeRollout(o, kv.mod_revision)) : undefined;
}

/**
 * Starts a rolling update: in one transaction the job's content becomes `unitText`
 * (body and reference added), the old content stays referenced, and the rollout record
 * is written. 'not-found' if the unit is not submitted; 'conflict' if a rollout of it
 * is in progress or the job changed meanwhile. `undefined` when the content is the same.
 */
export async function beginRollout(core: RegistryCore, name: string, unitText: string, options: RolloutOptions): Promise<Rollout | undefined> {
  checkRegistryName('unit name', name);
  if (Buffer.byteLength(unitText) > MAX_UNIT_BYTES) throw new FlotillaError('too-large', `unit ${name}: ${Buffer.byteLength(unitText)} bytes exceeds ${MAX_UNIT_BYTES}`);
  const k = core.k;
  const hash = createHash('sha256').update(unitText, 'utf8').digest('hex');
  const kv = await core.getKv(k.job(name));
  if (!kv) throw new FlotillaError('not-found', `unit ${name} is not submitted: submit it first (an update replaces a submitted unit)`);
  const job = core.decode(kv, 'job', decodeJob);
  const rkv = await core.getKv(k.rollout(name));
  const previous = rkv ? core.decode(rkv, 'rollout', (o) => decodeRollout(o, rkv.mod_revision)) : undefined;
  if (previous && ROLLOUT_IN_PROGRESS.includes(previous.phase)) {
    throw new FlotillaError('conflict', `unit ${name}: a rolling update is in progress (phase ${previous.phase}, to ${previous.toHash.slice(0, 12)}); resume it or roll it back first`);
  }
  if (job.hash === hash) return undefined;
  const at = now();
  const rollout: Rollout = { unit: name, fromHash: job.hash, toHash: hash, phase: 'rolling', hashOn: {}, options, steps: [], startedAt: at, updatedAt: at, revision: '' };
  const res = await core.txn(`begin update of ${name}`, {
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
export async function saveRollout(core: RegistryCore, r: Rollout): Promise<Rollout> {
  checkRegistryName('unit name', r.unit);
  const k = core.k;
  const stored = await core.getKv(k.rollout(r.unit));
  if (!stored || stored.mod_revision !== r.revision) throw new FlotillaError('conflict', `rollout of ${r.unit} was changed by someone else (revision ${stored?.mod_revision ?? 'deleted'}, expected ${r.revision})`);
  const before = core.decode(stored, 'rollout', (o) => decodeRollout(o, stored.mod_revision));
  const next: Rollout = { ...r, updatedAt: now() };
  const compare: ICompare[] = [cmp.modified(k.rollout(r.unit), r.revision)];
  const success: IRequestOp[] = [op.put(k.rollout(r.unit), encodeRollout(next))];
  let drop: string | undefined;
  if (next.phase !== before.phase) {
    const jkv = await core.getKv(k.job(r.unit));
    if (!jkv) throw new FlotillaError('not-found', `unit ${r.unit} was destroyed during its update`);
    const job = core.decode(jkv, 'job', decodeJob);
    compare.push(cmp.modified(k.job(r.unit), jkv.mod_revision));
    if (next.phase === 'rolling-back') success.push(op.put(k.job(r.unit), JSON.stringify({ ...job, hash: r.fromHash })));
    if (next.phase === 'rolling') success.push(op.put(k.job(r.unit), JSON.stringify({ ...job, hash: r.toHash })));
    if (next.phase === 'done') drop = r.fromHash;
    if (next.phase === 'rolled-back') drop = r.toHash;
    if (drop !== undefined && drop !== job.hash) success.push(op.del(k.ref(drop, r.unit)));
    else drop = undefined;
  }
  const res = await core.txn(`save rollout of ${r.unit}`, { compare, success });
  if (!res.succeeded) throw new FlotillaError('conflict', `rollout of ${r.unit} or its job changed meanwhile; try again`);
  if (drop !== undefined) await collectBody(core, drop);
  return { ...next, revision: res.header.revision };
}

/**
 * Takes the lock that makes one client the driver of a unit's rollout, held under a
 * lease: a driver that dies lets it go after `ttlSeconds`. 'conflict' if held.
 */
export async function lockRollout(core: RegistryCore, unit: string, driver: string, ttlSeconds = 10): Promise<RolloutLock> {
  checkRegistryName('unit name', unit);
  const key = core.k.rolloutLock(unit);
  const lease = core.client.lease(ttlSeconds);
  lease.on('lost', () => undefined);
  const leaseId = await core.call(`grant lease for the rollout lock of ${unit}`, () => lease.grant());
  const kept = new KeptLease(lease, leaseId, ttlSeconds, `rollout lock of ${unit}`, core);
  kept.on('lost', () => undefined);
  const res = await core.txn(`lock rollout of ${unit}`, {
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
