/** Flotilla's [X-Fleet] extensions and resource requests from [Service]. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { FlotillaError } from '../../src/errors';
import { checkUnitText } from '../../src/units/client';
import { parseUnitFile } from '../../src/units/unit-file';
import { avoidReason, backoffFor, checkUnitPolicy, defaultUnitPolicy, parseCpu, parseMemory, shouldReschedule } from '../../src/units/unit-policy';
import { parseXFleet } from '../../src/units/xfleet';

function policyOf(text: string, name = 'u.service') {
  const unit = parseUnitFile(text, name);
  return checkUnitPolicy(unit, parseXFleet(unit));
}

test('defaults: no resources, spread, moved when the restart budget is exhausted, 10 s backoff up to 5 min', () => {
  const { policy, problems } = policyOf('[Service]\nExecStart=/bin/true\n');
  assert.deepEqual(problems, []);
  assert.deepEqual(policy, defaultUnitPolicy());
  assert.equal(policy.reschedule, 'on-start-limit');
});

test('extension keys are read; they override CPUQuota= and MemoryMax=', () => {
  const { policy, problems } = policyOf(
    [
      '[Service]',
      'ExecStart=/bin/true',
      'CPUQuota=150%',
      'MemoryMax=1G',
      '[X-Fleet]',
      'X-Flotilla-Placement=pack',
      'X-Flotilla-Reschedule=on-failure',
      'X-Flotilla-RescheduleBackoff=2s',
      'X-Flotilla-RescheduleBackoffMax=1min',
    ].join('\n'),
  );
  assert.deepEqual(problems, []);
  assert.deepEqual(policy, { resources: { cpuMilli: 1500, memoryMiB: 1024 }, placement: 'pack', reschedule: 'on-failure', backoffMs: 2000, backoffMaxMs: 60_000 });
  const over = policyOf('[Service]\nExecStart=/bin/true\nCPUQuota=150%\nMemoryMax=1G\n[X-Fleet]\nX-Flotilla-CPU=0.25\nX-Flotilla-Memory=300M\n');
  assert.deepEqual(over.policy.resources, { cpuMilli: 250, memoryMiB: 300 });
});

test('MemoryMax= as a percentage or infinity asks for no fixed amount; MemoryLimit= is read too', () => {
  assert.equal(policyOf('[Service]\nExecStart=/bin/true\nMemoryMax=50%\n').policy.resources.memoryMiB, 0);
  assert.equal(policyOf('[Service]\nExecStart=/bin/true\nMemoryMax=infinity\n').policy.resources.memoryMiB, 0);
  assert.equal(policyOf('[Service]\nExecStart=/bin/true\nMemoryLimit=512M\n').policy.resources.memoryMiB, 512);
});

test('sizes and CPU amounts', () => {
  assert.equal(parseMemory('1048576'), 1);
  assert.equal(parseMemory('1'), 1, 'rounded up to a whole MiB');
  assert.equal(parseMemory('1.5G'), 1536);
  assert.equal(parseMemory('2T'), 2 * 1024 * 1024);
  assert.throws(() => parseMemory('1GB'), /not a size/);
  assert.equal(parseCpu('0.5'), 500);
  assert.equal(parseCpu('250%'), 2500);
  assert.throws(() => parseCpu('2', true), /not a percentage/);
  assert.throws(() => parseCpu('two'), /not a number of CPUs/);
});

test('bad values and unknown extensions are reported with file:line, the nearest key suggested', () => {
  const text = [
    '[Service]', // 1
    'ExecStart=/bin/true', // 2
    'CPUQuota=lots', // 3
    '[X-Fleet]', // 4
    'X-Flotilla-Memroy=1G', // 5
    'X-Flotilla-Placement=scatter', // 6
    'X-Flotilla-Reschedule=always', // 7
    'X-Flotilla-RescheduleBackoff=10ms', // 8
    'X-Flotilla-CPU=-1', // 9
  ].join('\n');
  const { problems } = policyOf(text);
  assert.deepEqual(problems.map((p) => p.line), [3, 5, 6, 7, 8, 9]);
  assert.match(problems[1]!.message, /unknown Flotilla extension X-Flotilla-Memroy \(did you mean X-Flotilla-Memory\?\)/);
  assert.match(problems[2]!.message, /one of spread, pack/);
  assert.match(problems[3]!.message, /one of no, on-start-limit, on-failure/);
  assert.match(problems[4]!.message, /at least 100ms/);
  // The same problems stop a submit before anything reaches etcd.
  try {
    checkUnitText('u.service', text, 'units/u.service');
    assert.fail('expected problems');
  } catch (err) {
    assert.ok(FlotillaError.is(err));
    assert.equal(err.code, 'invalid-input');
    assert.match(err.message, /units\/u\.service:5: X-Fleet\.X-Flotilla-Memroy: unknown Flotilla extension/);
  }
  const inverted = policyOf('[Service]\nExecStart=/bin/true\n[X-Fleet]\nX-Flotilla-RescheduleBackoff=10min\nX-Flotilla-RescheduleBackoffMax=1min\n');
  assert.match(inverted.problems[0]!.message, /longer than X-Flotilla-RescheduleBackoffMax/);
  assert.equal(inverted.problems[0]!.line, 4);
});

test('backoff doubles per failure up to the cap; which failures move a unit', () => {
  const p = { backoffMs: 1000, backoffMaxMs: 5000 };
  assert.deepEqual([1, 2, 3, 4, 100].map((n) => backoffFor(p, n)), [1000, 2000, 4000, 5000, 5000]);
  assert.equal(shouldReschedule('on-start-limit', 'start-limit-hit'), true);
  assert.equal(shouldReschedule('on-start-limit', 'exit-code'), false);
  assert.equal(shouldReschedule('on-failure', 'exit-code'), true);
  assert.equal(shouldReschedule('no', 'start-limit-hit'), false);
  assert.equal(
    avoidReason({ machineId: 'm1', failures: 2, lastResult: 'start-limit-hit', avoidUntil: '2026-01-01T03:41:05.000Z' }),
    'failed on m1 2 times (start-limit-hit); avoided until 03:41:05Z',
  );
});
