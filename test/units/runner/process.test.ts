/**
 * The process runner as a UnitRunner, against real processes: which units it refuses,
 * starting a unit again, removing units and closing the runner.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { FlotillaError } from '../../../src/errors';
import { assertGroupGone, setup, LOOP } from './process-fixture';

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
