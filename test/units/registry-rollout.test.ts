/**
 * The registry's rollout, health and state-report keys against real etcd, read back with
 * the real etcdctl: the transactions behind rolling updates and failure backoff.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { FlotillaError } from '../../src/errors';
import { Registry, type MachineInfo, type RegistryChange, type RolloutOptions, type UnitHealth } from '../../src/units/registry';
import { etcdctl, startEtcd, type SingleEtcd } from '../fixtures/etcd';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const text = (v: string): string => `[Service]\nExecStart=/bin/echo ${v}\n`;
const OPTIONS: RolloutOptions = { maxUnavailable: 1, timeoutMs: 1000, minReadyMs: 0, rollbackOnFailure: false };

function isCode(code: FlotillaError['code'], re?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(FlotillaError.is(err), `not a FlotillaError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (re) assert.match(err.message, re);
    return true;
  };
}

function machine(id: string): MachineInfo {
  return { id, metadata: {}, address: '127.0.0.1', capacity: { cpus: 2, memoryMiB: 1024 }, startedAt: new Date().toISOString(), version: 'test' };
}

describe('registry: rollouts, health, state results', () => {
  let etcd: SingleEtcd;
  let seq = 0;
  const regs: Registry[] = [];
  const connect = async (): Promise<{ reg: Registry; prefix: string }> => {
    const reg = await Registry.connect({ endpoints: [etcd.endpoint], cluster: `ro${process.pid}-${++seq}` });
    regs.push(reg);
    return { reg, prefix: reg.prefix };
  };
  const keys = async (prefix: string): Promise<string[]> => (await etcdctl(etcd, ['get', '--prefix', prefix, '--keys-only'])).split('\n').filter(Boolean).sort();

  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    for (const r of regs) await r.close();
    await etcd?.stop();
  });

  it('beginRollout swaps the job content in one transaction, keeps both bodies referenced, refuses a second rollout', async () => {
    const { reg, prefix } = await connect();
    await assert.rejects(reg.beginRollout('a.service', text('2'), OPTIONS), isCode('not-found', /submit it first/));
    await reg.submitUnit('a.service', text('1'), { desiredState: 'launched' });
    assert.equal(await reg.beginRollout('a.service', text('1'), OPTIONS), undefined, 'same content: nothing to do');
    const r = await reg.beginRollout('a.service', text('2'), OPTIONS);
    assert.ok(r);
    assert.deepEqual([r.fromHash, r.toHash, r.phase], [sha(text('1')), sha(text('2')), 'rolling']);
    assert.equal((await reg.getUnit('a.service'))!.text, text('2'));
    assert.deepEqual(await keys(prefix), [
      `${prefix}rollouts/a.service`,
      `${prefix}units/bodies/${sha(text('1'))}`,
      `${prefix}units/bodies/${sha(text('2'))}`,
      `${prefix}units/jobs/a.service`,
      `${prefix}units/refs/${sha(text('1'))}/a.service`,
      `${prefix}units/refs/${sha(text('2'))}/a.service`,
    ].sort());
    const stored = JSON.parse(await etcdctl(etcd, ['get', `${prefix}rollouts/a.service`, '--print-value-only'])) as Record<string, unknown>;
    assert.equal(stored.phase, 'rolling');
    assert.equal(stored.revision, undefined, 'the revision is etcd metadata, not stored');
    await assert.rejects(reg.beginRollout('a.service', text('3'), OPTIONS), isCode('conflict', /a rolling update is in progress \(phase rolling/));
    // A plain resubmit with other content points at update.
    await assert.rejects(reg.submitUnit('a.service', text('9')), isCode('conflict', /update it \(flotilla units update\) or destroy it first/));
  });

  it('saveRollout: compare-and-swap on the record; done drops the old body, rolled-back the new one and restores the job', async () => {
    const { reg, prefix } = await connect();
    await reg.submitUnit('a.service', text('1'), { desiredState: 'launched' });
    let r = (await reg.beginRollout('a.service', text('2'), OPTIONS))!;
    const stale = r;
    r = await reg.saveRollout({ ...r, hashOn: { m1: r.toHash } });
    await assert.rejects(reg.saveRollout({ ...stale, hashOn: { m2: stale.toHash } }), isCode('conflict', /changed by someone else/));
    assert.deepEqual((await reg.getRollout('a.service'))!.hashOn, { m1: r.toHash });
    r = await reg.saveRollout({ ...r, phase: 'rolling-back' });
    assert.equal((await reg.getUnit('a.service'))!.hash, r.fromHash, 'rolling back makes the old content the job content');
    r = await reg.saveRollout({ ...r, phase: 'rolled-back' });
    assert.equal(await reg.getBody(r.toHash), undefined);
    assert.ok(!(await keys(prefix)).some((k) => k.includes(r.toHash)), 'no reference to the dropped content is left');
    // A finished rollout does not block the next one; done drops the old content.
    const next = (await reg.beginRollout('a.service', text('3'), OPTIONS))!;
    assert.equal(next.fromHash, sha(text('1')));
    await reg.saveRollout({ ...next, phase: 'done' });
    assert.equal(await reg.getBody(sha(text('1'))), undefined);
    assert.equal((await reg.getUnit('a.service'))!.text, text('3'));
  });

  it('one driver per rollout: the lock is refused while held and free once released or its lease lapses', async () => {
    const { reg } = await connect();
    const held = await reg.lockRollout('a.service', 'driver-1', 2);
    const otherReg = await Registry.connect({ endpoints: [etcd.endpoint], prefix: reg.prefix });
    regs.push(otherReg);
    await assert.rejects(otherReg.lockRollout('a.service', 'driver-2', 2), isCode('conflict', /being driven by \{"driver":"driver-1"/));
    await held.release();
    const second = await otherReg.lockRollout('a.service', 'driver-2', 1);
    assert.ok(second.alive);
    // A driver that dies (its client closed without releasing) lets go within the TTL.
    await otherReg.close();
    regs.splice(regs.indexOf(otherReg), 1);
    let third: Awaited<ReturnType<Registry['lockRollout']>> | undefined;
    // etcd expires a lease on its leader's clock, late on a loaded host: wait on the event, not a count.
    for (const deadline = Date.now() + 30_000; !third && Date.now() < deadline; ) {
      third = await reg.lockRollout('a.service', 'driver-3', 2).catch(() => undefined);
      if (!third) await sleep(100);
    }
    assert.ok(third, 'the lock lapsed with its lease');
    await third.release();
  });

  it('health records are fenced, need the content submitted, and go with destroy (with both rollout contents)', async () => {
    const { reg, prefix } = await connect();
    await reg.submitUnit('a.service', text('1'), { desiredState: 'launched' });
    const leadership = await reg.campaign('engine-1', { ttlSeconds: 5 });
    const h: UnitHealth = {
      unit: 'a.service',
      machineId: 'm1',
      hash: sha(text('1')),
      failures: 1,
      lastResult: 'start-limit-hit',
      lastFailureAt: new Date().toISOString(),
      avoidUntil: new Date(Date.now() + 10_000).toISOString(),
      stateUpdatedAt: new Date().toISOString(),
    };
    await reg.recordFailure(h, leadership.fence);
    assert.deepEqual(await reg.listHealth('a.service'), [h]);
    await assert.rejects(reg.recordFailure({ ...h, hash: sha('other') }, leadership.fence), isCode('not-found', /not submitted/));
    await assert.rejects(reg.recordFailure(h, { ...leadership.fence, createRevision: '1' }), isCode('conflict', /not the engine leader/));
    const snap = await reg.snapshot({ states: false });
    assert.deepEqual(snap.health, [h]);
    await reg.beginRollout('a.service', text('2'), OPTIONS);
    assert.equal((await reg.snapshot()).rollouts[0]?.phase, 'rolling');
    await reg.destroyUnit('a.service');
    const left = (await keys(prefix)).filter((k) => !k.includes('engine/leader'));
    assert.deepEqual(left, [], 'job, both references, both bodies, rollout and health records are gone');
    await leadership.resign();
  });

  it('state reports carry the result; watchAll hands the engine failed states; watchStates follows reports', async () => {
    const { reg } = await connect();
    await reg.submitUnit('a.service', text('1'), { desiredState: 'launched' });
    const lease = await reg.registerMachine(machine('m1'), 5);
    const changes: RegistryChange[] = [];
    const all = await reg.watchAll((ev) => changes.push(ev));
    const seen: string[] = [];
    const states = await reg.watchStates((ev) => {
      if (ev.type === 'put') seen.push(`${ev.item.machineId} ${ev.item.active} ${ev.item.result ?? '-'}`);
      if (ev.type === 'delete') seen.push(`delete ${ev.id}`);
    });
    await reg.reportStates('m1', lease, [{ unit: 'a.service', hash: sha(text('1')), active: 'failed', sub: 'failed', result: 'start-limit-hit' }]);
    await reg.clearState('m1', lease, 'a.service');
    for (let i = 0; i < 100 && seen.length < 2; i++) await sleep(20);
    assert.deepEqual(seen, ['m1 failed start-limit-hit', 'delete m1/a.service']);
    const put = changes.find((c) => c.type === 'put' && c.kind === 'state');
    assert.equal(put?.type === 'put' ? put.state?.result : undefined, 'start-limit-hit');
    assert.equal(put?.type === 'put' ? put.state?.active : undefined, 'failed');
    await all.close();
    await states.close();
    await lease.revoke();
  });
});

describe('registry: listing in pages', () => {
  let etcd: SingleEtcd;
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  it('lists, snapshots and watches prefixes larger than one page, all at one revision; watchAll lists nothing', async () => {
    const reg = await Registry.connect({ endpoints: [etcd.endpoint], cluster: 'pages', pageSize: 7 });
    try {
      const names = Array.from({ length: 23 }, (_, i) => `u${String(i).padStart(2, '0')}.service`);
      for (const n of names) await reg.submitUnit(n, text(n), { desiredState: 'launched' });
      assert.deepEqual((await reg.listUnits()).map((j) => j.name), names);
      const lease = await reg.registerMachine(machine('m1'), 5);
      await reg.reportStates('m1', lease, names.map((n) => ({ unit: n, hash: sha(text(n)), active: 'active', sub: 'running' })));
      const snap = await reg.snapshot();
      assert.equal(snap.jobs.length, 23);
      assert.equal(snap.states.length, 23);
      const listed: string[] = [];
      const w = await reg.watchStates((ev) => {
        if (ev.type === 'snapshot') listed.push(...ev.items.map((s) => s.unit));
      });
      assert.deepEqual(listed, names);
      const first: RegistryChange[] = [];
      const all = await reg.watchAll((ev) => first.push(ev));
      assert.deepEqual(first.map((e) => e.type), ['resync']);
      await w.close();
      await all.close();
      await lease.revoke();
    } finally {
      await reg.close();
    }
  });
});
