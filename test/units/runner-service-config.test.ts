import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { FlotillaError } from '../../src/errors';
import { parseUnitFile, unitNameInfo } from '../../src/units/unit-file';
import {
  expandSpecifiers,
  parseEnvironmentFile,
  parseServiceConfig,
  parseSignal,
  parseTimeSpan,
  substituteEnvironment,
} from '../../src/units/runner/service-config';

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

test('parseEnvironmentFile: comments, quotes, continuations, and errors naming the line', () => {
  const text = [
    '# comment',
    '; comment',
    '',
    'A=plain value   ',
    '  B = spaced',
    'C="double \\"quoted\\" \\$x"',
    "D='single \\n kept'",
    'E="spans',
    'two lines"',
    'F=back\\',
    'slash',
    'G=',
    'H=a#not-a-comment',
  ].join('\n');
  assert.deepEqual(parseEnvironmentFile(text, '/etc/x.env'), [
    ['A', 'plain value'],
    ['B', 'spaced'],
    ['C', 'double "quoted" $x'],
    ['D', 'single \\n kept'],
    ['E', 'spans\ntwo lines'],
    ['F', 'backslash'],
    ['G', ''],
    ['H', 'a#not-a-comment'],
  ]);
  assert.throws(() => parseEnvironmentFile('A=1\nnot an assignment\n', '/e'), /\/e:2: expected NAME=VALUE/);
  assert.throws(() => parseEnvironmentFile('A=1\n1X=2\n', '/e'), /\/e:2: invalid variable name/);
  assert.throws(() => parseEnvironmentFile('A="open\n\n', '/e'), /\/e:\d+: unterminated double quote \(opened on line 1\)/);
});

test('substituteEnvironment follows systemd command-line rules', () => {
  const env = { W: 'a  b', ONE: 'x', EMPTY: '' };
  assert.deepEqual(substituteEnvironment(['$W', '${W}', 'p${ONE}q', '$$W', '$UNSET', '${UNSET}', 'sh $W', '$EMPTY', '$(cmd)', '$1'], env), [
    'a',
    'b',
    'a  b',
    'pxq',
    '$W',
    '',
    'sh $W',
    '$(cmd)',
    '$1',
  ]);
});

test('expandSpecifiers: unit-name and host specifiers; unknown ones are errors', () => {
  const info = unitNameInfo('mnt-data\\x2dlog@dev-sda1.service');
  const ctx = { hostname: 'h1', machineId: 'abc', home: '/root', userName: 'root', uid: 0 };
  assert.equal(expandSpecifiers('%n|%N|%p|%i|%%|%H|%m|%t|%u|%U|%h', info, ctx), 'mnt-data\\x2dlog@dev-sda1.service|mnt-data\\x2dlog@dev-sda1|mnt-data\\x2dlog|dev-sda1|%|h1|abc|/run|root|0|/root');
  assert.equal(expandSpecifiers('%P|%I|%f', info, ctx), 'mnt/data-log|dev/sda1|/dev/sda1');
  assert.throws(() => expandSpecifiers('%Z', info, ctx), /unsupported specifier %Z/);
  assert.throws(() => expandSpecifiers('50%', info, ctx), /lone "%"/);
  assert.throws(() => expandSpecifiers('%m', info, {}), /%m needs a value/);
});

test('parseSignal', () => {
  assert.equal(parseSignal('SIGINT'), 'SIGINT');
  assert.equal(parseSignal('KILL'), 'SIGKILL');
  assert.equal(parseSignal('15'), 'SIGTERM');
  assert.equal(parseSignal('SIGNOPE'), undefined);
});

