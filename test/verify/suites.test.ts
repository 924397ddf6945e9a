/**
 * Built-in suites and custom checks against real things: a 3-member etcd cluster with TLS
 * (etcdctl run on the "nodes" over SSH, member list and TLS from the host), the sshd
 * fixture as a node that is not a Flotilla node (the node suite must fail there, for the
 * right reasons), fleets of fleetd machines (healthy, deliberately violated, failover),
 * YAML checks, and the CLI end to end.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveInventory, type Inventory } from '../../src/cluster/inventory';
import { VerifyCluster } from '../../src/verify/cluster';
import { runChecks } from '../../src/verify/runner';
import { etcdSuite } from '../../src/verify/suites/etcd';
import { nodeSuite } from '../../src/verify/suites/node';
import { fleetSuite } from '../../src/verify/suites/fleet';
import { failoverSuite } from '../../src/verify/suites/failover';
import { discoverySuite } from '../../src/verify/suites/discovery';
import { checksFromFile, loadChecksText } from '../../src/verify/checks/yaml';
import { registerTest, testsToChecks, registeredTests } from '../../src/verify/checks/api';
import { Registry } from '../../src/units/registry';
import type { CheckResult } from '../../src/verify/types';
import { startSshd, type Sshd } from '../fixtures/sshd';
import { etcdctl, startEtcd, startEtcdCluster, type EtcdCluster, type SingleEtcd } from '../fixtures/etcd';
import { FleetFixture } from '../fixtures/fleet';
import { makeTempDir, removeTempDir, sleep } from '../fixtures/proc';
import { cli } from '../helpers/cli';
import { findAll, parseXml } from './xml';

let sshd: Sshd;
let etcd3: EtcdCluster;
let plain: SingleEtcd;
let dir: string;
before(async () => {
  dir = makeTempDir('flotilla-verify-suites');
  [sshd, etcd3, plain] = await Promise.all([startSshd(), startEtcdCluster(3, { tls: true }), startEtcd()]);
  fs.writeFileSync(path.join(dir, 'id'), sshd.clientPrivateKey, { mode: 0o600 });
});
after(async () => {
  await Promise.all([sshd?.stop(), etcd3?.stop(), plain?.stop()]);
  removeTempDir(dir);
});

/** Inventory whose nodes all log in to the sshd fixture (this machine). */
function inventory(nodes: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}): Inventory {
  return resolveInventory(
    {
      name: 'vt',
      ssh: { user: sshd.user, privateKeyFile: path.join(dir, 'id') },
      nodes: nodes.map((n) => ({ address: '127.0.0.1', hostKey: sshd.hostKeyPublic, ssh: { host: '127.0.0.1', port: sshd.port }, ...n })),
      ...extra,
    },
    { baseDir: dir },
  );
}

function tlsInventory(names = ['etcd0', 'etcd1', 'etcd2']): Inventory {
  const t = etcd3.tls!;
  return inventory(
    etcd3.members.map((m, i) => ({ name: names[i], etcdMember: true, etcdEndpoint: m.endpoint })),
    { etcd: { tls: { caFile: t.caFile, certFile: t.clientCertFile, keyFile: t.clientKeyFile }, nodeTls: { caFile: t.caFile, certFile: t.clientCertFile, keyFile: t.clientKeyFile }, etcdctl: '/usr/bin/etcdctl' } },
  );
}

async function run<T>(inv: Inventory, fn: (c: VerifyCluster) => Promise<T>): Promise<T> {
  const c = new VerifyCluster(inv);
  try {
    await c.connect();
    return await fn(c);
  } finally {
    await c.close();
  }
}

const byId = (rs: CheckResult[]) => (id: string, node?: string): CheckResult => {
  const r = rs.find((x) => x.id === id && (node === undefined || x.node === node));
  assert.ok(r, `no result ${id} ${node ?? ''}`);
  return r;
};
const explain = (rs: CheckResult[]): string => rs.map((r) => `${r.status} ${r.id}${r.node ? `[${r.node}]` : ''}: ${r.message}`).join('\n');

