/**
 * End to end, every example spec boots and verifies: `up` from the spec file as it is (renamed
 * so as not to meet a user's cluster), then the verification `flotilla verify --cluster NAME`
 * runs (runVerify on the cluster's inventory: node, etcd, fleet and discovery suites), then
 * `down` leaves nothing. Each example is booted once in the suite (a VM boot is ~50 CPU-s under
 * TCG): five-node-ignition.yaml here, three-node.yaml by the smoke test (smoke.test.ts),
 * single-node.yaml by the containers test (test/provision/containers.test.ts, which verifies it
 * before its own checks). The first test here fails when an example is booted and verified by no
 * test. Wall time, CPU seconds and the host's load are printed.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { loadSpecFile } from '../../src/config/load';
import { clusterDir } from '../../src/cluster/store';
import { inventoryFromRecord } from '../../src/provision/local/inventory';
import { runningPid } from '../../src/provision/local/qemu';
import { downLocal, upLocal } from '../../src/provision/local/up';
import { withNode } from '../helpers/node-ssh';
import { type ClusterRecord } from '../../src/cluster/store';
import { runVerify } from '../../src/verify/verify';

const ROOT = path.join(__dirname, '..', '..');
const EXAMPLES = path.join(ROOT, 'examples');
/** Booted here; the others by the tests that name them (and verify the cluster). */
const BOOTED_HERE = ['five-node-ignition.yaml'];
const log = (msg: string): void => void process.stderr.write(`# ${msg}\n`);
const load = (): string => os.loadavg().map((l) => l.toFixed(2)).join(' ');

function testFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? testFiles(path.join(dir, e.name)) : e.name.endsWith('.test.ts') ? [path.join(dir, e.name)] : []));
}

test('every example spec is booted and verified by the suite (here, by the smoke test or by the containers test)', () => {
  // A test that boots an example names it as path.join(..., 'examples', FILE) and verifies (runVerify, or flotilla smoke).
  const others = testFiles(path.join(ROOT, 'test')).filter((f) => f !== __filename).map((f) => fs.readFileSync(f, 'utf8')).filter((t) => /\brunVerify\(|cli\('smoke'/.test(t) && /\bupLocal\(|cli\('smoke'/.test(t));
  const examples = fs.readdirSync(EXAMPLES).filter((x) => x.endsWith('.yaml'));
  assert.ok(examples.length >= 3);
  for (const f of examples) {
    const named = new RegExp(`'examples', '${f.replace('.', '\\.')}'`);
    assert.ok(BOOTED_HERE.includes(f) || others.some((t) => named.test(t)), `examples/${f} is booted and verified by no test`);
  }
  assert.ok(!others.some((t) => /'examples', 'five-node-ignition\.yaml'/.test(t)), 'five-node-ignition.yaml is booted here only');
});

async function bootAndVerify(file: string, name: string, extra?: (record: ClusterRecord) => Promise<void>): Promise<void> {
  const spec = { ...loadSpecFile(path.join(EXAMPLES, file)), name };
  await downLocal(name); // a previous run that died mid-way
  let record: ClusterRecord | undefined;
  const t0 = Date.now();
  log(`${file}: up as ${name} (${spec.nodes.length} nodes, ${spec.format}); load ${load()}`);
  try {
    ({ record } = await upLocal({ spec, progress: (e) => e.state === 'done' && e.phase !== 'image' && log(`${name}: ${e.phase} done in ${e.seconds!.toFixed(1)} s`) }));
    const upSeconds = (Date.now() - t0) / 1000;
    const t1 = Date.now();
    const { report } = await runVerify({ inventory: inventoryFromRecord(record), spec });
    const verifySeconds = (Date.now() - t1) / 1000;
    const cpu = Object.values(record.cpuSeconds);
    log(
      `${file}: up ${upSeconds.toFixed(1)} s, verify ${verifySeconds.toFixed(1)} s (${report.summary.pass}/${report.summary.total} passed, ${report.summary.skip} skipped), ` +
        `total ${((Date.now() - t0) / 1000).toFixed(1)} s; QEMU CPU ${cpu.map((c) => c.toFixed(0)).join('+')} s; load ${load()}`,
    );
    const bad = report.results.filter((r) => r.status === 'fail' || r.status === 'error');
    assert.deepEqual(bad.map((r) => `${r.id}${r.node ? ` (${r.node})` : ''}: ${r.message}`), [], `${file}: failed checks`);
    assert.equal(report.ok, true);
    assert.ok(report.connections.every((c) => c.ok), `${file}: every node reached`);
    assert.equal(record.nodes.length, spec.nodes.length);
    assert.ok(record.nodes.every((n) => n.machineId), `${file}: every agent registered`);
    await extra?.(record);
  } finally {
    const nodes = record?.nodes ?? [];
    await downLocal(name);
    for (const n of nodes) assert.equal(runningPid(n.pidFile), undefined, `${name}/${n.name}: QEMU still running`);
    assert.equal(fs.existsSync(clusterDir(name)), false);
    assert.doesNotMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), new RegExp(`flotilla-${name}\\b`));
  }
}

test('examples/five-node-ignition.yaml boots and verifies; the workers got the snippet\'s /etc/motd', { timeout: 40 * 60_000 }, async () => {
  await bootAndVerify('five-node-ignition.yaml', 'ex-fleet5', async (record) => {
    for (const n of record.nodes) {
      const motd = await withNode(record, n, (c) => c.mustExec('cat /etc/motd'));
      if (n.name.startsWith('wrk')) assert.equal(motd, 'Flotilla worker\n', `${n.name}: /etc/motd from the snippet`);
      else assert.notEqual(motd, 'Flotilla worker\n', `${n.name}: the snippet is for workers only`);
    }
    assert.equal(record.nodes.filter((n) => n.etcdMember).length, 3);
  });
});
