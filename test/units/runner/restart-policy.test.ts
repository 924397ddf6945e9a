/** Restart= and the start limit in the process runner, against real processes. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { sleep, waitFor, readOr, setup, subs } from './process-fixture';

test('Restart=on-failure restarts a crashing command until it stays up', async (t) => {
  const { dir, runner } = setup(t);
  const counter = path.join(dir, 'count');
  const unit = [
    '[Service]',
    `Environment=C=${counter}`,
    'Restart=on-failure',
    'RestartSec=100ms',
    "ExecStart=/bin/sh -c 'n=$(cat $C 2>/dev/null || echo 0); n=$((n+1)); echo $n > $C; [ $n -ge 3 ] && exec sleep 30; exit 1'",
  ].join('\n');
  const started = Date.now();
  await runner.start('flaky.service', unit);
  const st = await waitFor('the third run to stay up', async () => {
    const s = await runner.state('flaky.service');
    return readOr(counter).trim() === '3' && s.sub === 'running' ? s : undefined;
  });
  assert.equal(st.active, 'active');
  assert.ok(Date.now() - started >= 200, 'RestartSec is honoured between runs');
  await sleep(300);
  assert.equal(readOr(counter).trim(), '3', 'no restart while it keeps running');
});

test('a crash loop ends failed after StartLimitBurst starts', async (t) => {
  const { dir, runner, events } = setup(t);
  const runs = path.join(dir, 'runs');
  const unit = [
    '[Unit]',
    'StartLimitBurst=3',
    'StartLimitIntervalSec=10s',
    '[Service]',
    `Environment=RUNS=${runs}`,
    'Restart=on-failure',
    'RestartSec=50ms',
    "ExecStart=/bin/sh -c 'echo run >> $RUNS; exit 2'",
  ].join('\n');
  await runner.start('crash.service', unit);
  const st = await waitFor('the unit to fail', async () => {
    const s = await runner.state('crash.service');
    return s.active === 'failed' ? s : undefined;
  });
  assert.equal(st.result, 'start-limit-hit');
  assert.equal(readOr(runs).trim().split('\n').length, 3);
  assert.equal(subs(events, 'crash.service').filter((s) => s === 'activating/auto-restart').length, 3);
  await sleep(200);
  assert.equal(readOr(runs).trim().split('\n').length, 3, 'no more runs after failing');
  // An explicit start resets the limit (like systemctl reset-failed + start).
  await runner.start('crash.service', unit);
  await waitFor('a fourth run', () => readOr(runs).trim().split('\n').length >= 4);
});

test('Restart=no: a crash leaves the unit failed with its exit status', async (t) => {
  const { runner } = setup(t);
  await runner.start('once.service', "[Service]\nExecStart=/bin/sh -c 'sleep 0.1; exit 4'\n");
  const st = await waitFor('the crash', async () => {
    const s = await runner.state('once.service');
    return s.active === 'failed' ? s : undefined;
  });
  assert.deepEqual([st.sub, st.result], ['failed', 'exit-code']);
});

test('Restart=always restarts after a clean exit too; on-success does not restart a failure', async (t) => {
  const { dir, runner } = setup(t);
  const runs = path.join(dir, 'runs');
  await runner.start('always.service', `[Service]\nRestart=always\nRestartSec=50ms\nExecStart=/bin/sh -c 'echo x >> ${runs}; sleep 0.05'\n`);
  await waitFor('three runs', () => readOr(runs).trim().split('\n').length >= 3);
  await runner.stop('always.service');
  assert.equal((await runner.state('always.service')).active, 'inactive');

  await runner.start('onsuccess.service', "[Service]\nRestart=on-success\nRestartSec=50ms\nExecStart=/bin/sh -c 'exit 1'\n");
  await waitFor('failure', async () => (await runner.state('onsuccess.service')).active === 'failed');
});
