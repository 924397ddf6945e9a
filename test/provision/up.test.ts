/**
 * End to end: `up` boots the 3-node example cluster on QEMU from its generated first-boot
 * config, and the cluster is proved healthy from the outside; `down` leaves nothing behind.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { generateKeyPair } from '../../src/config/ssh-keys';
import { loadSpecFile } from '../../src/config/load';
import { clusterDir } from '../../src/provision/local/cluster';
import { sshConnect, sshExec } from '../../src/provision/local/ssh';
import { connectRecord, downLocal, etcdctlCommand, sshAuth, upLocal, type ClusterRecord } from '../../src/provision/local/up';
import { UnitsClient } from '../../src/units/client';
import { cli } from '../helpers/cli';

const EXAMPLE = path.join(__dirname, '..', '..', 'examples', 'three-node.yaml');

test('up boots the 3-node example: pinned SSH, etcd over TLS, agents with metadata, a unit placed; down cleans up', { timeout: 30 * 60_000 }, async () => {
  const spec = { ...loadSpecFile(EXAMPLE), name: 'e2e' };
  await downLocal(spec.name); // a previous run that died mid-way
  let record: ClusterRecord | undefined;
  try {
    const events: string[] = [];
    ({ record } = await upLocal({ spec, progress: (e) => e.state === 'done' && events.push(`${e.phase} ${e.seconds!.toFixed(1)}s`) }));
    console.log(`# up phases: ${events.join(', ')}`);
    for (const n of record.nodes) console.log(`# ${n.name}: ${JSON.stringify(record.timeline[n.name])} cpu ${record.cpuSeconds[n.name]}s`);

    // up again: reports the running cluster, changes nothing.
    const again = await upLocal({ spec });
    assert.equal(again.already, true);
    assert.equal(again.record.createdAt, record.createdAt);

    for (const n of record.nodes) {
      // SSH with the pinned host key works; any other key is refused.
      const c = await sshConnect({ host: '127.0.0.1', port: n.sshPort, netns: record.netns }, n.hostPublicKey, sshAuth(record), 30_000);
      try {
        assert.equal((await sshExec(c, 'hostname')).stdout.trim(), n.name);
        if (n.etcdMember) {
          const health = JSON.parse((await sshExec(c, etcdctlCommand(record, 'endpoint health --cluster -w json'))).stdout) as Array<{ health: boolean }>;
          assert.equal(health.length, 3);
          assert.ok(health.every((h) => h.health));
          // TLS is enforced: a client without a certificate is refused.
          const noCert = await sshExec(c, `sudo env ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:${record.clientPort} --cacert=/etc/flotilla/pki/ca.crt --command-timeout=3s get /x`);
          assert.notEqual(noCert.code, 0, 'etcd accepted a client without a certificate');
          const plain = await sshExec(c, `sudo env ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:${record.clientPort} --command-timeout=3s get /x`);
          assert.notEqual(plain.code, 0, 'etcd answered plain HTTP');
        }
      } finally {
        c.end();
      }
      const wrongKey = generateKeyPair('wrong').publicKey;
      await assert.rejects(sshConnect({ host: '127.0.0.1', port: n.sshPort, netns: record.netns }, wrongKey, sshAuth(record), 15_000), /host key mismatch/);
    }

    // Every agent registered with its metadata; the preloaded hello.service (MachineMetadata
    // region=east) runs on an eligible machine.
    const conn = await connectRecord(record);
    try {
      const machines = await conn.registry.listMachines();
      assert.deepEqual(
        machines.map((m) => [m.address, m.metadata]).sort(),
        spec.nodes.map((n) => [n.address, n.metadata]).sort(),
      );
      const units = new UnitsClient(conn.registry);
      const rows = await units.waitFor(['hello.service'], (rows) => rows.some((r) => r.active === 'active'), 5 * 60_000);
      const host = machines.find((m) => m.id === rows.find((r) => r.active === 'active')!.machine)!;
      assert.equal(host.metadata.region, 'east');
    } finally {
      await conn.close();
    }
    const status = await cli('status', '--name', 'e2e', '--json');
    assert.equal(status.code, 0, status.stderr);
    assert.equal((JSON.parse(status.stdout) as { healthy: boolean }).healthy, true);
  } finally {
    const pids = record?.nodes.map((n) => fs.existsSync(n.pidFile) ? Number(fs.readFileSync(n.pidFile, 'utf8')) : 0).filter(Boolean) ?? [];
    const r = await cli('down', '--name', 'e2e');
    assert.equal(r.code, 0, r.stderr);
    // Nothing left: no QEMU process, no files, no namespace.
    for (const pid of pids) assert.equal(fs.existsSync(`/proc/${pid}`), false, `QEMU ${pid} still running`);
    assert.equal(fs.existsSync(clusterDir('e2e')), false);
    assert.doesNotMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), /flotilla-e2e/);
    assert.match((await cli('down', '--name', 'e2e')).stdout, /nothing to remove/);
  }
});
