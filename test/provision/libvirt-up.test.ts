/**
 * End to end on the real system libvirtd: `up` with the libvirt launcher boots 2 domains from
 * their rendered Ignition configs (fw_cfg), both answer SSH with their pinned host keys, the two
 * guests reach each other over the cluster L2 (UDP links on 127.0.0.1: no bridge, no libvirt
 * network, no namespace): ping both ways, etcdctl on node2 over TLS to node1's etcd, and node2's
 * agent registering in it. The record serves `status`, `ssh`, `verify --cluster`; `down`
 * leaves no domain, pool, file or QEMU process. A launch that fails half-way (the second node's
 * SSH port taken) leaves nothing either.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadSpecObject } from '../../src/config/load';
import { generateKeyPair } from '../../src/ssh/keys';
import type { ResolvedSpec } from '../../src/config/spec';
import { defaultPorts, domainName } from '../../src/provision/libvirt/domain-xml';
import { libvirtDir, list } from '../../src/provision/libvirt/driver';
import { libvirtMachinery } from '../../src/provision/libvirt/replace-node';
import { downLibvirt, upLibvirt } from '../../src/provision/libvirt/up';
import { replaceNodes } from '../../src/provision/replace';
import { clusterDir } from '../../src/cluster/store';
import { ensureImage } from '../../src/provision/image';
import { NodeConnection } from '../../src/ssh';
import { etcdctlCommand, memberEtcdctl } from '../../src/cluster/etcdctl';
import { nodeSshTarget } from '../../src/cluster/store';
import { withNode } from '../helpers/node-ssh';
import { connectRecord, nodeRunning, type PhaseEvent } from '../../src/provision/up';
import { readRecord, type ClusterRecord } from '../../src/cluster/store';
import { cli, cliProcess } from '../helpers/cli';
import { ensureLibvirtd, libvirtQemuPids, stopLibvirtd, virsh } from '../fixtures/libvirtd';
import { verifyReplaced } from '../../src/verify/verify';

const NAME = `lvup${process.pid}`;
const NODES = ['node1', 'node2'];
const log = (msg: string): void => void process.stderr.write(`# ${msg}\n`);
/** Deadline for one command on a guest: emulated guests on a shared 2-core host were seen taking minutes. */
const SLOW_MS = 180_000;

/** Last resort if the process dies before down ran: domains and pools by name, the files. */
function emergencyCleanup(): void {
  for (const node of NODES) {
    const d = domainName(NAME, node);
    virsh('destroy', d);
    virsh('undefine', d);
    for (const v of virsh('vol-list', '--pool', d).stdout.split('\n')) {
      const vol = v.trim().split(/\s+/)[0];
      if (vol) virsh('vol-delete', '--pool', d, vol);
    }
    virsh('pool-destroy', d);
    virsh('pool-undefine', d);
  }
  fs.rmSync(path.join(libvirtDir(), NAME), { recursive: true, force: true });
  fs.rmSync(clusterDir(NAME), { recursive: true, force: true });
}
process.on('exit', emergencyCleanup);

function testSpec(): ResolvedSpec {
  // A throwaway key passes validation; the cluster then trusts only the key up generates.
  const spec = loadSpecObject({
    name: NAME,
    platform: 'libvirt',
    format: 'ignition',
    // One vCPU each: lean on a 2-core host that other work shares.
    nodes: NODES.map((name, i) => ({ name, cpus: 1, metadata: { index: String(i + 1) } })),
    // One member: node2 reaches etcd only over the cluster L2. (Two members would prove the same
    // and lose quorum whenever one emulated guest stalls on a busy host.)
    etcd: { members: ['node1'], tls: true },
    ssh: { authorizedKeys: [generateKeyPair('throwaway').publicKey] },
  });
  return { ...spec, ssh: { ...spec.ssh, authorizedKeys: [] } };
}

/** Asserts that nothing of the cluster is left in libvirt, on disk or as a process. */
async function assertNothingLeft(): Promise<void> {
  assert.deepEqual(await list({ cluster: NAME }), []);
  const prefix = `flotilla-${NAME}-`;
  assert.deepEqual(virsh('list', '--all', '--name').stdout.split('\n').filter((l) => l.startsWith(prefix)), [], 'no domain');
  assert.deepEqual(virsh('pool-list', '--all', '--name').stdout.split('\n').filter((l) => l.startsWith(prefix)), [], 'no pool');
  assert.equal(fs.existsSync(path.join(libvirtDir(), NAME)), false, 'no volume or console file');
  assert.equal(fs.existsSync(clusterDir(NAME)), false, 'no record, keys or secrets');
  assert.deepEqual(libvirtQemuPids(prefix), [], 'no QEMU process');
}