test('parseServiceConfig reads the supported settings with systemd defaults', () => {
  const unit = parseUnitFile(
    [
      '[Unit]',
      'Description=x',
      'After=network.target',
      'StartLimitBurst=2',
      'StartLimitIntervalSec=1min',
      '[Service]',
      'Type=exec',
      'ExecStartPre=-@/bin/prep prep-argv0 --x',
      'ExecStart=:/usr/bin/app --name %n $LITERAL',
      'ExecStop=/bin/kill -TERM $MAINPID',
      'Environment="A=1 2" B=%i',
      'EnvironmentFile=-/etc/app.env',
      'WorkingDirectory=-/srv',
      'Restart=on-abnormal',
      'RestartSec=2s',
      'TimeoutSec=7s',
      'TimeoutStopSec=0',
      'KillSignal=SIGINT',
      'SuccessExitStatus=143 SIGUSR1',
      'SyslogIdentifier=app',
      '[Install]',
      'WantedBy=multi-user.target',
      '[X-Fleet]',
      'Global=true',
    ].join('\n'),
    'app@blue.service',
  );
  const cfg = parseServiceConfig(unit, {});
  assert.equal(cfg.type, 'exec');
  assert.deepEqual(cfg.execStartPre.map((c) => [c.path, c.argv, c.ignoreFailure, c.noSubstitution]), [['/bin/prep', ['prep-argv0', '--x'], true, false]]);
  assert.deepEqual(cfg.execStart.map((c) => [c.path, c.argv, c.noSubstitution]), [['/usr/bin/app', ['/usr/bin/app', '--name', 'app@blue.service', '$LITERAL'], true]]);
  assert.deepEqual(cfg.environment, [['A', '1 2'], ['B', 'blue']]);
  assert.deepEqual(cfg.environmentFiles, [{ path: '/etc/app.env', optional: true }]);
  assert.deepEqual(cfg.workingDirectory, { path: '/srv', optional: true });
  assert.equal(cfg.restart, 'on-abnormal');
  assert.equal(cfg.restartMs, 2000);
  assert.equal(cfg.timeoutStartMs, 7000);
  assert.equal(cfg.timeoutStopMs, Infinity, 'TimeoutStopSec=0 disables the timeout');
  assert.equal(cfg.killSignal, 'SIGINT');
  assert.deepEqual([cfg.successExitCodes, cfg.successSignals], [[143], ['SIGUSR1']]);
  assert.deepEqual([cfg.startLimitBurst, cfg.startLimitIntervalMs], [2, 60_000]);

  const defaults = parseServiceConfig(parseUnitFile('[Service]\nExecStart=/bin/true\n', 'd.service'));
  assert.deepEqual(
    [defaults.type, defaults.restart, defaults.restartMs, defaults.timeoutStopMs, defaults.startLimitBurst, defaults.startLimitIntervalMs, defaults.killSignal],
    ['simple', 'no', 100, undefined, 5, 10_000, 'SIGTERM'],
  );
});

test('parseServiceConfig reports every unsupported or invalid setting with its line', () => {
  const unit = parseUnitFile(
    [
      '[Unit]',
      'ConditionPathExists=/etc/x',
      '[Service]',
      'Type=notify',
      'ExecStart=/bin/a "unbalanced',
      'Environment=not-an-assignment',
      'Restart=sometimes',
      'RestartSec=fast',
      'KillMode=process',
      'KillSignal=SIGNOPE',
      'RemainAfterExit=perhaps',
      'EnvironmentFile=relative.env',
      'ExecStartPre=$CMD',
      'User=nobody',
    ].join('\n'),
    'bad.service',
  );
  try {
    parseServiceConfig(unit);
    assert.fail('expected problems');
  } catch (err) {
    assert.ok(FlotillaError.is(err));
    assert.equal(err.code, 'invalid-input');
    const lines = err.problems.map((p) => p.line).filter((l) => l !== undefined);
    assert.deepEqual([...new Set(lines)].sort((a, b) => a! - b!), [2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    assert.match(err.message, /bad\.service:14: Service\.User: User= is not supported/);
  }
});

test('oneshot rules: several ExecStart allowed, Restart=always is not', () => {
  const ok = parseServiceConfig(parseUnitFile('[Service]\nType=oneshot\nExecStart=/bin/a\nExecStart=/bin/b\n', 'o.service'));
  assert.equal(ok.execStart.length, 2);
  assert.throws(
    () => parseServiceConfig(parseUnitFile('[Service]\nType=oneshot\nRestart=always\nExecStart=/bin/a\n', 'o.service')),
    /Restart=always is not allowed for Type=oneshot/,
  );
  assert.throws(() => parseServiceConfig(parseUnitFile('[Service]\nType=simple\n', 'o.service')), /no ExecStart=/);
  const reset = parseServiceConfig(parseUnitFile('[Service]\nExecStart=/bin/a\nExecStart=\nExecStart=/bin/b\n', 'o.service'));
  assert.deepEqual(reset.execStart.map((c) => c.path), ['/bin/b'], 'an empty ExecStart= resets the list');
});
