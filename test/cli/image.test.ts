import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { listImages } from '../../src/provision/image';
import { cli } from '../helpers/cli';

test('image ls lists the cache; image rm refuses unknown ids', async () => {
  const ls = await cli('image', 'ls', '--json');
  assert.equal(ls.code, 0, ls.stderr);
  assert.deepEqual((JSON.parse(ls.stdout) as Array<{ id: string }>).map((i) => i.id), listImages().map((i) => i.id));
  const rm = await cli('image', 'rm', 'no-such-image');
  assert.equal(rm.code, 3);
  assert.match(rm.stderr, /image no-such-image: no such image/);
  assert.equal((await cli('image', 'rm')).code, 2);
});
