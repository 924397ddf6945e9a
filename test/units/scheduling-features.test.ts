/**
 * Health-aware rescheduling, resource-aware placement and rolling updates end to end:
 * real etcd, real fleetd machines (engine + agent each, in this process or as
 * `flotilla fleetd` processes), real process-runner units that prove where, and with
 * which content, they run.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startEtcd, type SingleEtcd } from '../fixtures/etcd';
import { FleetFixture, placements } from '../fixtures/fleet';
import { sleep } from '../fixtures/proc';
import { cli } from '../helpers/cli';
import { resumeRollout, updateUnit } from '../../src/units/rollout';
import type { UnitState } from '../../src/units/registry';

let etcd: SingleEtcd;
before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  await etcd?.stop();
});

/** A unit that crash-loops on the machines listed in `failOn` (all when empty) and runs elsewhere. */
function flakyUnit(f: FleetFixture, failOn: string[], extra: string[]): string {
  const stop = path.join(f.dir, 'stop-all');
  const fail = failOn.length ? failOn.map((m) => `[ "$$FLOTILLA_MACHINE_ID" = ${m} ]`).join(' || ') : 'true';
  return [
    '[Unit]',
    'StartLimitBurst=3',
    'StartLimitIntervalSec=30s',
    '[Service]',
    `ExecStart=/bin/sh -c 'if ${fail}; then exit 1; fi; while [ ! -e ${stop} ]; do echo ok > ${f.dir}/%n.$$FLOTILLA_MACHINE_ID; sleep 0.1; done'`,
    'Restart=always',
    'RestartSec=100ms',
    '[X-Fleet]',
    ...extra,
    '',
  ].join('\n');
}

test('a unit whose restart budget runs out on a live machine moves, and list-units and status say why', async () => {
  const f = new FleetFixture([etcd.endpoint], 'moves');
  try {
    for (const id of ['m1', 'm2']) await f.start({ id, metadata: { pool: 'a' } });
    await f.start({ id: 'm3', metadata: { pool: 'b' } });
    const c = await f.units();
    // Least loaded with a tie: m1 first, where it crash-loops until systemd's start limit.
    await c.setState([f.writeUnit('flaky.service', flakyUnit(f, ['m1'], ['MachineMetadata=pool=a']))], 'launched');
    const rows = await f.waitRows((rows) => rows.some((r) => r.unit === 'flaky.service' && r.machine === 'm2' && r.active === 'active'), 20_000);
    const row = rows.find((r) => r.unit === 'flaky.service')!;
    assert.match(row.reason ?? '', /^moved from m1 \(failed on m1 once \(start-limit-hit\); avoided until \d\d:\d\d:\d\dZ\)$/);
    const [health] = await c.registry.listHealth('flaky.service');
    assert.equal(health?.machineId, 'm1');
    assert.equal(health?.failures, 1);
    assert.equal(health?.lastResult, 'start-limit-hit');
    // Default backoff: 10 s after the first failure.
    assert.equal(Date.parse(health!.avoidUntil) - Date.parse(health!.lastFailureAt), 10_000);
    await sleep(300);
    assert.deepEqual(f.runningOn('flaky.service'), ['m2']);

    const conn = ['--endpoints', etcd.endpoint, '--cluster', 'moves'];
    let r = await cli('units', 'list-units', ...conn);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^flaky\.service +m2\.\.\.\/127\.0\.0\.1 +active +running +moved from m1 \(failed on m1 once \(start-limit-hit\); avoided until /m);
    r = await cli('units', 'status', 'flaky.service', ...conn);
    assert.match(r.stdout, /Machine: m2 \(127\.0\.0\.1\)\n +Active: active \(running\)/);
    assert.match(r.stdout, /Failures: failed on m1 once \(start-limit-hit\); avoided until/);
  } finally {
    await f.stop();
  }
});

