/**
 * End to end, the CI smoke test: `flotilla smoke` boots the 3-node example cluster on QEMU
 * from its generated first-boot config, verifies it over pinned SSH (node, etcd, fleet and
 * discovery suites) and writes the JUnit report and artifacts; the cluster is left up
 * (--leave-up) so that it can also be proved healthy from the outside here; `down` then
 * leaves nothing behind. The JUnit report stays in test-artifacts/smoke/ (FLOTILLA_TEST_ARTIFACTS).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { generateKeyPair } from '../../src/ssh/keys';
import { loadSpecFile } from '../../src/config/load';
import { clusterDir } from '../../src/cluster/store';
import { connectRecord } from '../../src/provision/up';
import { downLocal, upLocal } from '../../src/provision/local/up';
import { etcdctlCommand, memberEtcdctl } from '../../src/cluster/etcdctl';
import { nodeSshTarget } from '../../src/cluster/store';
import { withNode } from '../helpers/node-ssh';
import { NodeConnection } from '../../src/ssh';
import { readRecord, type ClusterRecord } from '../../src/cluster/store';
import { UnitsClient } from '../../src/units/client';
import { cli } from '../helpers/cli';
import { findAll, parseXml } from '../verify/xml';

const ROOT = path.join(__dirname, '..', '..');
const EXAMPLE = path.join(ROOT, 'examples', 'three-node.yaml');
const ARTIFACTS = path.resolve(process.env.FLOTILLA_TEST_ARTIFACTS ?? path.join(ROOT, 'test-artifacts'), 'smoke');

test('smoke on the 3-node example: every check passes, JUnit and artifacts kept; from outside: pinned SSH, etcd TLS, agents, a unit placed; down cleans up', { timeout: 30 * 60_000 }, async () => {
  const spec = { ...loadSpecFile(EXAMPLE), name: 'e2e' };
  await downLocal(spec.name); // a previous run that died mid-way
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  const junit = path.join(ARTIFACTS, 'junit.xml');
  let record: ClusterRecord | undefined;
  try {
    const smoke = await cli('smoke', '--spec', EXAMPLE, '--name', 'e2e', '--format', 'junit', '--out', junit, '--artifacts', ARTIFACTS, '--leave-up');
    for (const line of smoke.stderr.split('\n').filter((l) => /done in|checks passed|verifying/.test(l))) console.log(`# ${line}`);
    record = readRecord('e2e');
    assert.ok(record, `smoke left no cluster record: ${smoke.stderr.slice(-2000)}`);
    for (const n of record.nodes) console.log(`# ${n.name}: ${JSON.stringify(record.timeline[n.name])}${record.cpuSeconds?.[n.name] !== undefined ? ` cpu ${record.cpuSeconds[n.name]} s` : ''}`);
    assert.ok(fs.existsSync(junit), `smoke wrote no report (exit ${smoke.code}): ${smoke.stderr.slice(-3000)}`);

    // The JUnit report: well-formed, every check passed (skips are "not applicable").
    const xml = parseXml(fs.readFileSync(junit, 'utf8'));
    const cases = findAll(xml, 'testcase');
    const bad = cases.filter((c) => c.children.some((ch) => ch.name === 'failure' || ch.name === 'error'));
    console.log(`# smoke: ${cases.length} checks, report ${junit}`);
    assert.equal(bad.length, 0, `failed checks:\n${bad.map((c) => `${c.attrs.classname} ${c.attrs.name}: ${c.children.map((ch) => ch.attrs.message).join(' ')}`).join('\n')}`);
    assert.equal(smoke.code, 0, smoke.stderr.slice(-2000));
    assert.deepEqual(xml.attrs.failures, '0');
    const suites = new Set(cases.map((c) => c.attrs.classname!.split('.').pop()));
    for (const s of ['node', 'etcd', 'fleet']) assert.ok(suites.has(s), `suite ${s} ran`);
    const passedPerNode = (pattern: RegExp): string[] => cases.filter((c) => pattern.test(c.attrs.name!) && !c.children.some((ch) => ch.name === 'skipped')).map((c) => c.attrs.name!);
    assert.equal(passedPerNode(/member healthy/).length, 3, 'etcd health checked on every member');
    assert.equal(passedPerNode(/first boot finished/).length, 3);

    // Artifacts: the report in every format, each node's console, rendered config and timeline.
    for (const f of ['report.json', 'report.xml', 'report.tap', 'report.txt', 'boot-timeline.svg', 'index.json']) assert.ok(fs.existsSync(path.join(ARTIFACTS, f)), `artifact ${f}`);
    for (const n of record.nodes) {
      assert.match(fs.readFileSync(path.join(ARTIFACTS, n.name, 'console.log'), 'utf8'), /FLOTILLA-READY ssh/); // the kernel boots quiet; the image's own markers are there
      assert.ok(fs.readdirSync(path.join(ARTIFACTS, n.name, 'config')).length > 0, `${n.name} rendered config kept`);
      assert.match(fs.readFileSync(path.join(ARTIFACTS, n.name, 'boot-timeline.svg'), 'utf8'), /^<svg|<\?xml/);
    }

    // up again: reports the running cluster, changes nothing.
    const again = await upLocal({ spec });
    assert.equal(again.already, true);
    assert.equal(again.record.createdAt, record.createdAt);

    const rec = record;
    for (const n of rec.nodes) {
      // SSH with the pinned host key works; any other key is refused.
      await withNode(rec, n, async (c) => {
        assert.equal((await c.exec('hostname')).stdout.trim(), n.name);
        if (n.etcdMember) {
          const health = JSON.parse((await c.exec(etcdctlCommand('endpoint health --cluster -w json', memberEtcdctl(rec)), { sudo: true })).stdout) as Array<{ health: boolean }>;
          assert.equal(health.length, 3);
          assert.ok(health.every((h) => h.health));
          // TLS is enforced: a client without a certificate is refused.
          const noCert = await c.exec(`sudo env ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:${rec.clientPort} --cacert=/etc/flotilla/pki/ca.crt --command-timeout=3s get /x`);
          assert.notEqual(noCert.code, 0, 'etcd accepted a client without a certificate');
          const plain = await c.exec(`sudo env ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:${rec.clientPort} --command-timeout=3s get /x`);
          assert.notEqual(plain.code, 0, 'etcd answered plain HTTP');
        }
      });
      const wrongKey = generateKeyPair('wrong').publicKey;
      const wrong = new NodeConnection({ ...nodeSshTarget(record, n), hostKey: wrongKey }, { readyTimeoutMs: 15_000 });
      await assert.rejects(wrong.connect(), /host key mismatch/);
      await wrong.close();
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
