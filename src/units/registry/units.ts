/**
 * Jobs and unit bodies: `units/jobs/<name>`, `units/bodies/<sha256>` and the references
 * `units/refs/<sha256>/<name>` that keep a body alive (docs/registry.md, "Operations").
 */
import { createHash } from 'node:crypto';
import { FlotillaError } from '../../errors';
import { checkHash, checkRegistryName } from '../../config/key-layout';
import { decodeJob, decodeRollout } from './codec';
import type { RegistryCore } from './core';
import { buf, cmp, keyOf, now, op, prefixEnd, rangeKvs, text } from './etcd';
import { DESIRED_STATES, type DesiredState, type Job, type SubmitResult, type Unit } from './model';

/** The largest unit file accepted. */
export const MAX_UNIT_BYTES = 512 * 1024;
const MAX_RETRIES = 20;

/**
 * Submits a unit. Same name and same content again is a no-op (`created: false`);
 * same name with different content is a 'conflict' (destroy first, as in fleet).
 * Job, body and body reference are written in one transaction.
 */
export async function submitUnit(core: RegistryCore, name: string, unitText: string, opts: { desiredState?: DesiredState } = {}): Promise<SubmitResult> {
  checkRegistryName('unit name', name);
  if (typeof unitText !== 'string') throw new FlotillaError('invalid-input', `unit ${name}: text is not a string`);
  if (Buffer.byteLength(unitText) > MAX_UNIT_BYTES) throw new FlotillaError('too-large', `unit ${name}: ${Buffer.byteLength(unitText)} bytes exceeds ${MAX_UNIT_BYTES}`);
  const desiredState = opts.desiredState ?? 'inactive';
  if (!DESIRED_STATES.includes(desiredState)) throw new FlotillaError('invalid-input', `unit ${name}: bad desired state ${JSON.stringify(desiredState)}`);
  const hash = createHash('sha256').update(unitText, 'utf8').digest('hex');
  const job: Job = { name, hash, desiredState, submittedAt: now() };
  const k = core.k;
  const res = await core.txn(`submit ${name}`, {
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
  if (!kv) return submitUnit(core, name, unitText, opts); // destroyed in between: try again
  const existing = core.decode(kv, 'job', decodeJob);
  if (existing.hash === hash) return { job: existing, created: false };
  throw new FlotillaError('conflict', `unit ${name} is already submitted with different content (sha256 ${existing.hash.slice(0, 12)}, new ${hash.slice(0, 12)}); update it (flotilla units update) or destroy it first`);
}

/** The job and its unit file text, or undefined. */
export async function getUnit(core: RegistryCore, name: string): Promise<Unit | undefined> {
  checkRegistryName('unit name', name);
  const kv = await core.getKv(core.k.job(name));
  if (!kv) return undefined;
  const job = core.decode(kv, 'job', decodeJob);
  const body = await core.getKv(core.k.body(job.hash));
  if (!body) throw new FlotillaError('external', `etcd: unit ${name}: body ${core.k.body(job.hash)} is missing`);
  return { ...job, text: text(body) };
}

/** A unit body by its content hash (bodies are immutable), or undefined once collected. */
export async function getBody(core: RegistryCore, hash: string): Promise<string | undefined> {
  checkHash(hash);
  const kv = await core.getKv(core.k.body(hash));
  return kv ? text(kv) : undefined;
}

/** All jobs, by name. */
export async function listUnits(core: RegistryCore): Promise<Job[]> {
  const res = await core.range('list units', core.k.jobs);
  return core.decodeMany(res.kvs, 'job', (_, o) => decodeJob(o));
}

/** Sets the desired state; 'not-found' if the unit is not submitted. */
export async function setDesiredState(core: RegistryCore, name: string, state: DesiredState): Promise<Job> {
  checkRegistryName('unit name', name);
  if (!DESIRED_STATES.includes(state)) throw new FlotillaError('invalid-input', `unit ${name}: bad desired state ${JSON.stringify(state)}`);
  for (let i = 0; i < MAX_RETRIES; i++) {
    const kv = await core.getKv(core.k.job(name));
    if (!kv) throw new FlotillaError('not-found', `unit ${name} is not submitted`);
    const job = core.decode(kv, 'job', decodeJob);
    if (job.desiredState === state) return job;
    const next: Job = { ...job, desiredState: state };
    const res = await core.txn(`set desired state of ${name}`, {
      compare: [cmp.modified(core.k.job(name), kv.mod_revision)],
      success: [op.put(core.k.job(name), JSON.stringify(next))],
    });
    if (res.succeeded) return next;
  }
  throw new FlotillaError('conflict', `unit ${name}: desired state kept changing under us`);
}

/**
 * Destroys a unit: job, placement verdict and every assignment made for it go; the
 * body goes too once no other unit uses it. Returns false if there was nothing to destroy.
 */
export async function destroyUnit(core: RegistryCore, name: string): Promise<boolean> {
  checkRegistryName('unit name', name);
  const k = core.k;
  let job: Job | undefined;
  let destroyedAt = '';
  /** Every content the unit references: its own, and both sides of a rollout in progress. */
  let hashes: string[] = [];
  for (let i = 0; i < MAX_RETRIES && !job; i++) {
    const kv = await core.getKv(k.job(name));
    if (!kv) return false;
    const candidate = core.decode(kv, 'job', decodeJob);
    const rkv = await core.getKv(k.rollout(name));
    const rollout = rkv ? core.decode(rkv, 'rollout', (o) => decodeRollout(o, rkv.mod_revision)) : undefined;
    const refs = [...new Set([candidate.hash, ...(rollout ? [rollout.fromHash, rollout.toHash] : [])])];
    const res = await core.txn(`destroy ${name}`, {
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
  const sched = await core.range('list schedule', k.schedule);
  for (const kv of sched.kvs) {
    const parsed = k.parse(keyOf(kv));
    if (parsed.kind !== 'schedule' || parsed.unit !== name || BigInt(kv.create_revision) >= BigInt(destroyedAt)) continue;
    await core.txn(`unassign ${name}`, { compare: [cmp.modified(keyOf(kv), kv.mod_revision)], success: [op.del(keyOf(kv))] });
  }
  for (const h of hashes) await collectBody(core, h);
  return true;
}

/** Deletes the body for `hash` if no unit references it (atomic with respect to submits). */
export async function collectBody(core: RegistryCore, hash: string): Promise<boolean> {
  const res = await core.txn(`collect body ${hash}`, { compare: [cmp.noneUnder(core.k.refs(hash))], success: [op.del(core.k.body(hash))] });
  return res.succeeded;
}

/** Removes every unreferenced body (left by a destroy that was interrupted). Returns how many. */
export async function collectGarbage(core: RegistryCore): Promise<number> {
  const res = await core.call('list bodies', () =>
    core.client.kv.range({ key: buf(core.k.bodies), range_end: prefixEnd(core.k.bodies), keys_only: true }),
  );
  let n = 0;
  for (const kv of res.kvs) if (await collectBody(core, core.k.tail(keyOf(kv), core.k.bodies))) n++;
  return n;
}