test('failing everywhere: unplaced with a reason per machine, retried after the backoff, which doubles; Reschedule=no stays failed', async () => {
  const f = new FleetFixture([etcd.endpoint], 'backoff');
  try {
    for (const id of ['m1', 'm2']) await f.start({ id, metadata: { pool: 'a' } });
    await f.start({ id: 'm3', metadata: { pool: 'b' } });
    const c = await f.units();
    await c.setState(
      [
        f.writeUnit('doomed.service', flakyUnit(f, [], ['MachineMetadata=pool=a', 'X-Flotilla-RescheduleBackoff=1s', 'X-Flotilla-RescheduleBackoffMax=1min'])),
        f.writeUnit('stubborn.service', flakyUnit(f, [], ['MachineMetadata=pool=b', 'X-Flotilla-Reschedule=no'])),
      ],
      'launched',
    );
    const rows = await f.waitRows((rows) => /^no eligible machine among 3: /.test(rows.find((r) => r.unit === 'doomed.service')?.reason ?? ''), 20_000);
    const doomed = rows.find((r) => r.unit === 'doomed.service')!;
    assert.equal(doomed.machine, undefined);
    // (Once each, or more if a 1 s backoff ended before this look.)
    assert.match(doomed.reason!, /failed on m1 (once|\d+ times) \(start-limit-hit\); avoided until .*; failed on m2 (once|\d+ times) \(start-limit-hit\); avoided until .*; MachineMetadata pool=a does not match/);
    // After a backoff the unit is tried again, fails again, and that machine's backoff doubles.
    const deadline = Date.now() + 30_000;
    let twice: Awaited<ReturnType<typeof c.registry.listHealth>>[number] | undefined;
    while (!twice && Date.now() < deadline) {
      twice = (await c.registry.listHealth('doomed.service')).find((h) => h.failures >= 2);
      if (!twice) await sleep(100);
    }
    assert.ok(twice, 'a second failure on one machine was recorded');
    assert.equal(Date.parse(twice.avoidUntil) - Date.parse(twice.lastFailureAt), 2000 * 2 ** (twice.failures - 2));
    // The unit with Reschedule=no stays failed where it is, with no health record.
    const stubborn = (await c.listUnits()).find((r) => r.unit === 'stubborn.service')!;
    assert.equal(stubborn.machine, 'm3');
    assert.equal(stubborn.active, 'failed');
    assert.deepEqual(await c.registry.listHealth('stubborn.service'), []);
    // Destroy clears the unit's health records.
    await c.destroy(['doomed.service']);
    assert.deepEqual(await c.registry.listHealth('doomed.service'), []);
  } finally {
    await f.stop();
  }
});

test('resources: requests from CPUQuota=/MemoryMax= and X-Flotilla-CPU=; never over-committed; unplaceable says why until room frees up', async () => {
  const f = new FleetFixture([etcd.endpoint], 'resources');
  try {
    await f.start({ id: 'm1', capacity: { cpus: 1, memoryMiB: 1024 } });
    // m2 is a real `flotilla fleetd` process: its capacity comes from --cpus/--memory-mib.
    f.spawn({ id: 'm2', capacity: { cpus: 2, memoryMiB: 2048 } });
    const c = await f.units();
    for (let i = 0; i < 300 && (await c.listMachines()).length < 2; i++) await sleep(100);
    const conn = ['--endpoints', etcd.endpoint, '--cluster', 'resources'];
    const machines = await cli('units', 'list-machines', ...conn);
    assert.match(machines.stdout, /^m2\.\.\. +127\.0\.0\.1 +- +2 +2048 MiB$/m);

    const withService = (lines: string[], xfleet: string[] = []) => f.markerUnit(xfleet).replace('[Service]\n', `[Service]\n${lines.map((l) => `${l}\n`).join('')}`);
    await c.setState([f.writeUnit('big.service', withService(['CPUQuota=200%', 'MemoryMax=1536M']))], 'launched');
    await f.waitRows((rows) => rows.some((r) => r.unit === 'big.service' && r.active === 'active'), 30_000);
    await c.setState([f.writeUnit('one.service', f.markerUnit(['X-Flotilla-CPU=1']))], 'launched');
    await f.waitRows((rows) => rows.some((r) => r.unit === 'one.service' && r.active === 'active'), 30_000);
    await c.setState([f.writeUnit('two.service', f.markerUnit(['X-Flotilla-CPU=1', 'X-Flotilla-Memory=256M']))], 'launched');
    let rows = await f.waitRows((rows) => rows.some((r) => r.unit === 'two.service' && r.reason), 15_000);
    assert.deepEqual(placements(rows), { 'big.service': ['m2'], 'one.service': ['m1'] });
    assert.equal(
      rows.find((r) => r.unit === 'two.service')!.reason,
      'no eligible machine among 2: m1: needs 1 CPU, 256 MiB: 0 of 1 CPUs free; m2: needs 1 CPU, 256 MiB: 0 of 2 CPUs free',
    );
    const status = await cli('units', 'status', 'two.service', ...conn);
    assert.match(status.stdout, /Not placed: no eligible machine among 2: m1: needs 1 CPU/);
    await sleep(300);
    assert.deepEqual(f.runningOn('big.service'), ['m2']);
    // Room frees up: the waiting unit is placed.
    await c.destroy(['big.service']);
    rows = await f.waitRows((rows) => rows.some((r) => r.unit === 'two.service' && r.active === 'active'), 15_000);
    assert.deepEqual(placements(rows)['two.service'], ['m2']);
  } finally {
    await f.stop();
  }
});

