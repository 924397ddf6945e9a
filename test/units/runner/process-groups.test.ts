/** Process groups as the process runner's cgroup stand-in, against real processes. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { waitFor, readOr, groupProcesses, alive, assertGroupGone, setup } from './process-fixture';

test('background children of the main process are stopped with it', async (t) => {
  const { dir, runner } = setup(t);
  const childFile = path.join(dir, 'child');
  await runner.start('forker.service', `[Service]\nExecStart=/bin/sh -c 'sleep 1000 & echo $! > ${childFile}; exec sleep 1000'\n`);
  const child = Number(await waitFor('the child pid', () => readOr(childFile).trim() || undefined));
  const pgid = (await runner.state('forker.service')).mainPid!;
  assert.ok(alive(child));
  await runner.stop('forker.service');
  assertGroupGone(pgid);
  assert.ok(!alive(child) || groupProcesses(pgid).some((p) => p.pid === child && p.stat.startsWith('Z')), 'the background child is gone');
});
