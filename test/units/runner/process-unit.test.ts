/**
 * One unit's lifecycle in the process runner, against real processes: the sub-states
 * of start and stop, hooks, stop timeouts, Type=oneshot and Type=exec, cancelled starts.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../../../src/errors';
import { sleep, waitFor, readOr, groupProcesses, alive, assertGroupGone, setup, subs, LOOP } from './process-fixture';

test('start runs the command; stop ends it and leaves nothing in its process group', async (t) => {
  const { dir, runner, events } = setup(t);
  const mark = path.join(dir, 'mark');
  await runner.start('loop.service', LOOP(mark));
  const st = await runner.state('loop.service');
  assert.equal(st.active, 'active');
  assert.equal(st.sub, 'running');
  assert.equal(st.load, 'loaded');
  const pgid = st.mainPid!;
  assert.ok(pgid > 0);
  const first = await waitFor('the marker', () => readOr(mark).trim() || undefined);
  await waitFor('the marker to change', () => readOr(mark).trim() !== first && readOr(mark).trim() !== '');
  const seen = groupProcesses(pgid).map((p) => p.pid);
  assert.ok(seen.includes(pgid), 'the main process leads its own process group');
  assert.deepEqual(runner.list(), ['loop.service']);

  await runner.stop('loop.service');
  const after = await runner.state('loop.service');
  assert.deepEqual([after.active, after.sub, after.result, after.mainPid], ['inactive', 'dead', 'success', undefined]);
  assert.equal(alive(pgid), false, 'kill -0 MAINPID fails after stop');
  assertGroupGone(pgid);
  for (const pid of seen) assert.ok(!alive(pid) || groupProcesses(pgid).some((p) => p.pid === pid && p.stat.startsWith('Z')), `pid ${pid} is gone`);
  const last = readOr(mark);
  await sleep(350);
  assert.equal(readOr(mark), last, 'the marker no longer changes');
  assert.deepEqual(subs(events, 'loop.service'), [
    'activating/start-pre',
    'activating/start',
    'active/running',
    'deactivating/stop-sigterm',
    'inactive/dead',
  ]);
  await runner.stop('loop.service'); // stopping again is a no-op
  await runner.stop('never-started.service');
  assert.deepEqual(await runner.state('never-started.service'), { name: 'never-started.service', load: 'not-found', active: 'inactive', sub: 'dead' });
});

test('a failing ExecStartPre fails the start; ExecStart never runs; ExecStopPost still runs', async (t) => {
  const { dir, runner, events } = setup(t);
  const ran = path.join(dir, 'ran');
  const post = path.join(dir, 'post');
  const unit = [
    '[Service]',
    `Environment=RAN=${ran} POST=${post}`,
    "ExecStartPre=-/bin/sh -c 'exit 7'",
    "ExecStartPre=/bin/sh -c 'exit 3'",
    "ExecStart=/bin/sh -c 'echo yes > $RAN; sleep 30'",
    "ExecStopPost=/bin/sh -c 'echo $SERVICE_RESULT > $POST'",
  ].join('\n');
  await assert.rejects(runner.start('pre.service', unit), (err: unknown) => {
    assert.ok(FlotillaError.is(err));
    assert.equal(err.code, 'external');
    assert.match(err.message, /ExecStartPre=\/bin\/sh -c exit 3 exited with status 3/);
    return true;
  });
  const st = await runner.state('pre.service');
  assert.deepEqual([st.active, st.sub, st.result], ['failed', 'failed', 'exit-code']);
  assert.equal(fs.existsSync(ran), false, 'ExecStart never ran');
  assert.equal(readOr(post).trim(), 'exit-code');
  assert.deepEqual(subs(events, 'pre.service'), ['activating/start-pre', 'deactivating/stop-post', 'failed/failed']);
  assert.match(readOr(path.join(dir, 'logs', 'pre.service.log')), /exit 7 exited with status 7 \(ignored/);
});

test('ExecStop runs with $MAINPID, before the remaining processes are signalled; then ExecStopPost', async (t) => {
  const { dir, runner, events } = setup(t);
  const stopMark = path.join(dir, 'stop');
  const postMark = path.join(dir, 'post');
  const unit = [
    '[Service]',
    `Environment=STOP=${stopMark} POST=${postMark}`,
    'ExecStart=/bin/sleep 30',
    "ExecStop=/bin/sh -c 'echo $MAINPID $SERVICE_RESULT > $STOP; kill $MAINPID'",
    "ExecStopPost=/bin/sh -c 'echo $SERVICE_RESULT $EXIT_CODE $EXIT_STATUS > $POST'",
  ].join('\n');
  await runner.start('stopper.service', unit);
  const pid = (await runner.state('stopper.service')).mainPid!;
  await runner.stop('stopper.service');
  assert.equal(readOr(stopMark).trim(), `${pid} success`);
  assert.equal(readOr(postMark).trim(), 'success killed TERM');
  const seq = subs(events, 'stopper.service');
  // stop-sigterm may come between them when the killed main process is not reaped yet.
  assert.ok(seq.indexOf('deactivating/stop') >= 0 && seq.indexOf('deactivating/stop') < seq.indexOf('deactivating/stop-post'), seq.join(' '));
  assert.equal(seq[seq.length - 1], 'inactive/dead');
  assertGroupGone(pid);
});

test('a process that ignores SIGTERM is killed after TimeoutStopSec and the unit is marked failed', async (t) => {
  const { dir, runner, events } = setup(t);
  const ready = path.join(dir, 'ready');
  await runner.start('stubborn.service', `[Service]\nTimeoutStopSec=300ms\nExecStart=/bin/sh -c 'trap "" TERM; touch ${ready}; while :; do sleep 0.05; done'\n`);
  await waitFor('the trap to be set', () => fs.existsSync(ready));
  const pgid = (await runner.state('stubborn.service')).mainPid!;
  const t0 = Date.now();
  await runner.stop('stubborn.service');
  assert.ok(Date.now() - t0 >= 280, `waited for TimeoutStopSec (${Date.now() - t0} ms)`);
  const st = await runner.state('stubborn.service');
  assert.deepEqual([st.active, st.result], ['failed', 'timeout']);
  assert.ok(subs(events, 'stubborn.service').includes('deactivating/stop-sigkill'));
  assertGroupGone(pgid);
});

test('Type=oneshot: RemainAfterExit keeps it active/exited; a failing command fails the start', async (t) => {
  const { dir, runner } = setup(t);
  const mark = path.join(dir, 'done');
  await runner.start('setup.service', `[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'echo 1 >> ${mark}'\nExecStart=/bin/sh -c 'echo 2 >> ${mark}'\n`);
  assert.equal(readOr(mark), '1\n2\n', 'several ExecStart= run in order, before start resolves');
  assert.deepEqual([(await runner.state('setup.service')).active, (await runner.state('setup.service')).sub], ['active', 'exited']);
  await runner.stop('setup.service');
  assert.equal((await runner.state('setup.service')).sub, 'dead');

  await assert.rejects(runner.start('bad-oneshot.service', "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'exit 5'\n"), /exited with status 5/);
  assert.equal((await runner.state('bad-oneshot.service')).active, 'failed');
});

test('Type=exec: a missing executable fails the start', async (t) => {
  const { runner } = setup(t);
  await assert.rejects(runner.start('missing.service', '[Service]\nType=exec\nExecStart=/nonexistent/binary --flag\n'), /could not be executed/);
  assert.deepEqual((await runner.state('missing.service')).active, 'failed');
});

test('stop during ExecStartPre cancels the start', async (t) => {
  const { dir, runner } = setup(t);
  const ran = path.join(dir, 'ran');
  const starting = runner.start('slow.service', `[Service]\nExecStartPre=/bin/sleep 30\nExecStart=/bin/sh -c 'touch ${ran}; sleep 30'\n`);
  await waitFor('start-pre', async () => (await runner.state('slow.service')).sub === 'start-pre');
  await runner.stop('slow.service');
  await assert.rejects(starting, (err: unknown) => FlotillaError.is(err) && err.code === 'conflict');
  assert.equal((await runner.state('slow.service')).active, 'inactive');
  assert.equal(fs.existsSync(ran), false);
});

test('CPUQuota= and MemoryMax= are accepted as placement requests; the unit log says they are not enforced', async (t) => {
  const { dir, runner } = setup(t);
  const mark = path.join(dir, 'mark');
  await runner.start('limited.service', LOOP(mark).replace('[Service]\n', '[Service]\nCPUQuota=50%\nMemoryMax=64M\n'));
  assert.equal((await runner.state('limited.service')).active, 'active');
  assert.match(readOr(path.join(dir, 'logs', 'limited.service.log')), /^flotilla: CPUQuota=50% MemoryMax=64M: used for placement; not enforced \(the process runner has no cgroups\)$/m);
});
