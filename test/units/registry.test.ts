/**
 * Registry tests against real etcd (test/fixtures/etcd.ts); what the registry wrote is
 * also read back with the real etcdctl.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { FlotillaError } from '../../src/errors';
import {
  Registry,
  registryPrefix,
  type Assignment,
  type MachineInfo,
  type RegistryChange,
  type WatchEvent,
} from '../../src/units/registry';
import { etcdctl, startEtcd, startEtcdCluster, type EtcdCluster, type EtcdMember, type SingleEtcd } from '../fixtures/etcd';
import { freePort } from '../fixtures/ports';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

function isCode(code: FlotillaError['code'], re?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(FlotillaError.is(err), `not a FlotillaError: ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (re) assert.match(err.message, re);
    return true;
  };
}

function machine(id: string, metadata: Record<string, string> = {}): MachineInfo {
  return { id, metadata, address: '127.0.0.1', capacity: { cpus: 2, memoryMiB: 1024 }, startedAt: new Date().toISOString(), version: '0.1.0' };
}

const unitText = (n: number | string): string => `[Unit]\nDescription=test ${n}\n\n[Service]\nExecStart=/bin/sleep 1000\n`;

let clusterSeq = 0;
const nextCluster = (): string => `t${process.pid}-${++clusterSeq}`;

async function keysUnder(etcd: SingleEtcd, prefix: string): Promise<string[]> {
  const out = await etcdctl(etcd, ['get', '--prefix', prefix, '--keys-only']);
  return out.split('\n').filter((l) => l !== '').sort();
}

describe('registry against one etcd member', () => {
  let etcd: SingleEtcd;
  const registries: Registry[] = [];
  const connect = async (cluster: string): Promise<Registry> => {
    const r = await Registry.connect({ endpoints: [etcd.endpoint], cluster });
    registries.push(r);
    return r;
  };

  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    for (const r of registries) await r.close().catch(() => undefined);
    await etcd?.stop();
  });

  it('submits, gets and lists units; writes the documented keys (read back with etcdctl)', async () => {
    const cluster = nextCluster();
    const reg = await connect(cluster);
    assert.equal(reg.prefix, `/flotilla/${cluster}/`);

    const a = await reg.submitUnit('a.service', unitText('a'));
    assert.equal(a.created, true);
    assert.equal(a.job.hash, sha(unitText('a')));
    assert.equal(a.job.desiredState, 'inactive');
    await reg.submitUnit('b@1.service', unitText('b'), { desiredState: 'launched' });

    const got = await reg.getUnit('a.service');
    assert.equal(got?.text, unitText('a'));
    assert.equal(got?.hash, sha(unitText('a')));
    assert.equal(await reg.getUnit('missing.service'), undefined);
    assert.deepEqual((await reg.listUnits()).map((j) => [j.name, j.desiredState]), [['a.service', 'inactive'], ['b@1.service', 'launched']]);

    const again = await reg.submitUnit('a.service', unitText('a'));
    assert.equal(again.created, false);
    assert.deepEqual(again.job, a.job);

    await assert.rejects(reg.submitUnit('bad/name.service', 'x'), isCode('invalid-input'));
    await assert.rejects(reg.submitUnit('', 'x'), isCode('invalid-input'));

    const p = `/flotilla/${cluster}/`;
    assert.deepEqual(await keysUnder(etcd, p), [
      `${p}units/bodies/${sha(unitText('a'))}`,
      `${p}units/bodies/${sha(unitText('b'))}`,
      `${p}units/jobs/a.service`,
      `${p}units/jobs/b@1.service`,
      `${p}units/refs/${sha(unitText('a'))}/a.service`,
      `${p}units/refs/${sha(unitText('b'))}/b@1.service`,
    ].sort());
    const jobJson = JSON.parse(await etcdctl(etcd, ['get', `${p}units/jobs/a.service`, '--print-value-only']));
    assert.deepEqual(jobJson, { name: 'a.service', hash: sha(unitText('a')), desiredState: 'inactive', submittedAt: a.job.submittedAt });
    assert.equal(await etcdctl(etcd, ['get', `${p}units/bodies/${sha(unitText('a'))}`, '--print-value-only']), `${unitText('a')}\n`);

    // Another cluster's prefix sees none of it.
    const other = await connect(nextCluster());
    assert.deepEqual(await other.listUnits(), []);
  });

  it('rejects a conflicting resubmit, and of 10 racing submitters exactly one wins', async () => {
    const cluster = nextCluster();
    const reg = await connect(cluster);
    await reg.submitUnit('c.service', unitText(1));
    await assert.rejects(reg.submitUnit('c.service', unitText(2)), isCode('conflict', /already submitted with different content.*destroy it first/));

    // Ten clients, ten contents, one name.
    const racers = await Promise.all(Array.from({ length: 10 }, () => connect(cluster)));
    const results = await Promise.allSettled(racers.map((r, i) => r.submitUnit('race.service', unitText(`racer ${i}`))));
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
    for (const r of results) if (r.status === 'rejected') isCode('conflict')(r.reason);
    const winner = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<Registry['submitUnit']>>>).value;
    assert.equal(winner.created, true);
    const stored = await reg.getUnit('race.service');
    assert.equal(stored?.hash, winner.job.hash);
    // The losers left no body behind.
    const bodies = await keysUnder(etcd, `/flotilla/${cluster}/units/bodies/`);
    assert.deepEqual(bodies.map((k) => k.split('/').pop()).sort(), [sha(unitText(1)), winner.job.hash].sort());
  });

  it('changes desired state', async () => {
    const reg = await connect(nextCluster());
    await reg.submitUnit('d.service', unitText('d'));
    assert.equal((await reg.setDesiredState('d.service', 'loaded')).desiredState, 'loaded');
    assert.equal((await reg.setDesiredState('d.service', 'launched')).desiredState, 'launched');
    assert.equal((await reg.getUnit('d.service'))?.desiredState, 'launched');
    // Concurrent changes all apply to the latest version; the last one written wins consistently.
    await Promise.all([reg.setDesiredState('d.service', 'inactive'), reg.setDesiredState('d.service', 'loaded')]);
    assert.ok(['inactive', 'loaded'].includes((await reg.getUnit('d.service'))!.desiredState));
    await assert.rejects(reg.setDesiredState('nope.service', 'loaded'), isCode('not-found'));
    await assert.rejects(reg.setDesiredState('d.service', 'running' as never), isCode('invalid-input'));
  });

  it('machine registrations vanish on revoke, and after the TTL when keepalives stop', async () => {
    const cluster = nextCluster();
    const reg = await connect(cluster);

    const m1 = await reg.registerMachine(machine('m1', { region: 'a' }), 2);
    const listed = await reg.listMachines();
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.id, 'm1');
    assert.deepEqual(listed[0]!.metadata, { region: 'a' });
    // A second live registration of the same ID is refused.
    await assert.rejects(reg.registerMachine(machine('m1'), 2), isCode('conflict', /already registered/));

    // States live under the machine's lease.
    await reg.reportState('m1', m1, { unit: 'x.service', hash: sha('x'), active: 'active', sub: 'running' });
    assert.equal((await reg.listStates('m1')).length, 1);
    await reg.clearState('m1', m1, 'x.service');
    assert.deepEqual(await reg.listStates('m1'), []);
    const st = await reg.reportState('m1', m1, { unit: 'x.service', hash: sha('x'), active: 'failed', sub: 'failed' });
    assert.deepEqual(await reg.listStates(), [st]);
    await m1.revoke();
    assert.deepEqual(await reg.listMachines(), []);
    assert.deepEqual(await reg.listStates(), []);
    await assert.rejects(reg.reportState('m1', m1, { unit: 'x.service', hash: sha('x'), active: 'active', sub: 'running' }), isCode('conflict'));

    // A registry that closes without revoking (like a crashed agent): gone after the TTL, not before.
    const crashing = await Registry.connect({ endpoints: [etcd.endpoint], cluster });
    const m2 = await crashing.registerMachine(machine('m2'), 2);
    await crashing.reportState('m2', m2, { unit: 'y.service', hash: sha('y'), active: 'active', sub: 'running' });
    await crashing.close();
    const closedAt = Date.now();
    assert.deepEqual((await reg.listMachines()).map((m) => m.id), ['m2']);
    await waitFor('m2 to expire', async () => (await reg.listMachines()).length === 0, 8000);
    const lapsed = Date.now() - closedAt;
    assert.ok(lapsed >= 1000, `expired after only ${lapsed} ms`);
    assert.deepEqual(await reg.listStates(), []);
  });

  it("emits 'lost' when etcd revokes a machine's lease, and the machine can register again", async () => {
    const reg = await connect(nextCluster());
    const m = await reg.registerMachine(machine('m3'), 5);
    const lost = new Promise<FlotillaError>((resolve) => m.on('lost', resolve));
    await etcdctl(etcd, ['lease', 'revoke', BigInt(m.leaseId).toString(16)]);
    const err = await lost;
    assert.equal(err.code, 'external');
    assert.match(err.message, /machine m3: lease \d+ lost/);
    assert.equal(m.alive, false);
    const again = await reg.registerMachine(machine('m3'), 5);
    assert.notEqual(again.leaseId, m.leaseId);
    await again.revoke();
  });

  it('delivers assignments only to the watch of their machine', async () => {
    const cluster = nextCluster();
    const reg = await connect(cluster);
    const agentReg = await connect(cluster);
    await reg.registerMachine(machine('m1'), 10);
    await reg.registerMachine(machine('m10'), 10); // shares a string prefix with m1
    await reg.registerMachine(machine('m2'), 10);
    for (const u of ['u1', 'u2', 'u3']) await reg.submitUnit(`${u}.service`, unitText(u));
    const lead = await reg.campaign('engine-1', { ttlSeconds: 5 });

    // m1 already has one assignment before its agent starts watching: it comes in the snapshot.
    await reg.assign('m1', 'u1.service', sha(unitText('u1')), lead.fence, { reason: 'least loaded' });

    const seen: Record<string, WatchEvent<Assignment>[]> = { m1: [], m10: [], m2: [] };
    for (const id of Object.keys(seen)) await agentReg.watchAssignments(id, (ev) => seen[id]!.push(ev));

    await reg.assign('m2', 'u2.service', sha(unitText('u2')), lead.fence);
    await reg.assign('m1', 'u3.service', sha(unitText('u3')), lead.fence);
    assert.equal(await reg.unassign('m1', 'u1.service', lead.fence), true);
    assert.equal(await reg.unassign('m1', 'u1.service', lead.fence), false);
    await reg.assign('m10', 'u2.service', sha(unitText('u2')), lead.fence);

    const shape = (ev: WatchEvent<Assignment>): string =>
      ev.type === 'snapshot' ? `snapshot:${ev.items.map((a) => `${a.machineId}/${a.unit}`).join(',')}` : ev.type === 'put' ? `put:${ev.item.machineId}/${ev.item.unit}` : `delete:${ev.id}`;
    await waitFor('all assignment events', () => seen.m1!.length === 3 && seen.m2!.length === 2 && seen.m10!.length === 2);
    await sleep(300); // nothing more may arrive
    assert.deepEqual(seen.m1!.map(shape), ['snapshot:m1/u1.service', 'put:m1/u3.service', 'delete:u1.service']);
    assert.deepEqual(seen.m2!.map(shape), ['snapshot:', 'put:m2/u2.service']);
    assert.deepEqual(seen.m10!.map(shape), ['snapshot:', 'put:m10/u2.service']);
    const first = seen.m1![0]!;
    assert.ok(first.type === 'snapshot' && first.items[0]!.reason === 'least loaded' && first.items[0]!.hash === sha(unitText('u1')));

    // The schedule as a whole, and the snapshot view.
    assert.deepEqual((await reg.listSchedule()).map((a) => `${a.machineId}/${a.unit}`), ['m1/u3.service', 'm10/u2.service', 'm2/u2.service']);
    const snap = await reg.snapshot();
    assert.equal(snap.jobs.length, 3);
    assert.equal(snap.machines.length, 3);
    assert.equal(snap.schedule.length, 3);
    assert.equal(snap.leader?.candidateId, 'engine-1');
    assert.equal(snap.leader?.createRevision, lead.fence.createRevision);

    // Assign checks: the unit must be submitted with that content, the machine registered.
    await assert.rejects(reg.assign('m1', 'u1.service', sha('other content'), lead.fence), isCode('not-found', /not submitted/));
    await assert.rejects(reg.assign('gone', 'u1.service', sha(unitText('u1')), lead.fence), isCode('not-found', /not registered/));
    await lead.resign();
  });

  it('fences out a deposed leader', async () => {
    const cluster = nextCluster();
    const regA = await connect(cluster);
    const regB = await connect(cluster);
    await regA.registerMachine(machine('m1'), 10);
    await regA.submitUnit('f.service', unitText('f'));
    const hash = sha(unitText('f'));

    const a = await regA.campaign('engine-a', { ttlSeconds: 5 });
    assert.equal(a.isLeader, true);
    await regA.assign('m1', 'f.service', hash, a.fence);

    // A campaign can be given up.
    const ac = new AbortController();
    const given = regB.campaign('engine-quitter', { ttlSeconds: 5, signal: ac.signal });
    await sleep(200);
    ac.abort();
    await assert.rejects(given, isCode('timeout', /aborted/));

    // B waits while A leads.
    let bWon = false;
    const bCampaign = regB.campaign('engine-b', { ttlSeconds: 5 }).then((l) => {
      bWon = true;
      return l;
    });
    await sleep(500);
    assert.equal(bWon, false);

    // A's lease is revoked behind its back (as when it expires during a partition).
    const aLost = new Promise<FlotillaError>((resolve) => a.on('lost', resolve));
    await etcdctl(etcd, ['lease', 'revoke', BigInt(a.leaseId).toString(16)]);
    const b = await bCampaign;
    await aLost;
    assert.equal(a.isLeader, false);
    assert.notEqual(b.fence.createRevision, a.fence.createRevision);
    assert.equal((await regB.getLeader())?.candidateId, 'engine-b');

    // Every fenced write by A fails; B's succeed.
    await assert.rejects(regA.assign('m1', 'f.service', hash, a.fence), isCode('conflict', /not the engine leader/));
    await assert.rejects(regA.unassign('m1', 'f.service', a.fence), isCode('conflict', /not the engine leader/));
    await assert.rejects(regA.setPlacement('f.service', { hash, reason: 'x' }, a.fence), isCode('conflict'));
    await regB.setPlacement('f.service', { hash, reason: 'no machine matches region=b' }, b.fence);
    assert.deepEqual((await regB.listPlacements()).map((p) => [p.unit, p.reason]), [['f.service', 'no machine matches region=b']]);
    assert.equal(await regB.unassign('m1', 'f.service', b.fence), true);

    // Resigning hands over at once.
    const c = regA.campaign('engine-a2', { ttlSeconds: 5 });
    await b.resign();
    const cLead = await c;
    assert.equal((await regA.getLeader())?.candidateId, 'engine-a2');
    await assert.rejects(regB.setPlacement('f.service', undefined, b.fence), isCode('conflict'));
    await regA.setPlacement('f.service', undefined, cLead.fence);
    assert.deepEqual(await regA.listPlacements(), []);
    await cLead.resign();
    assert.equal(await regA.getLeader(), undefined);
  });

  it('destroys units: job, assignments and placement go; the body goes once unreferenced', async () => {
    const cluster = nextCluster();
    const p = `/flotilla/${cluster}/`;
    const reg = await connect(cluster);
    await reg.registerMachine(machine('m1'), 10);
    await reg.registerMachine(machine('m2'), 10);
    const shared = unitText('shared');
    await reg.submitUnit('x.service', shared);
    await reg.submitUnit('y.service', shared); // same content, one body
    await reg.submitUnit('z.service', unitText('z'));
    const lead = await reg.campaign('engine', { ttlSeconds: 5 });
    await reg.assign('m1', 'x.service', sha(shared), lead.fence);
    await reg.assign('m2', 'x.service', sha(shared), lead.fence);
    await reg.assign('m1', 'y.service', sha(shared), lead.fence);
    await reg.setPlacement('x.service', { hash: sha(shared), reason: 'test' }, lead.fence);
    assert.equal((await keysUnder(etcd, `${p}units/bodies/`)).length, 2);

    assert.equal(await reg.destroyUnit('x.service'), true);
    assert.equal(await reg.destroyUnit('x.service'), false);
    assert.equal(await reg.getUnit('x.service'), undefined);
    assert.deepEqual((await reg.listSchedule()).map((a) => `${a.machineId}/${a.unit}`), ['m1/y.service']);
    assert.deepEqual(await reg.listPlacements(), []);
    // y still uses the body.
    assert.deepEqual(await keysUnder(etcd, `${p}units/bodies/`), [`${p}units/bodies/${sha(shared)}`, `${p}units/bodies/${sha(unitText('z'))}`].sort());
    assert.equal((await reg.getUnit('y.service'))?.text, shared);

    await reg.destroyUnit('y.service');
    assert.deepEqual(await keysUnder(etcd, `${p}units/bodies/`), [`${p}units/bodies/${sha(unitText('z'))}`]);
    assert.deepEqual(await keysUnder(etcd, `${p}units/refs/`), [`${p}units/refs/${sha(unitText('z'))}/z.service`]);
    assert.deepEqual(await reg.listSchedule(), []);
    // Once destroyed, its old content can no longer be assigned.
    await assert.rejects(reg.assign('m1', 'x.service', sha(shared), lead.fence), isCode('not-found'));
    // Resubmitting after destroy works, with new content too.
    assert.equal((await reg.submitUnit('x.service', unitText('x2'))).created, true);

    // A body orphaned by an interrupted destroy is swept by collectGarbage().
    await etcdctl(etcd, ['put', `${p}units/bodies/${sha('orphan')}`, 'orphan']);
    assert.equal(await reg.collectGarbage(), 1);
    assert.deepEqual((await keysUnder(etcd, `${p}units/bodies/`)).length, 2);
    await lead.resign();
  });

  it('notifies watchAll of jobs, machines, schedule, states and placements', async () => {
    const cluster = nextCluster();
    const reg = await connect(cluster);
    const changes: RegistryChange[] = [];
    const w = await reg.watchAll((c) => changes.push(c));
    await reg.submitUnit('w.service', unitText('w'));
    const m = await reg.registerMachine(machine('m1'), 10);
    const lead = await reg.campaign('engine', { ttlSeconds: 5 });
    await reg.assign('m1', 'w.service', sha(unitText('w')), lead.fence);
    await reg.reportState('m1', m, { unit: 'w.service', hash: sha(unitText('w')), active: 'active', sub: 'running' });
    await reg.setPlacement('w.service', { hash: sha(unitText('w')), reason: 'r' }, lead.fence);
    await reg.destroyUnit('w.service');
    const want = [
      'resync',
      'put job w.service',
      'put machine m1',
      'put schedule m1 w.service',
      'put state m1 w.service',
      'put placement w.service',
      'delete job w.service',
      'delete placement w.service',
      'delete schedule m1 w.service',
    ];
    const show = (c: RegistryChange): string => (c.type === 'resync' ? 'resync' : [c.type, c.kind, c.machineId, c.unit].filter(Boolean).join(' '));
    await waitFor('watchAll events', () => changes.length >= want.length);
    await sleep(200);
    assert.deepEqual(changes.map(show), want);
    await w.close();
    await lead.resign();
    await m.revoke();
  });

  it('speaks TLS with client certificates', async () => {
    const tlsEtcd = await startEtcd({ tls: true });
    try {
      const tls = tlsEtcd.tls!;
      const reg = await Registry.connect({ endpoints: [tlsEtcd.endpoint], cluster: 'tls', tls: { ca: tls.ca, cert: tls.cert, key: tls.key } });
      try {
        await reg.submitUnit('t.service', unitText('t'));
        assert.equal((await reg.getUnit('t.service'))?.text, unitText('t'));
        assert.match(await etcdctl(tlsEtcd, ['get', '/flotilla/tls/units/jobs/t.service', '--print-value-only']), /"name":"t.service"/);
      } finally {
        await reg.close();
      }
      await assert.rejects(
        Registry.connect({ endpoints: [tlsEtcd.endpoint], cluster: 'tls', tls: { ca: tls.ca }, dialTimeoutMs: 2000 }),
        isCode('external', new RegExp(tlsEtcd.endpoint.replace(/[.:/]/g, '\\$&'))),
      );
    } finally {
      await tlsEtcd.stop();
    }
  });
});

describe('registry watch after compaction', () => {
  let cluster: EtcdCluster | undefined;
  const registries: Registry[] = [];
  after(async () => {
    for (const r of registries) await r.close().catch(() => undefined);
    await cluster?.stop();
  });

  it('re-lists and re-watches when the revision it would resume from was compacted', async () => {
    cluster = await startEtcdCluster(3);
    const [a, b] = cluster.members as [EtcdMember, EtcdMember, EtcdMember];
    const watching = await Registry.connect({ endpoints: [a.endpoint], cluster: 'compact' });
    registries.push(watching);
    const writer = await Registry.connect({ endpoints: [b.endpoint], cluster: 'compact' });
    registries.push(writer);

    const events: WatchEvent<MachineInfo>[] = [];
    const errors: Error[] = [];
    await watching.watchMachines((ev) => events.push(ev), { onError: (e) => errors.push(e) });
    await writer.registerMachine(machine('m-before'), 60);
    await waitFor('first put', () => events.some((e) => e.type === 'put' && e.item.id === 'm-before'));

    // While the watcher's member is down, the others move on and compact away the history it needs.
    await a.kill();
    await writer.registerMachine(machine('m-during-1'), 60);
    await writer.registerMachine(machine('m-during-2'), 60);
    const status = JSON.parse(await etcdctl({ endpoints: [b.endpoint] }, ['endpoint', 'status', '-w', 'json'])) as { Status: { header: { revision: number } } }[];
    await etcdctl({ endpoints: [b.endpoint] }, ['compaction', '--physical', String(status[0]!.Status.header.revision)]);
    await a.restart();

    await waitFor('a second snapshot', () => events.filter((e) => e.type === 'snapshot').length === 2, 30_000);
    const second = events.filter((e) => e.type === 'snapshot')[1]!;
    assert.ok(second.type === 'snapshot');
    assert.deepEqual(second.items.map((m) => m.id).sort(), ['m-before', 'm-during-1', 'm-during-2']);
    assert.ok(errors.some((e) => /watch on \/flotilla\/compact\/machines\/ ended \(Watcher canceled.*\); listing again/.test(e.message)), errors.map((e) => e.message).join('\n'));

    // And it keeps watching from the new revision.
    await writer.registerMachine(machine('m-after'), 60);
    await waitFor('put after resync', () => events.some((e) => e.type === 'put' && e.item.id === 'm-after'));
    assert.equal(events.filter((e) => e.type === 'put' && e.item.id.startsWith('m-during')).length, 0);
  });
});

describe('registry connection failures and restarts', () => {
  let etcd: SingleEtcd | undefined;
  let reg: Registry | undefined;
  after(async () => {
    await reg?.close().catch(() => undefined);
    await etcd?.stop();
  });

  it('fails to connect to a dead endpoint with an external error naming it', async () => {
    const port = await freePort();
    const started = Date.now();
    await assert.rejects(
      Registry.connect({ endpoints: [`http://127.0.0.1:${port}`], cluster: 'dead', dialTimeoutMs: 1000, requestTimeoutMs: 1000 }),
      isCode('external', new RegExp(`etcd at http://127\\.0\\.0\\.1:${port}: connect`)),
    );
    assert.ok(Date.now() - started < 15_000);
    await assert.rejects(Registry.connect({ endpoints: [], cluster: 'x' }), isCode('invalid-input'));
    await assert.rejects(Registry.connect({ endpoints: ['http://127.0.0.1:1'] }), isCode('invalid-input', /cluster name or a key prefix/));
    assert.throws(() => registryPrefix('Bad Name'), isCode('invalid-input'));
  });

  it('keeps watching across a kill and restart of the etcd member', async () => {
    etcd = await startEtcd();
    reg = await Registry.connect({ endpoints: [etcd.endpoint], prefix: '/custom/prefix' });
    assert.equal(reg.prefix, '/custom/prefix/');
    const changes: RegistryChange[] = [];
    const machines: WatchEvent<MachineInfo>[] = [];
    await reg.watchAll((c) => changes.push(c));
    await reg.watchMachines((ev) => machines.push(ev));
    await reg.submitUnit('before.service', unitText('before'));
    await waitFor('event before restart', () => changes.some((c) => c.type === 'put' && c.unit === 'before.service'));

    await etcd.member.kill();
    await sleep(500);
    await etcd.member.restart();

    // Writes after the restart reach the old watches, each exactly once.
    await reg.submitUnit('after.service', unitText('after'));
    const m = await reg.registerMachine(machine('m-after'), 30);
    await waitFor('event after restart', () => changes.some((c) => c.type === 'put' && c.unit === 'after.service'), 30_000);
    await waitFor('machine event after restart', () => machines.some((e) => e.type === 'put' && e.item.id === 'm-after'), 30_000);
    await sleep(300);
    assert.equal(changes.filter((c) => c.type === 'put' && c.unit === 'after.service').length, 1);
    assert.equal(changes.filter((c) => c.type === 'put' && c.unit === 'before.service').length, 1);
    assert.deepEqual(await keysUnder(etcd, '/custom/prefix/units/jobs/'), ['/custom/prefix/units/jobs/after.service', '/custom/prefix/units/jobs/before.service']);
    await m.revoke();
    await waitFor('machine delete event', () => machines.some((e) => e.type === 'delete' && e.id === 'm-after'));
  });

  it("reports a lease lost within about one TTL when etcd stops answering (etcd3 alone waits two)", async () => {
    assert.ok(etcd && reg, 'needs the previous test');
    const m = await reg.registerMachine(machine('m-lost'), 3);
    const lead = await reg.campaign('engine', { ttlSeconds: 3 });
    const machineLost = new Promise<number>((resolve) => m.on('lost', () => resolve(Date.now())));
    const leaderLost = new Promise<number>((resolve) => lead.on('lost', () => resolve(Date.now())));
    await etcd.member.kill();
    const killedAt = Date.now();
    const [tm, tl] = await Promise.all([machineLost, leaderLost]);
    assert.ok(tm - killedAt < 4500, `machine lease lost after ${tm - killedAt} ms`);
    assert.ok(tl - killedAt < 4500, `leadership lost after ${tl - killedAt} ms`);
    assert.equal(lead.isLeader, false);
    await etcd.member.restart();
    // Lost means gone for good: the keys expire (etcd restores leases with a fresh TTL on restart).
    await waitFor('lapsed machine key', async () => (await reg!.listMachines()).every((x) => x.id !== 'm-lost'), 15_000);
    await waitFor('lapsed leader key', async () => (await reg!.getLeader()) === undefined, 15_000);
  });
});
