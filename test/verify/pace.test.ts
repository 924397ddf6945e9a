/**
 * Emulated nodes: the inventory's `pace`, how it scales a run's default deadlines (and
 * nothing the user set explicitly), how a local cluster's pace is read from its running
 * QEMU, and the first-boot judgement that avoids starting Python on a slow node.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateHostKey } from '../../src/ssh/keys';
import { EMULATED_TIME_SCALE, loadInventoryText, timeScale } from '../../src/cluster/inventory';
import { runCheck } from '../../src/verify/runner';
import { scaledSshOptions, type VerifyCluster } from '../../src/verify/cluster';
import { judgeFirstBootProbe } from '../../src/verify/suites/node';
import { CheckFailed, type Check } from '../../src/verify/types';
import { clusterPace, nodeEmulated } from '../../src/provision/local/inventory';
import { FlotillaError } from '../../src/errors';
import { makeTempDir, removeTempDir, sleep } from '../fixtures/proc';

const host = generateHostKey('h').publicKey;
const client = generateHostKey('c').privateKey;

function inventoryText(extra: string[]): string {
  return ['name: demo', ...extra, `ssh: {privateKey: ${JSON.stringify(client)}}`, 'nodes:', `  - {name: core1, address: 10.99.0.11, role: controller, hostKey: "${host}", ssh: {port: 22}}`].join('\n');
}

test('inventory pace: emulated scales defaults; a bad value is located', () => {
  const dir = makeTempDir('flotilla-pace');
  try {
    const file = path.join(dir, 'inv.yaml');
    assert.equal(loadInventoryText(inventoryText([]), file).pace, undefined);
    const inv = loadInventoryText(inventoryText(['pace: emulated']), file);
    assert.equal(inv.pace, 'emulated');
    assert.equal(timeScale(inv), EMULATED_TIME_SCALE);
    assert.equal(timeScale({ pace: 'native' }), 1);
    let err: unknown;
    try {
      loadInventoryText(inventoryText(['pace: glacial']), file);
    } catch (e) {
      err = e;
    }
    assert.ok(FlotillaError.is(err));
    assert.match(err.problems.map((p) => `${p.line}:${p.path}: ${p.message}`).join('\n'), /^2:pace: must be one of native, emulated, got "glacial"/m);
  } finally {
    removeTempDir(dir);
  }
});

test('SSH defaults scale with the pace; options the caller gives are kept', () => {
  assert.deepEqual(scaledSshOptions(undefined, 1), { readyTimeoutMs: 10_000, keepaliveIntervalMs: 5_000, commandTimeoutMs: 60_000 });
  assert.deepEqual(scaledSshOptions({ readyTimeoutMs: 1234 }, 6), { readyTimeoutMs: 1234, keepaliveIntervalMs: 30_000, commandTimeoutMs: 360_000 });
});

test("the runner scales a check's own deadline and the default one by timeScale", async () => {
  const cluster = { inventory: { nodes: [] } } as unknown as VerifyCluster;
  const slow = (timeoutMs?: number): Check => ({
    id: 'slow',
    suite: 't',
    name: 'takes 600 ms',
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    run: async (ctx) => {
      await sleep(600);
      if (ctx.signal.aborted) throw new CheckFailed('aborted');
      return 'done';
    },
  });
  assert.equal((await runCheck(slow(200), cluster)).status, 'fail', 'own deadline 200 ms at scale 1');
  assert.equal((await runCheck(slow(200), cluster, { timeScale: 15 })).status, 'pass', 'own deadline 200 ms × 15');
  assert.equal((await runCheck(slow(), cluster, { timeoutMs: 200, timeScale: 15 })).status, 'fail', 'an explicit run deadline is not scaled');
  assert.equal((await runCheck(slow(), cluster, { timeScale: 1 })).status, 'pass', 'default 30 s');
});

test("a local cluster's pace comes from its running QEMU's accelerator", async () => {
  const dir = makeTempDir('flotilla-pace-qemu');
  // Stand-ins for QEMU: processes whose command lines carry the accelerator arguments.
  const tcg = spawn('sh', ['-c', 'sleep 30', 'qemu-system-x86_64', '-machine', 'pc,accel=tcg'], { stdio: 'ignore' });
  const kvm = spawn('sh', ['-c', 'sleep 30', 'qemu-system-x86_64', '-accel', 'kvm'], { stdio: 'ignore' });
  try {
    const pid = (name: string, p: number): string => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, `${p}\n`);
      return f;
    };
    const tcgNode = { pidFile: pid('tcg.pid', tcg.pid!) };
    const kvmNode = { pidFile: pid('kvm.pid', kvm.pid!) };
    const gone = { pidFile: path.join(dir, 'missing.pid') };
    assert.equal(nodeEmulated(tcgNode), true);
    assert.equal(nodeEmulated(kvmNode), false);
    assert.equal(nodeEmulated(gone), undefined);
    assert.equal(clusterPace({ nodes: [kvmNode, tcgNode] as never }), 'emulated');
    assert.equal(clusterPace({ nodes: [kvmNode, gone] as never }), 'native');
    assert.equal(clusterPace({ nodes: [gone] as never }), undefined);
  } finally {
    tcg.kill('SIGKILL');
    kvm.kill('SIGKILL');
    removeTempDir(dir);
  }
});

test('first boot judged from cloud-init result.json, the status CLI, or the Ignition markers', () => {
  const probe = (stdout: string) => ({ code: 0, stdout, stderr: '' });
  const fails = (stdout: string, format: 'cloud-config' | 'ignition' | undefined, re: RegExp): void => {
    assert.throws(() => judgeFirstBootProbe(probe(stdout), format), (e: unknown) => e instanceof CheckFailed && re.test(e.message));
  };
  const result = (v1: unknown) => `::result\n${JSON.stringify({ v1 })}\n`;
  assert.deepEqual(judgeFirstBootProbe(probe(result({ datasource: 'DataSourceNoCloud [seed=/dev/vdb]', errors: [] })), 'cloud-config'), { pass: 'cloud-init done (datasource DataSourceNoCloud [seed=/dev/vdb])' });
  fails(result({ datasource: 'DataSourceNoCloud', errors: ['write_files failed'] }), 'cloud-config', /finished with errors: write_files failed/);
  fails('::result\n{not json', 'cloud-config', /result.json is not JSON/);
  fails(`::status\n${JSON.stringify({ status: 'running' })}`, 'cloud-config', /still running/);
  assert.deepEqual(judgeFirstBootProbe(probe(`::status\n${JSON.stringify({ status: 'done', errors: [], datasource: 'nocloud' })}`), undefined), { pass: 'cloud-init done (datasource nocloud)' });
  fails('::no-cloud-init\n', 'cloud-config', /neither cloud-init nor an Ignition result/);
  fails('', 'cloud-config', /printed nothing usable/);
  assert.deepEqual(judgeFirstBootProbe(probe('::ignition /var/lib/flotilla/ignition.done\n::no-cloud-init\n'), 'ignition'), { ignition: ['/var/lib/flotilla/ignition.done'] });
  fails('::no-cloud-init\n', 'ignition', /Ignition has not finished/);
});
