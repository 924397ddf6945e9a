/**
 * The process runner against real processes: small shell loops that write marker files.
 * Every test closes its runner and removes its temp dir, also when it fails.
 */
import { test, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlotillaError } from '../../src/errors';
import { ProcessRunner, type ProcessRunnerOptions } from '../../src/units/runner/process';
import type { UnitStatus } from '../../src/units/runner/types';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function readOr(file: string, fallback = ''): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** Processes in group `pgid` according to ps, with their state letters. */
function groupProcesses(pgid: number): Array<{ pid: number; stat: string }> {
  const out = execFileSync('ps', ['-eo', 'pid=,pgid=,stat='], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length === 3 && Number(f[1]) === pgid)
    .map((f) => ({ pid: Number(f[0]), stat: f[2]! }));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Nothing of the group runs any more. `kill -0 -PGID` would be the whole check, but this
 * container's PID 1 does not reap orphans, so a killed shell's `sleep` can linger as a
 * zombie: those are allowed, nothing else is.
 */
function assertGroupGone(pgid: number): void {
  let groupExists = true;
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, 'ESRCH');
    groupExists = false;
  }
  if (groupExists) {
    const live = groupProcesses(pgid).filter((p) => !p.stat.startsWith('Z'));
    assert.deepEqual(live, [], `processes left in group ${pgid}`);
  }
}

interface Fixture {
  dir: string;
  runner: ProcessRunner;
  events: UnitStatus[];
}