/** A global unit writing its version into its marker file. */
function versioned(f: FleetFixture, version: string, opts: { exitCode?: number } = {}): string {
  const stop = path.join(f.dir, 'stop-all');
  // Written aside and renamed, so a reader never sees the file empty.
  const write = `echo ${version} > ${f.dir}/.tmp-%n.$$FLOTILLA_MACHINE_ID && mv ${f.dir}/.tmp-%n.$$FLOTILLA_MACHINE_ID ${f.dir}/%n.$$FLOTILLA_MACHINE_ID`;
  const run = opts.exitCode !== undefined ? `${write}; sleep 0.2; exit ${opts.exitCode}` : `while [ ! -e ${stop} ]; do ${write}; sleep 0.1; done`;
  return ['[Service]', `ExecStart=/bin/sh -c '${run}'`, '', '[X-Fleet]', 'Global=true', ''].join('\n');
}

function versionsOn(f: FleetFixture, unit: string, machines: string[]): Record<string, string> {
  return Object.fromEntries(machines.map((m) => [m, fs.readFileSync(path.join(f.dir, `${unit}.${m}`), 'utf8').trim()]));
}

/** Watches every state report of `unit` and keeps the largest number of copies not active at once. */
async function watchUnavailable(f: FleetFixture, unit: string, machines: string[]) {
  const c = await f.units();
  const latest = new Map<string, UnitState>();
  let worst = 0;
  const w = await c.registry.watchStates((ev) => {
    if (ev.type === 'snapshot') for (const s of ev.items) latest.set(s.machineId, s);
    else if (ev.type === 'put') latest.set(ev.item.machineId, ev.item);
    else latest.delete(ev.id.split('/')[0]!);
    const down = machines.filter((m) => { const s = latest.get(m); return !s || s.unit !== unit || s.active !== 'active'; }).length;
    worst = Math.max(worst, down);
  });
  return { close: () => w.close(), get worst() { return worst; } };
}

test('rolling update of a global unit through the CLI: one machine at a time, each active and healthy before the next', async () => {
  const f = new FleetFixture([etcd.endpoint], 'rolling');
  const machines = ['m1', 'm2', 'm3'];
  try {
    for (const id of machines) await f.start({ id });
    const c = await f.units();
    const file = f.writeUnit('web.service', versioned(f, 'v1'));
    await c.setState([file], 'launched');
    await f.waitRows((rows) => rows.filter((r) => r.unit === 'web.service' && r.active === 'active').length === 3, 20_000);
    await sleep(300);
    assert.deepEqual(versionsOn(f, 'web.service', machines), { m1: 'v1', m2: 'v1', m3: 'v1' });
    const v1 = (await c.registry.getUnit('web.service'))!.hash;

    const watcher = await watchUnavailable(f, 'web.service', machines);
    fs.writeFileSync(file, versioned(f, 'v2'));
    const conn = ['--endpoints', etcd.endpoint, '--cluster', 'rolling'];
    const health = `grep -qx v2 ${f.dir}/web.service.$FLOTILLA_MACHINE_ID`;
    const r = await cli('units', 'update', file, '--health-cmd', health, '--min-ready', '0.3', '--timeout', '20', '--json', ...conn);
    await watcher.close();
    assert.equal(r.code, 0, r.stderr);
    const rollout = JSON.parse(r.stdout) as { phase: string; fromHash: string; toHash: string; steps: Array<{ machineId: string; ok: boolean; detail: string }> };
    assert.equal(rollout.phase, 'done');
    assert.equal(rollout.fromHash, v1);
    assert.deepEqual(rollout.steps.map((s) => [s.machineId, s.ok, s.detail]), machines.map((m) => [m, true, 'active, health command passed']));
    assert.match(r.stderr, /web\.service: restarting on m1 with [0-9a-f]{12} \(0\/3 done\)\n/);
    assert.equal(watcher.worst, 1, 'never more than one copy down at a time (and one was restarted)');
    await sleep(300);
    assert.deepEqual(versionsOn(f, 'web.service', machines), { m1: 'v2', m2: 'v2', m3: 'v2' });
    const job = (await c.registry.getUnit('web.service'))!;
    assert.equal(job.hash, rollout.toHash);
    assert.equal(await c.registry.getBody(v1), undefined, 'the old body is collected once the update is done');
    assert.ok((await c.listUnits()).every((row) => row.unit !== 'web.service' || (row.copyHash === job.hash && row.active === 'active')));
    // The same content again is not an update.
    const again = await cli('units', 'update', file, ...conn);
    assert.equal(again.stdout, 'Unit web.service already has this content\n');
  } finally {
    await f.stop();
  }
});

