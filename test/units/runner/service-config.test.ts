import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { FlotillaError } from '../../../src/errors';
import { parseUnitFile } from '../../../src/units/unit-file';
import { parseServiceConfig, parseSignal } from '../../../src/units/runner/service-config';

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
