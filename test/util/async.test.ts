/** src/util/async.ts: waits that end on a signal or a deadline, and leave nothing unhandled behind. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mapLimit, raceAbort, sleep, withTimeout } from '../../src/util/async';

test('raceAbort: the value, or the abort reason as soon as the signal fires', async () => {
  const ac = new AbortController();
  assert.equal(await raceAbort(Promise.resolve(7), ac.signal), 7);
  const slow = sleep(5000).then(() => 'late');
  setTimeout(() => ac.abort(new Error('stop')), 20);
  const t0 = Date.now();
  await assert.rejects(raceAbort(slow, ac.signal), /stop/);
  assert.ok(Date.now() - t0 < 1000);
  await assert.rejects(raceAbort(Promise.resolve(1), ac.signal), /stop/, 'an aborted signal rejects at once');
});

test('withTimeout: the value in time, else the given error; a late rejection is not unhandled', async () => {
  assert.equal(await withTimeout(sleep(5).then(() => 'ok'), 1000, () => new Error('late')), 'ok');
  let unhandled = 0;
  const onUnhandled = (): void => void unhandled++;
  process.on('unhandledRejection', onUnhandled);
  try {
    const late = sleep(50).then(() => Promise.reject(new Error('too late to matter')));
    await assert.rejects(withTimeout(late, 10, () => new Error('deadline')), /deadline/);
    await sleep(100);
    assert.equal(unhandled, 0);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('mapLimit keeps order and never runs more than the limit at once', async () => {
  let running = 0;
  let peak = 0;
  const out = await mapLimit([5, 1, 4, 2, 3], 2, async (n) => {
    peak = Math.max(peak, ++running);
    await sleep(n * 5);
    running--;
    return n * 10;
  });
  assert.deepEqual(out, [50, 10, 40, 20, 30]);
  assert.equal(peak, 2);
});