test('a new body that fails stops the rollout and rolls back; an interrupted update resumes from etcd', async () => {
  const f = new FleetFixture([etcd.endpoint], 'rollback');
  const machines = ['m1', 'm2', 'm3'];
  try {
    for (const id of machines) await f.start({ id });
    const c = await f.units();
    const file = f.writeUnit('api.service', versioned(f, 'v1'));
    await c.setState([file], 'launched');
    await f.waitRows((rows) => rows.filter((r) => r.unit === 'api.service' && r.active === 'active').length === 3, 20_000);
    const v1 = (await c.registry.getUnit('api.service'))!.hash;
    const conn = ['--endpoints', etcd.endpoint, '--cluster', 'rollback'];

    // v-bad exits 3 shortly after starting: the first machine fails, the rollout rolls back.
    fs.writeFileSync(file, versioned(f, 'bad', { exitCode: 3 }));
    const r = await cli('units', 'update', file, '--min-ready', '0.5', '--timeout', '20', '--rollback-on-failure', ...conn);
    assert.equal(r.code, 6, r.stderr);
    assert.match(r.stderr, /rolling update of api\.service failed: m1: failed \(exit-code\); the old content runs everywhere again/);
    const back = (await c.registry.getRollout('api.service'))!;
    assert.equal(back.phase, 'rolled-back');
    assert.deepEqual(back.steps.map((s) => [s.machineId, s.hash === back.toHash ? 'new' : 'old', s.ok]), [['m1', 'new', false], ['m1', 'old', true]]);
    assert.equal((await c.registry.getUnit('api.service'))!.hash, v1);
    assert.equal(await c.registry.getBody(back.toHash), undefined, 'the failed body is collected');
    await f.waitRows((rows) => rows.filter((x) => x.unit === 'api.service' && x.active === 'active' && x.copyHash === v1).length === 3, 20_000);
    await sleep(300);
    assert.deepEqual(versionsOn(f, 'api.service', machines), { m1: 'v1', m2: 'v1', m3: 'v1' }, 'only m1 ever ran the bad body, and runs v1 again');

    // Interrupted after its first batch (two machines): the record keeps the progress, the
    // rest keep the old content, and a resume finishes the job.
    fs.writeFileSync(file, versioned(f, 'v2'));
    const text = fs.readFileSync(file, 'utf8');
    const abort = new AbortController();
    await assert.rejects(
      updateUnit(c.registry, 'api.service', text, { maxUnavailable: 2, timeoutMs: 20_000, minReadyMs: 300, rollbackOnFailure: false }, { signal: abort.signal, log: (l) => (/: ready: /.test(l) ? abort.abort() : undefined) }),
      /interrupted; its progress is kept: flotilla units rollout resume api\.service/,
    );
    const mid = (await c.registry.getRollout('api.service'))!;
    assert.equal(mid.phase, 'rolling');
    assert.deepEqual(Object.keys(mid.hashOn).sort(), ['m1', 'm2']);
    await sleep(1000);
    const rows = (await c.listUnits()).filter((x) => x.unit === 'api.service');
    assert.deepEqual(rows.map((x) => [x.machine, x.copyHash === mid.toHash ? 'new' : 'old']), [['m1', 'new'], ['m2', 'new'], ['m3', 'old']]);
    assert.equal(rows[0]!.rollout?.phase, 'rolling');
    const status = await cli('units', 'rollout', 'status', 'api.service', ...conn);
    assert.match(status.stdout, /api\.service: rolling [0-9a-f]{12} -> [0-9a-f]{12}/);
    const done = await resumeRollout(c.registry, 'api.service');
    assert.equal(done.ok, true);
    assert.equal(done.rollout.phase, 'done');
    await sleep(300);
    assert.deepEqual(versionsOn(f, 'api.service', machines), { m1: 'v2', m2: 'v2', m3: 'v2' });
    // Destroying a unit after updates leaves no body, rollout or reference behind.
    await c.destroy(['api.service']);
    assert.equal(await c.registry.getRollout('api.service'), undefined);
    assert.equal(await c.registry.getBody(done.rollout.toHash), undefined);
  } finally {
    await f.stop();
  }
});

