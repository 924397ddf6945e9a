/**
 * Scheduling semantics end to end: real etcd, in-process fleetd machines (engine +
 * agent each), real process-runner units that prove where they run.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { startEtcd, type SingleEtcd } from '../fixtures/etcd';
import { FleetFixture, placements } from '../fixtures/fleet';
import { sleep } from '../fixtures/proc';
import { cli } from '../helpers/cli';

let etcd: SingleEtcd;
before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  await etcd?.stop();
});

async function fleetWith(cluster: string, machines: Array<{ id: string; metadata?: Record<string, string> }>): Promise<FleetFixture> {
  const f = new FleetFixture([etcd.endpoint], cluster);
  for (const m of machines) await f.start(m);
  return f;
}

const THREE = [
  { id: 'm1', metadata: { region: 'east', disk: 'ssd' } },
  { id: 'm2', metadata: { region: 'east', disk: 'hdd' } },
  { id: 'm3', metadata: { region: 'west', disk: 'ssd' } },
];

test('X-Fleet placement on a live cluster: metadata, conflicts, MachineOf, MachineID, Replaces, unplaceable reasons', async () => {
  const f = await fleetWith('xfleet', THREE);
  try {
    const c = await f.units();
    const file = (name: string, x: string[]) => f.writeUnit(name, f.markerUnit(x));
    await c.setState(
      [
        file('west.service', ['MachineMetadata=region=west']),
        file('east-ssd.service', ['MachineMetadata=region=east', 'MachineMetadata=disk=ssd']),
        file('db.service', ['MachineID=m2']),
        file('backup.service', ['MachineOf=db.service']),
        file('gpu.service', ['MachineMetadata=gpu=yes']),
      ],
      'launched',
    );
    const rows = await f.waitRows((rows) => ['west', 'east-ssd', 'db', 'backup'].every((u) => rows.some((r) => r.unit === `${u}.service` && r.active === 'active')) && rows.some((r) => r.unit === 'gpu.service' && r.reason));
    assert.deepEqual(placements(rows), { 'backup.service': ['m2'], 'db.service': ['m2'], 'east-ssd.service': ['m1'], 'west.service': ['m3'] });
    assert.match(rows.find((r) => r.unit === 'gpu.service')!.reason!, /MachineMetadata gpu=yes does not match/);
    // The units really run where the registry says.
    await sleep(300);
    assert.deepEqual(f.runningOn('west.service'), ['m3']);
    assert.deepEqual(f.runningOn('backup.service'), ['m2']);

    // Replaces: takes db's machine and pushes db (and its MachineOf follower) elsewhere.
    await c.setState([file('newdb.service', ['Replaces=db.service'])], 'launched');
    const after = await f.waitRows((rows) => rows.some((r) => r.unit === 'newdb.service' && r.active === 'active') && !rows.some((r) => r.unit === 'db.service' && r.active === 'active'), 15_000);
    assert.equal(placements(after)['newdb.service']?.[0], 'm2');
    assert.match(after.find((r) => r.unit === 'db.service')!.reason ?? '', /MachineID=m2|replaced by newdb/);
  } finally {
    await f.stop();
  }
});

test('Conflicts with templates and specifiers: instances spread, the surplus waits with a reason', async () => {
  const f = await fleetWith('tpl', THREE);
  try {
    const c = await f.units();
    const tpl = f.writeUnit('web@.service', f.markerUnit(['Conflicts=%p@*.service']));
    await c.submit([tpl]);
    await c.setState(['web@1.service', 'web@2.service', 'web@3.service', 'web@4.service'], 'launched');
    const rows = await f.waitRows((rows) => rows.filter((r) => r.unit.startsWith('web@') && r.active === 'active').length === 3 && rows.some((r) => r.unit.startsWith('web@') && r.reason));
    const p = placements(rows);
    const machines = Object.values(p).flat();
    assert.equal(new Set(machines).size, 3, `one instance per machine: ${JSON.stringify(p)}`);
    assert.match(rows.find((r) => r.reason)!.reason!, /conflicts with web@\d\.service/);
    // The template itself is never placed, and starting it is refused.
    assert.equal(rows.find((r) => r.unit === 'web@.service')?.machine, undefined);
    await assert.rejects(c.setState(['web@.service'], 'launched'), /is a template: start an instance such as web@1\.service/);
  } finally {
    await f.stop();
  }
});

test('template instances: every specifier-dependent option is read per instance (sidekicks beside their own copy)', async () => {
  const f = await fleetWith('sidekicks', [
    { id: 'm1', metadata: { slot: '1' } },
    { id: 'm2', metadata: { slot: '2' } },
    { id: 'm3', metadata: { slot: '3' } },
    { id: 'm4', metadata: { slot: '4' } },
  ]);
  try {
    const c = await f.units();
    // All instances of one template share one body (one content hash); the placement of each must still follow its own name.
    const web = f.writeUnit('web@.service', f.markerUnit(['Conflicts=web@*.service']));
    const disc = f.writeUnit('web-discovery@.service', f.markerUnit(['MachineOf=web@%i.service']));
    const pinned = f.writeUnit('pinned@.service', f.markerUnit(['MachineMetadata=slot=%i']));
    const byId = f.writeUnit('byid@.service', f.markerUnit(['MachineID=%i']));
    const peer = f.writeUnit('peer@.service', f.markerUnit(['Conflicts=pinned@%i.service', 'MachineMetadata=slot=1 slot=2']));
    await c.submit([web, disc, pinned, byId, peer]);
    const names = [
      ...[1, 2, 3].flatMap((i) => [`web@${i}.service`, `web-discovery@${i}.service`]),
      'pinned@2.service', 'pinned@4.service', 'byid@m3.service', 'byid@m1.service', 'peer@1.service', 'peer@2.service',
    ];
    await c.setState(names, 'launched');
    const rows = await f.waitRows((rows) => names.every((u) => rows.some((r) => r.unit === u && r.active === 'active')), 20_000);
    const p = placements(rows);
    const webOn = [1, 2, 3].map((i) => p[`web@${i}.service`]![0]!);
    assert.equal(new Set(webOn).size, 3, `web copies on three machines: ${JSON.stringify(p)}`);
    for (const i of [1, 2, 3]) assert.deepEqual(p[`web-discovery@${i}.service`], [webOn[i - 1]], `web-discovery@${i} beside web@${i}: ${JSON.stringify(p)}`);
    assert.deepEqual(p['pinned@2.service'], ['m2']);
    assert.deepEqual(p['pinned@4.service'], ['m4']);
    assert.deepEqual(p['byid@m3.service'], ['m3']);
    assert.deepEqual(p['byid@m1.service'], ['m1']);
    // peer@N may not share a machine with pinned@N: pinned@2 is on m2, so peer@2 goes to m1; pinned@1 does not run, so peer@1 may go to m1 or m2.
    assert.deepEqual(p['peer@2.service'], ['m1']);
    assert.ok(['m1', 'm2'].includes(p['peer@1.service']![0]!), JSON.stringify(p));
    await sleep(300);
    for (const i of [1, 2, 3]) assert.deepEqual(f.runningOn(`web-discovery@${i}.service`), [webOn[i - 1]]);
  } finally {
    await f.stop();
  }
});

test('Global units run on every matching machine, including one that joins later', async () => {
  const f = await fleetWith('global', THREE);
  try {
    const c = await f.units();
    await c.setState([f.writeUnit('log.service', f.markerUnit(['Global=true', 'MachineMetadata=disk=ssd']))], 'launched');
    let rows = await f.waitRows((rows) => rows.filter((r) => r.unit === 'log.service' && r.active === 'active').length === 2);
    assert.deepEqual(placements(rows)['log.service'], ['m1', 'm3']);
    await f.start({ id: 'm4', metadata: { disk: 'ssd' } });
    rows = await f.waitRows((rows) => rows.filter((r) => r.unit === 'log.service' && r.active === 'active').length === 3);
    assert.deepEqual(placements(rows)['log.service'], ['m1', 'm3', 'm4']);
    await sleep(300);
    assert.deepEqual(f.runningOn('log.service'), ['m1', 'm3', 'm4']);
  } finally {
    await f.stop();
  }
});

test('the full lifecycle through the CLI: submit, load, start, list, status, cat, stop, unload, destroy', async () => {
  const f = await fleetWith('life', THREE.slice(0, 2));
  try {
    const conn = ['--endpoints', etcd.endpoint, '--cluster', 'life'];
    const unit = f.writeUnit('hello.service', f.markerUnit(['MachineMetadata=disk=hdd']));
    let r = await cli('units', 'submit', unit, ...conn);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'Unit hello.service submitted\n');
    r = await cli('units', 'list-unit-files', ...conn);
    assert.match(r.stdout, /^UNIT +HASH +DSTATE +STATE +TARGET\nhello\.service +[0-9a-f]{7} +inactive +inactive +-$/m);
    r = await cli('units', 'load', 'hello.service', ...conn);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Unit hello\.service loaded on m2\/127\.0\.0\.1$/m);
    assert.deepEqual(f.runningOn('hello.service'), [], 'loaded is not started');
    r = await cli('units', 'start', 'hello.service', ...conn);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Unit hello\.service launched on m2/m);
    r = await cli('units', 'list-units', '--full', ...conn);
    assert.match(r.stdout, /^UNIT +MACHINE +ACTIVE +SUB +REASON\nhello\.service +m2\.\.\.\/127\.0\.0\.1 +active +running$/m);
    r = await cli('units', 'list-machines', ...conn);
    assert.match(r.stdout, /^m1\.\.\. +127\.0\.0\.1 +disk=ssd,region=east +1 +1024 MiB$/m);
    r = await cli('units', 'status', 'hello.service', '--json', ...conn);
    assert.equal((JSON.parse(r.stdout) as Array<{ active: string }>)[0]!.active, 'active');
    r = await cli('units', 'cat', 'hello.service', ...conn);
    assert.equal(r.stdout, f.markerUnit(['MachineMetadata=disk=hdd']));
    await sleep(300);
    assert.deepEqual(f.runningOn('hello.service'), ['m2']);
    r = await cli('units', 'stop', 'hello.service', ...conn);
    assert.equal(r.code, 0, r.stderr);
    await f.waitRows((rows) => rows.some((x) => x.unit === 'hello.service' && x.active === 'inactive'));
    await sleep(700);
    assert.deepEqual(f.runningOn('hello.service'), [], 'stopped means the process is gone');
    r = await cli('units', 'unload', 'hello.service', ...conn);
    assert.equal(r.code, 0);
    await f.waitRows((rows) => rows.some((x) => x.unit === 'hello.service' && !x.machine));
    r = await cli('units', 'destroy', 'hello.service', ...conn);
    assert.equal(r.stdout, 'Destroyed hello.service\n');
    r = await cli('units', 'cat', 'hello.service', ...conn);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /unit hello\.service is not submitted/);
  } finally {
    await f.stop();
  }
});

test('units verify: templates with %i pass, warnings are printed with their line and exit 0, --strict refuses them', async () => {
  const f = new FleetFixture([etcd.endpoint], 'verify-warnings');
  try {
    const tpl = f.writeUnit('kube@.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata="role=master" "masterid=%i"\n');
    let r = await cli('units', 'verify', tpl);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^ok +\S+kube@\.service\n$/);
    const odd = f.writeUnit('app-discovery@.service', '[Unit]\nMachineOf=app@%i.service\n[Service]\nExecStart=/bin/true\n[X-Fleet]\nConflicts=${APP}@*.service\nMachineMetdata=disk=ssd\n');
    r = await cli('units', 'verify', odd);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^warnings \S+app-discovery@\.service\n/);
    assert.match(r.stdout, /app-discovery@\.service:2: Unit\.MachineOf: MachineOf is an \[X-Fleet\] option; in \[Unit\] neither fleet nor systemd reads it/);
    assert.match(r.stdout, /app-discovery@\.service:6: X-Fleet\.Conflicts: \$\{APP\} is not expanded/);
    assert.match(r.stdout, /app-discovery@\.service:7: X-Fleet\.MachineMetdata: unknown \[X-Fleet\] key MachineMetdata \(did you mean MachineMetadata\?\)/);
    r = await cli('units', 'verify', '--strict', odd);
    assert.equal(r.code, 2);
    assert.match(r.stdout, /^invalid +\S+app-discovery@\.service\n/);
    r = await cli('units', 'verify', '--json', odd);
    assert.equal(JSON.parse(r.stdout)[0].warnings.length, 3);
    // submit prints the warnings and goes on; --strict refuses and nothing reaches etcd.
    const conn = ['--endpoints', etcd.endpoint, '--cluster', 'verify-warnings'];
    r = await cli('units', 'submit', '--strict', odd, ...conn);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--strict: warnings count as errors/);
    assert.deepEqual(await (await f.units()).registry.listUnits(), []);
    r = await cli('units', 'submit', odd, ...conn);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^warning: \S+app-discovery@\.service:2: Unit\.MachineOf/m);
    assert.deepEqual((await (await f.units()).registry.listUnits()).map((u) => u.name), ['app-discovery@.service']);
  } finally {
    await f.stop();
  }
});

test('bad unit files are refused with file:line and nothing reaches etcd', async () => {
  const f = await fleetWith('bad', []);
  try {
    const conn = ['--endpoints', etcd.endpoint, '--cluster', 'bad'];
    const bad = f.writeUnit('bad.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\nMachineOf=x.service\nMachineMetdata=a=b\n');
    const r = await cli('units', 'submit', bad, ...conn);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.service:6: X-Fleet\.MachineMetdata: unknown \[X-Fleet\] key MachineMetdata \(did you mean MachineMetadata\?\)/);
    assert.match(r.stderr, /bad\.service:\d+: .*Global/);
    const v = await cli('units', 'verify', bad);
    assert.equal(v.code, 2);
    const cyc1 = f.writeUnit('a.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineOf=b.service\n');
    const cyc2 = f.writeUnit('b.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineOf=a.service\n');
    const c = await cli('units', 'submit', cyc1, cyc2, ...conn);
    assert.equal(c.code, 2);
    assert.match(c.stderr, /MachineOf cycle a\.service -> b\.service -> a\.service/);
    assert.deepEqual(await (await f.units()).registry.listUnits(), []);
  } finally {
    await f.stop();
  }
});
