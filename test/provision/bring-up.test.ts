/**
 * src/provision/bring-up.ts without a VM: the kernel wait against a console file, and failures
 * that name the node and show its console. The SSH, first-boot and secrets steps run for real in
 * the VM tests (up, replace, smoke).
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeTempDir, removeTempDir } from '../fixtures/proc';
import { nodeFailure, waitKernel, type BootingNode } from '../../src/provision/bring-up';
import { FirstBootWatch } from '../../src/provision/console';
import type { ClusterRecord, NodeRecord } from '../../src/cluster/store';

let dir: string;
before(() => (dir = makeTempDir('flotilla-bring-up')));
after(() => removeTempDir(dir));

function booting(name: string, running: () => boolean, deadline = Date.now() + 10_000): BootingNode {
  const consoleLog = path.join(dir, `${name}.log`);
  const node = { name, consoleLog } as NodeRecord;
  return { record: { format: 'cloud-config' } as ClusterRecord, node, deadline, boot: new FirstBootWatch([{ name, consoleLog, launchedAt: Date.now() }]), running };
}

test('the kernel wait ends when the console shows output, or when the VM is gone, or at the deadline', async () => {
  const b = booting('n1', () => true);
  setTimeout(() => fs.writeFileSync(b.node.consoleLog, 'Linux version 6.1\n'), 300);
  await waitKernel(b);

  const gone = booting('n2', () => false);
  await assert.rejects(waitKernel(gone), /^FlotillaError: node n2: its VM exited before the kernel printed anything\nconsole log: .*n2\.log\n--- last lines ---\n\(no console output\)$/);

  const late = booting('n3', () => true, Date.now() + 300);
  await assert.rejects(waitKernel(late), (e: Error & { code?: string }) => e.code === 'timeout' && /node n3: no console output/.test(e.message));
});

test('a node failure shows the last console lines and keeps its cause', () => {
  const log = path.join(dir, 'tail.log');
  fs.writeFileSync(log, `${Array.from({ length: 30 }, (_, i) => `line ${i}`).join('\n')}\n`);
  const cause = new Error('connection refused');
  const e = nodeFailure({ name: 'wrk1', consoleLog: log }, 'never answered SSH with its pinned host key', cause);
  assert.match(e.message, /^node wrk1: never answered SSH with its pinned host key: connection refused\nconsole log: /);
  assert.ok(e.message.includes('line 29') && !e.message.includes('line 14\n'), 'the last 15 lines');
  assert.equal(e.cause, cause);
});