describe('flotilla up --platform libvirt (real libvirtd, 2 domains)', { timeout: 40 * 60_000 }, () => {
  before(async () => {
    ensureLibvirtd();
    await ensureImage({}, (p) => p.phase === 'done' && log(`image: ${p.step}${p.seconds !== undefined ? ` ${p.seconds}s` : ''}`));
    await downLibvirt(NAME); // a previous run with this PID that died mid-way
  });

  after(async () => {
    try {
      await downLibvirt(NAME);
    } finally {
      stopLibvirtd();
    }
  });

  it('a launch that fails at the second node undoes the first and leaves nothing', async () => {
    // Hold node2's SSH forward port, so its domain cannot be made after node1's was started.
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: defaultPorts(NAME).sshPortBase + 1, exclusive: true }, resolve));
    try {
      const launched: string[] = [];
      await assert.rejects(
        upLibvirt({ spec: testSpec(), progress: (e) => e.phase === 'launch' && e.state === 'info' && e.detail?.includes(' running ') && launched.push(e.detail) }),
        (err: Error) => /node node2: 127\.0\.0\.1:\d+ \(its SSH forward\) is already in use/.test(err.message),
      );
      assert.equal(launched.length, 1, `node1 was started before node2 failed: ${launched.join('; ')}`);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
    await assertNothingLeft();
  });

  let record: ClusterRecord | undefined;

  it('boots both domains: pinned SSH, etcd peers over the cluster L2, agents registered', async () => {
    const events: PhaseEvent[] = [];
    const t0 = Date.now();
    ({ record } = await upLibvirt({ spec: testSpec(), progress: (e) => void events.push(e), timeoutMs: 20 * 60_000 }));
    log(`up: ${((Date.now() - t0) / 1000).toFixed(1)} s in all; phases: ${record.phases.map((p) => `${p.phase} ${p.seconds.toFixed(1)}`).join(', ')}`);
    for (const e of events.filter((e) => e.phase === 'launch' && e.state === 'info')) log(`launch: ${e.detail}${e.seconds !== undefined ? ` (${e.seconds.toFixed(2)} s)` : ''}`);
    for (const n of record.nodes) log(`${n.name}: ${JSON.stringify(record.timeline[n.name])} cpu ${record.cpuSeconds[n.name]} s`);

    assert.equal(record.platform, 'libvirt');
    assert.equal(record.netns, undefined, 'SSH forwards on this host\'s 127.0.0.1');
    assert.deepEqual(readRecord(NAME), record);
    assert.doesNotMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), new RegExp(`flotilla-${NAME}`));
    assert.equal(virsh('net-list', '--name').stdout.trim(), '', 'no libvirt network is active');
    for (const n of record.nodes) {
      assert.equal(n.domain, domainName(NAME, n.name));
      assert.equal(virsh('domstate', n.domain!).stdout.trim(), 'running');
      assert.ok(nodeRunning(n), `${n.name}: its QEMU is found through libvirt's pidfile`);
      assert.ok(n.machineId, `${n.name}: agent registered`);
      const xml = virsh('dumpxml', n.domain!).stdout;
      assert.doesNotMatch(xml, /<interface /, 'no libvirt-managed NIC');
      assert.match(xml, new RegExp(`restrict=on,hostfwd=tcp:127\\.0\\.0\\.1:${n.sshPort}-:22`));
      assert.match(xml, /<entry name='opt\/com\.coreos\/config' file='[^']+\/config\.ign'\/>/, 'Ignition config through fw_cfg');
    }

    const rec = record;
    const [a, b] = rec.nodes as [ClusterRecord['nodes'][number], ClusterRecord['nodes'][number]];
    for (const [n, peer] of [[a, b], [b, a]] as const) {
      await withNode(rec, n, async (c) => {
        assert.equal((await c.exec('hostname', { timeoutMs: SLOW_MS })).stdout.trim(), n.name);
        // Guest to guest over the cluster NIC: node2's frames go through node1's QEMU hub.
        const ping = await c.exec(`ping -c 3 -W 5 ${peer.address}`, { timeoutMs: SLOW_MS });
        assert.equal(ping.code, 0, `${n.name} -> ${peer.name}: ${ping.stdout}${ping.stderr}`);
        assert.match(ping.stdout, /3 received/);
        if (n === b) {
          // TLS to node1's etcd over the L2, with the client certificate delivered to node2.
          const cmd = etcdctlCommand('endpoint health -w json', memberEtcdctl(rec, { endpoints: [`https://${a.address}:${rec.clientPort}`] }));
          const health = await c.exec(cmd, { sudo: true, timeoutMs: SLOW_MS });
          assert.equal(health.code, 0, health.stderr);
          assert.deepEqual((JSON.parse(health.stdout) as Array<{ endpoint: string; health: boolean }>).map((h) => [h.endpoint, h.health]), [[`https://${a.address}:${rec.clientPort}`, true]]);
        }
      }, { readyTimeoutMs: SLOW_MS });
      const wrong = new NodeConnection({ ...nodeSshTarget(rec, n), hostKey: generateKeyPair('wrong').publicKey }, { readyTimeoutMs: SLOW_MS });
      await assert.rejects(wrong.connect(), /host key mismatch/);
      await wrong.close();
    }

    const conn = await connectRecord(record);
    try {
      const machines = await conn.registry.listMachines();
      assert.deepEqual(machines.map((m) => [m.address, m.metadata.index]).sort(), [[a.address, '1'], [b.address, '2']]);
    } finally {
      await conn.close();
    }

    const again = await upLibvirt({ spec: testSpec() });
    assert.equal(again.already, true);
    assert.equal(again.record.createdAt, record.createdAt);
  });

  it('the record serves status, ssh and verify --cluster', async (t) => {
    if (!record) return t.skip('up failed');
    const status = await cli('status', '--name', NAME, '--json');
    assert.equal(status.code, 0, status.stderr);
    assert.equal((JSON.parse(status.stdout) as { healthy: boolean }).healthy, true);
    const ssh = cliProcess(['ssh', '--name', NAME, 'node2', '--', 'hostname'], { timeoutMs: SLOW_MS });
    assert.equal(ssh.code, 0, ssh.stderr);
    assert.equal(ssh.stdout.trim(), 'node2');
    const t0 = Date.now();
    const verify = await cli('verify', '--cluster', NAME, '--suite', 'node,etcd', '--format', 'json', '--retry-timeout', '120000');
    const report = JSON.parse(verify.stdout) as { summary: { pass: number; fail: number; error: number }; results: Array<{ id: string; status: string; message?: string }> };
    log(`verify node,etcd: ${report.summary.pass} pass, ${report.summary.fail} fail, ${report.summary.error} error in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.deepEqual(report.results.filter((r) => r.status === 'fail' || r.status === 'error').map((r) => `${r.id}: ${r.message}`), []);
    assert.equal(verify.code, 0, verify.stderr);
  });

  it('flotilla replace on libvirt: node2 gets a new domain from the same wiring, registers anew, and the cluster verifies', async (t) => {
    if (!record) return t.skip('up failed');
    const before = readRecord(NAME)!;
    const old2 = before.nodes.find((n) => n.name === 'node2')!;
    const oldPid = libvirtQemuPids(`${old2.domain}`)[0];
    const oldUuid = virsh('domuuid', old2.domain!).stdout.trim();
    const t0 = Date.now();
    const r = await replaceNodes({ name: NAME, nodes: ['node2'], verify: verifyReplaced, progress: (e) => e.state === 'done' && e.node && log(`  replace ${e.node} ${e.step} ${e.seconds?.toFixed(1)} s: ${e.detail ?? ''}`) }, libvirtMachinery);
    log(`replace node2 on libvirt: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const x = r.replaced[0]!;
    assert.equal(x.node, 'node2');
    assert.ok(x.newMachineId && x.newMachineId !== old2.machineId, `a new machine ID: ${old2.machineId} -> ${x.newMachineId}`);
    const after = readRecord(NAME)!;
    const new2 = after.nodes.find((n) => n.name === 'node2')!;
    assert.equal(new2.hostPublicKey, old2.hostPublicKey, 'same host key');
    assert.equal(new2.sshPort, old2.sshPort);
    assert.equal(virsh('domstate', new2.domain!).stdout.trim(), 'running');
    // A new machine: the guest's machine ID is the domain UUID (it came back as the old machine before).
    const newUuid = virsh('domuuid', new2.domain!).stdout.trim();
    assert.notEqual(newUuid, oldUuid);
    assert.equal(newUuid.replace(/-/g, ''), x.newMachineId);
    const newPid = libvirtQemuPids(`${new2.domain}`)[0];
    assert.ok(newPid && newPid !== oldPid, `a new QEMU process: ${oldPid} -> ${newPid}`);
    // Wired as before: the same SSH forward, and node2 still reaches node1 over the cluster L2.
    assert.match(virsh('dumpxml', new2.domain!).stdout, new RegExp(`restrict=on,hostfwd=tcp:127\\.0\\.0\\.1:${new2.sshPort}-:22`));
    const ping = await withNode(after, new2, (c) => c.exec(`ping -c 3 -W 5 ${after.nodes[0]!.address}`, { timeoutMs: SLOW_MS }), { readyTimeoutMs: SLOW_MS });
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    record = after;
  });

  it('down removes every domain, volume, pool, file and QEMU process; again: nothing to remove', async (t) => {
    if (!record) return t.skip('up failed');
    const pids = libvirtQemuPids(`flotilla-${NAME}-`);
    assert.equal(pids.length, 2);
    const t0 = Date.now();
    const r = await cli('down', '--name', NAME);
    log(`down: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /stopped 2 VMs \(node1, node2\)/);
    for (const pid of pids) assert.equal(fs.existsSync(`/proc/${pid}`), false, `QEMU ${pid} still running`);
    await assertNothingLeft();
    assert.match((await cli('down', '--name', NAME, '--platform', 'libvirt')).stdout, /nothing to remove/);
  });
});