test('updating a template rolls every submitted instance in turn; a failing one puts the updated ones back', async () => {
  const f = new FleetFixture([etcd.endpoint], 'template');
  const machines = ['m1', 'm2'];
  try {
    for (const id of machines) await f.start({ id });
    const c = await f.units();
    const spread = (body: string) => body.replace('Global=true', 'Conflicts=%p@*.service');
    const file = f.writeUnit('app@.service', spread(versioned(f, 'v1')));
    await c.submit([file]);
    await c.setState(['app@1.service', 'app@2.service'], 'launched');
    await f.waitRows((rows) => rows.filter((r) => r.unit.startsWith('app@') && r.active === 'active').length === 2, 20_000);
    const conn = ['--endpoints', etcd.endpoint, '--cluster', 'template'];
    const where = placements(await c.listUnits());
    const markers = () => ({ 'app@1.service': versionsOn(f, 'app@1.service', where['app@1.service']!), 'app@2.service': versionsOn(f, 'app@2.service', where['app@2.service']!) });

    fs.writeFileSync(file, spread(versioned(f, 'v2')));
    let r = await cli('units', 'update', file, '--min-ready', '0.3', '--timeout', '20', ...conn);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'Unit app@.service updated\nUnit app@1.service updated\nUnit app@2.service updated\n');
    await sleep(300);
    assert.deepEqual(Object.values(markers()).flatMap((m) => Object.values(m)), ['v2', 'v2']);
    const v2 = (await c.registry.getUnit('app@.service'))!.text;

    // Instance 1 fails with the bad body: it is rolled back and the template gets v2 back; instance 2 is never touched.
    fs.writeFileSync(file, spread(versioned(f, 'bad', { exitCode: 3 })));
    r = await cli('units', 'update', file, '--min-ready', '0.5', '--timeout', '20', '--rollback-on-failure', ...conn);
    assert.equal(r.code, 6, r.stderr);
    assert.equal(r.stdout, 'Unit app@.service put back to its old content\n');
    assert.match(r.stderr, /rolling update of app@1\.service failed: .*failed \(exit-code\)/);
    for (const u of ['app@.service', 'app@1.service', 'app@2.service']) assert.equal((await c.registry.getUnit(u))!.text, v2, u);
    assert.equal((await c.registry.getRollout('app@2.service'))!.phase, 'done', 'instance 2 keeps its earlier, finished update');
    await f.waitRows((rows) => rows.filter((x) => x.unit.startsWith('app@') && x.active === 'active').length === 2, 20_000);
    await sleep(300);
    assert.deepEqual(Object.values(markers()).flatMap((m) => Object.values(m)), ['v2', 'v2']);
  } finally {
    await f.stop();
  }
});

test('failure backoffs live in etcd: a new engine leader keeps the unit off the machine it failed on', async () => {
  const f = new FleetFixture([etcd.endpoint], 'keepoff');
  try {
    // m3 starts first and leads; the unit may run on m1 or m2 only.
    const first = await f.start({ id: 'm3', metadata: { pool: 'b' } });
    for (const id of ['m1', 'm2']) await f.start({ id, metadata: { pool: 'a' } });
    const c = await f.units();
    assert.equal((await c.registry.getLeader())?.candidateId, 'm3');
    await c.setState([f.writeUnit('flaky.service', flakyUnit(f, ['m1'], ['MachineMetadata=pool=a', 'X-Flotilla-RescheduleBackoff=2min']))], 'launched');
    await f.waitRows((rows) => rows.some((r) => r.unit === 'flaky.service' && r.machine === 'm2' && r.active === 'active'), 20_000);
    // The leader goes; another engine takes over. Then m2 goes: m1 is the only machine left in the pool.
    await first.stop();
    f.inProcess.delete('m3');
    for (let i = 0; i < 100 && ['m3', undefined].includes((await c.registry.getLeader())?.candidateId); i++) await sleep(100);
    await f.inProcess.get('m2')!.stop();
    f.inProcess.delete('m2');
    const rows = await f.waitRows((rows) => rows.some((r) => r.unit === 'flaky.service' && !r.machine && r.reason), 20_000);
    assert.match(rows.find((r) => r.unit === 'flaky.service')!.reason!, /^no eligible machine among 1: failed on m1 once \(start-limit-hit\); avoided until /);
    await sleep(400);
    assert.deepEqual(f.runningOn('flaky.service', 300), [], 'no copy runs anywhere');
  } finally {
    await f.stop();
  }
});