test('etcd suite on a 3-member TLS cluster: health, leader, replication, TLS refusal on nodes and from the host', async () => {
  const rs = await run(tlsInventory(), (c) => runChecks(etcdSuite(c, { runId: 't1' }), c, { timeoutMs: 20_000 }));
  assert.ok(rs.every((r) => r.status === 'pass'), explain(rs));
  assert.equal(rs.filter((r) => r.id === 'etcd.health').length, 3);
  assert.match(byId(rs)('etcd.leader').message, /^leader etcd\d \(raft term \d+\)$/);
  assert.match(byId(rs)('etcd.tls-enforced', 'etcd1').message, /^refused: /);
  assert.match(byId(rs)('etcd.tls-host').message, /^refused without a client certificate/);
  // The replication key was cleaned up.
  assert.equal((await etcdctl(etcd3, ['get', '--prefix', '/flotilla-verify/', '--keys-only'])).trim(), '');
});

test('etcd suite notices a member list that differs from the inventory, and a dead member', async () => {
  const rs = await run(tlsInventory(['etcd0', 'etcd1', 'etcd9']), (c) => runChecks(etcdSuite(c, { runId: 't2' }).filter((x) => x.id === 'etcd.members'), c, { timeoutMs: 1500 }));
  assert.equal(rs[0]!.status, 'fail');
  assert.match(rs[0]!.message, /missing etcd9; unexpected etcd2/);
  // A member down: its health fails (with etcdctl's reason), the others pass.
  const m2 = etcd3.members[2]!;
  await m2.stop();
  try {
    const hs = await run(tlsInventory(), (c) => runChecks(etcdSuite(c, { runId: 't3' }).filter((x) => x.id === 'etcd.health'), c, { timeoutMs: 12_000 }));
    assert.deepEqual(hs.map((h) => h.status), ['pass', 'pass', 'fail'], explain(hs));
    assert.match(hs[2]!.message, /member etcd2 .* unhealthy/);
  } finally {
    m2.spawn();
    await m2.waitReady();
  }
});

test('node suite over SSH against a machine that is not a Flotilla node: fails for the right reasons', async () => {
  const me = os.hostname().split('.')[0]!.toLowerCase();
  const inv = inventory([{ name: /^[a-z0-9-]+$/.test(me) ? me : 'x', etcdMember: true }, { name: 'not-this-host' }], { etcd: { endpoints: [plain.endpoint] } });
  const rs = await run(inv, (c) => runChecks(nodeSuite(c), c, { timeoutMs: 8000 }));
  const r = byId(rs);
  if (/^[a-z0-9-]+$/.test(me)) assert.equal(r('node.hostname', me).status, 'pass', explain(rs));
  assert.equal(r('node.hostname', 'not-this-host').status, 'fail');
  assert.match(r('node.hostname', 'not-this-host').message, new RegExp(`hostname is "${me}", want "not-this-host"`));
  const files = r('node.files', 'not-this-host');
  assert.equal(files.status, 'fail');
  assert.match(files.message, /missing: \/etc\/flotilla\/fleetd\.json, /);
  // Plain-HTTP etcd in this inventory: no PKI is expected on the nodes (test/verify/suites/node-files.test.ts has the TLS side).
  assert.ok(!files.message.includes('/etc/flotilla/pki/'), `no PKI expected with plain etcd: ${files.message}`);
  assert.equal(r('node.first-boot', 'not-this-host').status, 'fail');
  assert.match(r('node.first-boot', 'not-this-host').message, /cloud-init status is "not run"|neither cloud-init nor an Ignition result|cloud-init/);
  assert.equal(r('node.agent', 'not-this-host').status, 'fail');
  assert.ok(rs.filter((x) => x.id === 'node.etcd-service').length === 1, 'etcd unit checked on members only');
  assert.ok(rs.every((x) => x.status !== 'error'), explain(rs));
});