function setup(t: TestContext, options: ProcessRunnerOptions = {}): Fixture {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-runner-'));
  const runner = new ProcessRunner({ defaultTimeoutStopMs: 2000, logDir: path.join(dir, 'logs'), ...options });
  const events: UnitStatus[] = [];
  runner.onStateChange((s) => events.push(s));
  t.after(async () => {
    await runner.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir, runner, events };
}

function subs(events: UnitStatus[], name: string): string[] {
  return events.filter((e) => e.name === name).map((e) => `${e.active}/${e.sub}`);
}

const LOOP = (mark: string): string =>
  `[Unit]\nDescription=marker loop\n\n[Service]\nEnvironment=MARK=${mark}\nExecStart=/bin/sh -c 'while :; do date +%%s%%N > $MARK; sleep 0.1; done'\n`;

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

test('Environment= (with quoting) and EnvironmentFile= reach the process; nothing else is inherited', async (t) => {
  const { dir, runner } = setup(t);
  const out = path.join(dir, 'env');
  const envFile = path.join(dir, 'env.conf');
  fs.writeFileSync(envFile, ['# comment', '; another', 'FROM_FILE=file value', "QUOTED='single  quoted'", 'DQ="a \\"b\\" c"', 'OVERRIDE=from-file', ''].join('\n'));
  process.env.FLOTILLA_TEST_LEAK = 'leaked';
  t.after(() => delete process.env.FLOTILLA_TEST_LEAK);
  const unit = [
    '[Service]',
    'Type=oneshot',
    `Environment="SPACED=one two" PLAIN=x OVERRIDE=from-unit OUT=${out}`,
    'Environment=UNIT=%n',
    `EnvironmentFile=${envFile}`,
    `EnvironmentFile=-${path.join(dir, 'missing.conf')}`,
    "ExecStart=/bin/sh -c 'env > $OUT'",
  ].join('\n');
  await runner.start('env.service', unit);
  const env = Object.fromEntries(
    readOr(out)
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  assert.equal(env.SPACED, 'one two');
  assert.equal(env.PLAIN, 'x');
  assert.equal(env.UNIT, 'env.service');
  assert.equal(env.FROM_FILE, 'file value');
  assert.equal(env.QUOTED, 'single  quoted');
  assert.equal(env.DQ, 'a "b" c');
  assert.equal(env.OVERRIDE, 'from-file', 'EnvironmentFile= overrides Environment=');
  assert.equal(env.FLOTILLA_TEST_LEAK, undefined, "the runner's own environment is not inherited");
  assert.ok(env.PATH?.includes('/usr/bin'));
  const st = await runner.state('env.service');
  assert.deepEqual([st.active, st.sub, st.result], ['inactive', 'dead', 'success'], 'a oneshot without RemainAfterExit ends dead');

  // A required EnvironmentFile that is missing fails the start.
  await assert.rejects(
    runner.start('noenv.service', `[Service]\nEnvironmentFile=${path.join(dir, 'missing.conf')}\nExecStart=/bin/true\n`),
    /EnvironmentFile=.*missing\.conf/,
  );
  assert.equal((await runner.state('noenv.service')).result, 'resources');
});

test('command lines: ${VAR} stays one word, $VAR splits, $$ is a literal $, specifiers expand, no shell', async (t) => {
  const { dir, runner } = setup(t);
  const out = path.join(dir, 'args');
  const unit = [
    '[Service]',
    'Type=oneshot',
    `Environment="WORDS=a b" OUT=${out}`,
    `WorkingDirectory=${dir}`,
    // sh is the program; everything after "sh" is its $@, printed one per line.
    "ExecStart=/bin/sh -c 'printf \"%%s\\n\" \"$@\" > $OUT; pwd >> $OUT' sh ${WORDS} $WORDS $$LIT x${WORDS}y %i %p $UNSET ';' '>' /dev/null",
  ].join('\n');
  await runner.start('args@inst.service', unit);
  assert.deepEqual(readOr(out).trim().split('\n'), ['a b', 'a', 'b', '$LIT', 'xa by', 'inst', 'args', ';', '>', '/dev/null', fs.realpathSync(dir)]);
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

test('units the process runner cannot run are refused with file:line', async (t) => {
  const { runner } = setup(t);
  await assert.rejects(runner.start('fork.service', '[Service]\nType=forking\nExecStart=/usr/sbin/daemon\nUser=nobody\n'), (err: unknown) => {
    assert.ok(FlotillaError.is(err));
    assert.equal(err.code, 'invalid-input');
    assert.deepEqual(
      err.problems.map((p) => p.line),
      [4, 2],
    );
    assert.match(err.message, /fork\.service:2: .*Type=forking is not supported/);
    assert.match(err.message, /fork\.service:4: .*User= is not supported/);
    return true;
  });
  assert.equal((await runner.state('fork.service')).load, 'bad-setting');
  await assert.rejects(runner.start('t.timer', '[Timer]\nOnCalendar=daily\n'), /only \.service units/);
  await assert.rejects(runner.start('tpl@.service', '[Service]\nExecStart=/bin/true\n'), /template cannot be started/);
  await assert.rejects(runner.start('two.service', '[Service]\nExecStart=/bin/true\nExecStart=/bin/true\n'), /more than one ExecStart/);
  await assert.rejects(runner.start('restart.service', '[Service]\nRestartSec=soon\nExecStart=/bin/true\n'), /bad time span/);
});

test('starting again: same text is a no-op, different text is a conflict', async (t) => {
  const { dir, runner } = setup(t);
  const text = LOOP(path.join(dir, 'mark'));
  await runner.start('loop.service', text);
  const pid = (await runner.state('loop.service')).mainPid;
  await runner.start('loop.service', text);
  assert.equal((await runner.state('loop.service')).mainPid, pid, 'not restarted');
  await assert.rejects(runner.start('loop.service', `${text}\n# changed\n`), (err: unknown) => FlotillaError.is(err) && err.code === 'conflict');
  await runner.stop('loop.service');
  await runner.start('loop.service', `${text}\n# changed\n`);
  assert.notEqual((await runner.state('loop.service')).mainPid, pid);
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

test('remove forgets the unit; close stops every unit it started', async (t) => {
  const { dir, runner } = setup(t);
  await runner.start('a.service', LOOP(path.join(dir, 'a')));
  await runner.start('b.service', LOOP(path.join(dir, 'b')));
  const pa = (await runner.state('a.service')).mainPid!;
  const pb = (await runner.state('b.service')).mainPid!;
  await runner.remove('a.service');
  assert.deepEqual(runner.list(), ['b.service']);
  assert.equal((await runner.state('a.service')).load, 'not-found');
  assertGroupGone(pa);
  await runner.close();
  assertGroupGone(pb);
  await assert.rejects(runner.start('c.service', LOOP(path.join(dir, 'c'))), /runner is closed/);
});

test('CPUQuota= and MemoryMax= are accepted as placement requests; the unit log says they are not enforced', async (t) => {
  const { dir, runner } = setup(t);
  const mark = path.join(dir, 'mark');
  await runner.start('limited.service', LOOP(mark).replace('[Service]\n', '[Service]\nCPUQuota=50%\nMemoryMax=64M\n'));
  assert.equal((await runner.state('limited.service')).active, 'active');
  assert.match(readOr(path.join(dir, 'logs', 'limited.service.log')), /^flotilla: CPUQuota=50% MemoryMax=64M: used for placement; not enforced \(the process runner has no cgroups\)$/m);
});
