import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { unitNameInfo } from '../../../src/units/unit-file';
import { expandSpecifiers } from '../../../src/units/runner/specifiers';

test('expandSpecifiers: unit-name and host specifiers; unknown ones are errors', () => {
  const info = unitNameInfo('mnt-data\\x2dlog@dev-sda1.service');
  const ctx = { hostname: 'h1', machineId: 'abc', home: '/root', userName: 'root', uid: 0 };
  assert.equal(expandSpecifiers('%n|%N|%p|%i|%%|%H|%m|%t|%u|%U|%h', info, ctx), 'mnt-data\\x2dlog@dev-sda1.service|mnt-data\\x2dlog@dev-sda1|mnt-data\\x2dlog|dev-sda1|%|h1|abc|/run|root|0|/root');
  assert.equal(expandSpecifiers('%P|%I|%f', info, ctx), 'mnt/data-log|dev/sda1|/dev/sda1');
  assert.throws(() => expandSpecifiers('%Z', info, ctx), /unsupported specifier %Z/);
  assert.throws(() => expandSpecifiers('50%', info, ctx), /lone "%"/);
  assert.throws(() => expandSpecifiers('%m', info, {}), /%m needs a value/);
});
