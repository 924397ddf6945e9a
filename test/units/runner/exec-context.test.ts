/** The environment the process runner gives commands, against real processes. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readOr, setup } from './process-fixture';

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
