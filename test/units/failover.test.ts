/**
 * Failures, against real etcd and real fleetd processes: SIGKILLed agents and engine
 * leaders, an agent cut off from etcd (fencing), and a lost etcd member. Measured
 * times are printed; the bench (bench/scheduler.ts) gives medians over many trials.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { startEtcd, startEtcdCluster } from '../fixtures/etcd';
import { FleetFixture, placements } from '../fixtures/fleet';
import { CuttableProxy } from '../fixtures/proxy';
import { sleep } from '../fixtures/proc';
import { Registry } from '../../src/units/registry';

const THREE = [
  { id: 'm1', metadata: { n: '1' } },
  { id: 'm2', metadata: { n: '2' } },
  { id: 'm3', metadata: { n: '3' } },
];

async function waitLeader(reg: Registry, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const l = await reg.getLeader();
    if (l) return l.candidateId;
    await sleep(50);
  }
  throw new Error('no engine leader');
}

test('SIGKILL an agent: its units run elsewhere within the TTL', async () => {
  const etcd = await startEtcd();
  const f = new FleetFixture([etcd.endpoint], 'kill-agent', 2);
  try {
    for (const m of THREE) f.spawn(m);
    const c = await f.units();
    for (let i = 0; i < 300 && (await c.listMachines()).length < 3; i++) await sleep(100);
    await c.setState([f.writeUnit('a.service', f.markerUnit()), f.writeUnit('b.service', f.markerUnit()), f.writeUnit('c.service', f.markerUnit())], 'launched');
    let rows = await f.waitRows((rows) => rows.filter((r) => r.active === 'active').length === 3, 30_000);
    const victim = placements(rows)['a.service']![0]!;
    const t0 = Date.now();
    await f.processes.get(victim)!.kill();
    rows = await f.waitRows((rows) => rows.some((r) => r.unit === 'a.service' && r.active === 'active' && r.machine !== victim), 15_000);
    const ms = Date.now() - t0;
    console.log(`# agent SIGKILL -> a.service active on ${placements(rows)['a.service']} after ${ms} ms (TTL ${f.ttlSeconds} s)`);
    assert.ok(!Object.values(placements(rows)).flat().includes(victim), 'nothing is scheduled on the dead machine');
    assert.equal(rows.filter((r) => r.active === 'active').length, 3);
    await sleep(400);
    const live = f.runningOn('a.service').filter((m) => m !== victim);
    assert.deepEqual(live, placements(rows)['a.service']);
  } finally {
    await f.stop();
    await etcd.stop();
  }
});

test('SIGKILL the leading engine: another takes over and keeps scheduling', async () => {
  const etcd = await startEtcd();
  const f = new FleetFixture([etcd.endpoint], 'kill-leader', 2);
  try {
    for (const m of THREE) f.spawn(m);
    const c = await f.units();
    const leader = await waitLeader(c.registry, 30_000);
    await c.setState([f.writeUnit('before.service', f.markerUnit())], 'launched');
    await f.waitRows((rows) => rows.some((r) => r.unit === 'before.service' && r.active === 'active'), 30_000);
    const t0 = Date.now();
    await f.processes.get(leader)!.kill();
    await c.setState([f.writeUnit('after.service', f.markerUnit([`MachineMetadata=n=${leader === 'm1' ? 2 : 1}`]))], 'launched');
    await f.waitRows((rows) => rows.some((r) => r.unit === 'after.service' && r.active === 'active'), 20_000);
    const newLeader = await waitLeader(c.registry);
    console.log(`# leader ${leader} SIGKILL -> new leader ${newLeader}, after.service scheduled and active after ${Date.now() - t0} ms`);
    assert.notEqual(newLeader, leader);
  } finally {
    await f.stop();
    await etcd.stop();
  }
});

test('fencing: an agent cut off from etcd stops its units before its lease can expire', async () => {
  const etcd = await startEtcd();
  const proxy = await new CuttableProxy(Number(new URL(etcd.endpoint).port)).start();
  const ttl = 3;
  const f = new FleetFixture([etcd.endpoint], 'fence', ttl);
  try {
    // m1 reaches etcd only through the proxy; m2 directly.
    const cutOff = new FleetFixture([proxy.endpoint], 'fence', ttl);
    Object.assign(cutOff, { dir: f.dir });
    const d1 = await cutOff.start({ id: 'm1' });
    await f.start({ id: 'm2' });
    const c = await f.units();
    await c.setState([f.writeUnit('solo.service', f.markerUnit(['MachineID=m1']))], 'launched');
    await f.waitRows((rows) => rows.some((r) => r.unit === 'solo.service' && r.active === 'active'));
    await c.setState([f.writeUnit('mobile.service', f.markerUnit(['Conflicts=nothing.service']))], 'launched');
    await sleep(300);
    let fencedAt = 0;
    d1.agent.once('fenced', () => (fencedAt = Date.now()));
    const t0 = Date.now();
    proxy.cut();
    while (!fencedAt && Date.now() - t0 < 10_000) await sleep(20);
    const stopped = Date.now();
    assert.ok(fencedAt > 0, 'the agent fenced itself');
    // Its units are gone: markers stop changing.
    await sleep(300);
    assert.deepEqual(f.runningOn('solo.service', 250), []);
    const fenceMs = fencedAt - t0;
    console.log(`# cut at 0 ms; agent fenced and stopped its units at ${fenceMs} ms (${stopped - t0} ms incl. stop); lease TTL ${ttl * 1000} ms`);
    assert.ok(fenceMs < ttl * 1000, `fenced within the TTL (${fenceMs} ms)`);
    // Heal: the agent registers again and its pinned unit comes back.
    proxy.restore();
    await f.waitRows((rows) => rows.some((r) => r.unit === 'solo.service' && r.active === 'active'), 20_000);
    await d1.stop();
    cutOff.inProcess.clear();
  } finally {
    await f.stop();
    await proxy.stop();
    await etcd.stop();
  }
});

test('kill 1 of 3 etcd members: scheduling continues and nothing is lost', async () => {
  const cluster = await startEtcdCluster(3);
  // A production-like TTL: an etcd leader election must not look like a lost lease.
  const f = new FleetFixture(cluster.endpoints, 'quorum', 4);
  try {
    for (const m of THREE) await f.start(m);
    const c = await f.units();
    const first = ['x1', 'x2', 'x3', 'x4'].map((n) => f.writeUnit(`${n}.service`, f.markerUnit()));
    await c.setState(first, 'launched');
    await f.waitRows((rows) => rows.filter((r) => r.active === 'active').length === 4, 20_000);
    const victim = cluster.members[0]!;
    await victim.kill();
    const t0 = Date.now();
    await c.setState([f.writeUnit('y1.service', f.markerUnit()), f.writeUnit('y2.service', f.markerUnit())], 'launched');
    const rows = await f.waitRows((rows) => rows.filter((r) => r.active === 'active').length === 6, 30_000);
    console.log(`# etcd member killed: 2 new units active after ${Date.now() - t0} ms`);
    assert.deepEqual(Object.keys(placements(rows)).sort(), ['x1.service', 'x2.service', 'x3.service', 'x4.service', 'y1.service', 'y2.service']);
    assert.equal((await c.listMachines()).length, 3, 'every machine kept its registration');
    assert.equal((await c.registry.listUnits()).length, 6, 'no unit lost');
  } finally {
    await f.stop();
    await cluster.stop();
  }
});