test('YAML custom checks over SSH (file, command, port, http from the node) and etcd-key from the host', async () => {
  const server = http.createServer((req, res) => res.writeHead(req.url === '/health' ? 200 : 503).end(req.url === '/health' ? 'all good' : 'down'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const hport = (server.address() as { port: number }).port;
  await etcdctl(plain, ['put', '/vt/config/mode', 'blue']);
  try {
    const inv = inventory([{ name: 'n1', etcdMember: true }], { etcd: { endpoints: [plain.endpoint] } });
    const text = [
      'file:',
      `  ${sshd.dir}/sshd_config: {exists: true, contains: ["Port ${sshd.port}", "/^PasswordAuthentication no$/m"]}`,
      '  /nonexistent/flotilla: {exists: false}',
      '  /etc/hostname: {exists: true, mode: "0600"}', // wrong on purpose
      'command:',
      '  "echo hello; echo warn >&2; exit 3": {exit-status: 3, stdout: [hello], stderr: [warn]}',
      '  "printf abc": {stdout: ["/^abd$/"]}', // wrong on purpose
      'port:',
      `  tcp:${sshd.port}: {listening: true}`,
      'http:',
      `  http://127.0.0.1:${hport}/health: {status: 200, body: [good]}`,
      `  http://127.0.0.1:${hport}/other: {status: 200}`, // 503 on purpose
      'etcd-key:',
      '  /vt/config/mode: {value: blue}',
      '  /vt/config/: {prefix: true}',
      '  /vt/absent: {exists: true}', // wrong on purpose
    ].join('\n');
    const rs = await run(inv, (c) => runChecks(checksFromFile(loadChecksText(text, 'checks.yaml', ['n1']), c), c, { timeoutMs: 5000 }));
    const status = Object.fromEntries(rs.map((r) => [r.id, r.status]));
    assert.deepEqual(status, {
      [`file:${sshd.dir}/sshd_config`]: 'pass',
      'file:/nonexistent/flotilla': 'pass',
      'file:/etc/hostname': 'fail',
      'command:echo hello; echo warn >&2; exit 3': 'pass',
      'command:printf abc': 'fail',
      [`port:tcp:${sshd.port}`]: 'pass',
      [`http:http://127.0.0.1:${hport}/health`]: 'pass',
      [`http:http://127.0.0.1:${hport}/other`]: 'fail',
      'etcd-key:/vt/config/mode': 'pass',
      'etcd-key:/vt/config/': 'pass',
      'etcd-key:/vt/absent': 'fail',
    }, explain(rs));
    assert.match(byId(rs)('file:/etc/hostname').message, /mode is 0[0-7]{3}, want 0600/);
    assert.match(byId(rs)('command:printf abc').message, /stdout lacks \/\^abd\$\//);
    assert.match(byId(rs)(`http:http://127.0.0.1:${hport}/other`).message, /status 503, want 200/);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('TypeScript tests (kola-style): ssh, mustSsh, etcd; clusterSize skips; failures reported', async () => {
  if (!registeredTests().some((t) => t.name === 'vt.ok')) {
    registerTest({
      name: 'vt.ok',
      tags: ['smoke'],
      async run(c) {
        const out = await c.mustSsh(c.nodes[0]!, 'echo $((6 * 7))');
        if (out.trim() !== '42') c.fail(`got ${out}`);
        const etcd = await c.etcd();
        await etcd.put('/vt/ts').value('1');
        c.log(`etcd has ${(await etcd.get('/vt/ts').string()) ?? 'nothing'}`);
      },
    });
  }
  const tests = [
    ...registeredTests().filter((t) => t.name === 'vt.ok'),
    { name: 'vt.big', clusterSize: 5, run: async () => undefined },
    { name: 'vt.bad', tags: ['smoke'], run: async (c: { ssh: (n: string, cmd: string) => Promise<{ code: number | null }>; fail(m: string): never }) => { const r = await c.ssh('n1', 'exit 9'); if (r.code !== 0) c.fail(`exit ${r.code}`); } },
  ];
  const inv = inventory([{ name: 'n1', etcdMember: true }], { etcd: { endpoints: [plain.endpoint] } });
  const rs = await run(inv, (c) => runChecks(testsToChecks(tests as never, c), c, { timeoutMs: 5000 }));
  assert.deepEqual(rs.map((r) => [r.name, r.status]), [['vt.ok', 'pass'], ['vt.big', 'skip'], ['vt.bad', 'fail']], explain(rs));
  assert.equal(rs[0]!.message, 'etcd has 1');
  assert.equal(rs[2]!.message, 'exit 9');
  const tagged = await run(inv, async (c) => testsToChecks(tests as never, c, { tags: ['smoke'] }).map((x) => x.name));
  assert.deepEqual(tagged, ['vt.ok', 'vt.bad']);
});

test('fleet suite: a healthy fleet passes; a deliberately violated schedule is caught rule by rule', async () => {
  const f = new FleetFixture([plain.endpoint], 'vtfleet');
  try {
    await f.start({ id: 'm1', metadata: { region: 'east' } });
    await f.start({ id: 'm2', metadata: { region: 'west' } });
    const c = await f.units();
    const unit = (name: string, x: string[]): string => f.writeUnit(name, f.markerUnit(x));
    await c.setState([unit('east.service', ['MachineMetadata=region=east']), unit('db.service', []), unit('backup.service', ['MachineOf=db.service']), unit('agent.service', ['Global=true']), unit('web@1.service', ['Conflicts=web@*.service']), unit('web@2.service', ['Conflicts=web@*.service'])], 'launched');
    await f.waitRows((rows) => rows.filter((r) => r.active === 'active').length === 7);
    const inv = inventory([{ name: 'm1', machineId: 'm1', metadata: { region: 'east' } }, { name: 'm2', machineId: 'm2', metadata: { region: 'west' } }], { etcd: { endpoints: [plain.endpoint] }, registry: { keyPrefix: '/flotilla/vtfleet/' } });
    const rs = await run(inv, (cl) => runChecks(fleetSuite(cl), cl, { timeoutMs: 10_000 }));
    assert.ok(rs.every((r) => r.status === 'pass'), explain(rs));
    assert.match(byId(rs)('fleet.units').message, /^6 launched units active$/);
  } finally {
    await f.stop();
  }

  // A schedule no engine would write, put straight into the registry by a fenced writer.
  const reg = await Registry.connect({ endpoints: [plain.endpoint], cluster: 'vtbad' });
  const leases = [];
  try {
    const now = new Date().toISOString();
    for (const [id, region] of [['b1', 'east'], ['b2', 'west']] as const) {
      leases.push(await reg.registerMachine({ id, metadata: { region }, address: '127.0.0.1', capacity: { cpus: 1, memoryMiB: 512 }, startedAt: now, version: 'test' }, 30));
    }
    const lead = await reg.campaign('tester', { ttlSeconds: 30 });
    const body = (x: string[]): string => `[Service]\nExecStart=/bin/true\n${x.length ? `\n[X-Fleet]\n${x.join('\n')}\n` : ''}`;
    const units: Array<[string, string[], string[]]> = [
      ['east.service', ['MachineMetadata=region=east'], ['b2']], // wrong machine
      ['a.service', ['Conflicts=b.service'], ['b1']],
      ['b.service', [], ['b1']], // conflicts with a, same machine
      ['db.service', [], ['b1']],
      ['backup.service', ['MachineOf=db.service'], ['b2']], // apart from its target
      ['everywhere.service', ['Global=true'], ['b1']], // missing on b2
    ];
    for (const [name, x, on] of units) {
      const { job } = await reg.submitUnit(name, body(x), { desiredState: 'launched' });
      for (const m of on) {
        await reg.assign(m, name, job.hash, lead.fence);
        await reg.reportState(m, leases[m === 'b1' ? 0 : 1]!, { unit: name, hash: job.hash, active: name === 'db.service' ? 'failed' : 'active', sub: 'running' });
      }
    }
    const inv = inventory([{ name: 'b1', machineId: 'b1', metadata: { region: 'east' } }, { name: 'b2', machineId: 'b2', metadata: { region: 'north' } }], { etcd: { endpoints: [plain.endpoint] }, registry: { keyPrefix: '/flotilla/vtbad/' } });
    const rs = await run(inv, (cl) => runChecks(fleetSuite(cl), cl, { timeoutMs: 1200 }));
    const r = byId(rs);
    assert.ok(rs.every((x) => x.status === (x.id === 'fleet.replaces' ? 'pass' : 'fail')), explain(rs));
    assert.match(r('fleet.machines').message, /b2: metadata region=west \(want north\)/);
    assert.match(r('fleet.units').message, /db\.service on b2? ?.*is failed\/running|db\.service on b1 \(b1\) is failed\/running/);
    assert.deepEqual(r('fleet.units').details?.failedUnits, [{ node: 'b1', unit: 'db.service' }]);
    assert.match(r('fleet.placement').message, /east\.service is on b2 \(b2\) whose metadata \{"region":"west"\} does not match MachineMetadata region=east/);
    assert.match(r('fleet.conflicts').message, /a\.service and b\.service conflict but share b1/);
    assert.match(r('fleet.machine-of').message, /backup\.service is on b2 \(b2\) but its MachineOf target db\.service is on b1/);
    assert.match(r('fleet.global').message, /global everywhere\.service is missing on matching machine b2/);
    assert.ok(r('fleet.units').attempts > 1, 'converging checks were retried until the deadline');
    await lead.resign();
  } finally {
    for (const l of leases) await l.revoke().catch(() => undefined);
    await reg.close();
  }
});

test('failover (destructive, opt-in): the agent of the busiest node is stopped, its units move, it is restored', async () => {
  const f = new FleetFixture([plain.endpoint], 'vtfail');
  try {
    const p1 = f.spawn({ id: 'f1' });
    const p2 = f.spawn({ id: 'f2' });
    const c = await f.units();
    await c.setState([f.writeUnit('mover.service', f.markerUnit([]))], 'launched');
    const rows = await f.waitRows((rs) => rs.some((r) => r.unit === 'mover.service' && r.active === 'active'), 30_000);
    for (let i = 0; i < 100 && (await c.listMachines()).length < 2; i++) await sleep(100);
    const where = rows.find((r) => r.unit === 'mover.service')!.machine!;
    const pid = (id: string): number => (id === 'f1' ? p1.pid : p2.pid);
    const node = (id: string) => ({ name: id, machineId: id, agent: { stopCommand: `kill -STOP ${pid(id)}`, startCommand: `kill -CONT ${pid(id)}` } });
    const inv = inventory([node('f1'), node('f2')], { etcd: { endpoints: [plain.endpoint] }, registry: { keyPrefix: '/flotilla/vtfail/' } });
    const rs = await run(inv, (cl) => runChecks(failoverSuite(cl, { timeoutMs: 20_000 }), cl));
    assert.equal(rs[0]!.status, 'pass', explain(rs));
    assert.match(rs[0]!.message, new RegExp(`1 unit \\(mover\\.service\\) moved off ${where} in \\d+\\.\\d s; agent restored`));
    const after = await f.waitRows((r) => r.some((x) => x.unit === 'mover.service' && x.active === 'active'));
    assert.notEqual(after.find((r) => r.unit === 'mover.service')!.machine, where);
  } finally {
    await f.stop();
  }
});

test('discovery: announced services found and probed from the node; a dead endpoint and malformed values fail', async () => {
  const server = http.createServer((_q, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const prefix = '/flotilla/vtdisc/services/';
  await etcdctl(plain, ['put', `${prefix}web/n1`, JSON.stringify({ host: '127.0.0.1', port, protocol: 'http', path: '/' })]);
  try {
    const inv = inventory([{ name: 'n1', etcdMember: true }], { etcd: { endpoints: [plain.endpoint] }, registry: { keyPrefix: '/flotilla/vtdisc/' }, discovery: { services: ['web'] } });
    let rs = await run(inv, (c) => runChecks(discoverySuite(c), c, { timeoutMs: 3000 }));
    assert.deepEqual(rs.map((r) => r.status), ['pass', 'pass'], explain(rs));
    await etcdctl(plain, ['put', `${prefix}db/n1`, JSON.stringify({ host: '127.0.0.1', port: 1 })]);
    await etcdctl(plain, ['put', `${prefix}junk/n1`, 'not json']);
    rs = await run(inv, (c) => runChecks(discoverySuite(c), c, { timeoutMs: 1500 }));
    assert.deepEqual(rs.map((r) => r.status), ['fail', 'fail'], explain(rs));
    assert.match(rs[0]!.message, /junk\/n1: value is not a JSON object/);
    assert.match(rs[1]!.message, /db\/n1 127\.0\.0\.1:1 \(probed from n1\)/);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('CLI: flotilla verify with --format junit --out, exit codes, --checks errors located; units ssh by node', async () => {
  const t = etcd3.tls!;
  const invFile = path.join(dir, 'inv.yaml');
  const nodes = etcd3.members.map((m, i) => `  - {name: etcd${i}, address: 127.0.0.1, etcdMember: true, etcdEndpoint: "${m.endpoint}", hostKey: "${sshd.hostKeyPublic}", ssh: {host: 127.0.0.1, port: ${sshd.port}}}`);
  fs.writeFileSync(invFile, [
    'name: vtcli',
    `ssh: {user: ${sshd.user}, privateKeyFile: id}`,
    'nodes:',
    ...nodes,
    `etcd: {etcdctl: /usr/bin/etcdctl, tls: {caFile: ${t.caFile}, certFile: ${t.clientCertFile}, keyFile: ${t.clientKeyFile}}, nodeTls: {caFile: ${t.caFile}, certFile: ${t.clientCertFile}, keyFile: ${t.clientKeyFile}}}`,
    '',
  ].join('\n'));
  const out = path.join(dir, 'report.xml');
  const ok = await cli('verify', '--inventory', invFile, '--suite', 'etcd', '--format', 'junit', '--out', out);
  assert.equal(ok.code, 0, ok.stderr + ok.stdout);
  const root = parseXml(fs.readFileSync(out, 'utf8'));
  assert.equal(root.attrs.failures, '0');
  assert.ok(findAll(root, 'testcase').some((c) => c.attrs.name === 'member healthy [etcd1]'));

  const checks = path.join(dir, 'checks.yaml');
  fs.writeFileSync(checks, 'command:\n  "false": {exit-status: 0}\n');
  const failed = await cli('verify', '--inventory', invFile, '--checks', checks, '--format', 'tap');
  assert.equal(failed.code, 1);
  assert.match(failed.stdout, /^1\.\.3$/m);
  assert.equal((failed.stdout.match(/^not ok /gm) ?? []).length, 3);

  fs.writeFileSync(checks, 'comand:\n  "true": {}\n');
  const bad = await cli('verify', '--inventory', invFile, '--checks', checks);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /checks\.yaml:1:1: comand: unknown resource type \(did you mean "command"\?\)/);

  const usage = await cli('verify', '--inventory', invFile, '--suite', 'nodes');
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /unknown suite nodes \(choose from node, etcd, fleet, discovery, failover\)/);

  const sshOut = await cli('units', 'ssh', '--inventory', invFile, 'etcd2', '--', 'sh', '-c', 'echo "$0 $1"; exit 5', 'a b', 'c');
  assert.equal(sshOut.code, 5);
  assert.equal(sshOut.stdout, 'a b c\n');
});

