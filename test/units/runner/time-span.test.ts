import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { parseTimeSpan } from '../../../src/units/runner/time-span';

test('parseTimeSpan accepts systemd time spans', () => {
  const cases: Array<[string, number]> = [
    ['100ms', 100],
    ['1s', 1000],
    ['2min', 120_000],
    ['1min 30s', 90_000],
    ['1min30s', 90_000],
    ['5', 5000],
    ['1.5s', 1500],
    ['250 msec', 250],
    ['1h', 3_600_000],
    ['2 days', 172_800_000],
    ['500us', 0.5],
    ['infinity', Infinity],
  ];
  for (const [input, ms] of cases) assert.equal(parseTimeSpan(input), ms, input);
  for (const bad of ['', 'soon', '5 parsecs', '1s x', '-1s', 's']) assert.throws(() => parseTimeSpan(bad), Error, bad);
});
