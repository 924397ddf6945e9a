/**
 * The systemd runner. systemd is not PID 1 on the development machine, so `systemctl`
 * is replaced by an injected stand-in that records every call and keeps a small state
 * table (loaded from the unit files on daemon-reload, as systemd does). The default
 * exec is tested for real: here it must report systemd's refusal as an error.
 */
import { test, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlotillaError } from '../../../src/errors';
import { createUnitRunner } from '../../../src/units/runner';
import { detectRunner, parseSystemctlShow, SystemdRunner, type ExecResult } from '../../../src/units/runner/systemd';
import type { UnitStatus } from '../../../src/units/runner/types';

/** A stand-in systemctl over a unit directory: start/stop/show/reset-failed/daemon-reload. */
class SystemctlStandIn {
  readonly calls: string[] = [];
  /** Unit texts as of the last daemon-reload. */
  loaded = new Map<string, string>();
  states = new Map<string, { active: string; sub: string; pid: number; result: string }>();
  private nextPid = 1000;

  constructor(private readonly dir: string) {}

  exec = async (args: readonly string[]): Promise<ExecResult> => {
    this.calls.push(args.join(' '));
    const [verb, ...rest] = args;
    const name = rest[rest.length - 1]!;
    switch (verb) {
      case 'daemon-reload':
        this.loaded = new Map(fs.readdirSync(this.dir).map((f) => [f, fs.readFileSync(path.join(this.dir, f), 'utf8')]));
        return { code: 0, stdout: '', stderr: '' };
      case 'reset-failed': {
        const s = this.states.get(name);
        if (!this.loaded.has(name)) return { code: 1, stdout: '', stderr: `Failed to reset failed state of unit ${name}: Unit ${name} not loaded.` };
        if (s?.active === 'failed') this.states.set(name, { active: 'inactive', sub: 'dead', pid: 0, result: 'success' });
        return { code: 0, stdout: '', stderr: '' };
      }
      case 'start': {
        const text = this.loaded.get(name);
        if (text === undefined) return { code: 5, stdout: '', stderr: `Failed to start ${name}: Unit ${name} not found.` };
        if (this.states.get(name)?.active === 'active') return { code: 0, stdout: '', stderr: '' };
        if (text.includes('ExecStart=/bin/false')) {
          this.states.set(name, { active: 'failed', sub: 'failed', pid: 0, result: 'exit-code' });
          return { code: 1, stdout: '', stderr: `Job for ${name} failed because the control process exited with error code.` };
        }
        this.states.set(name, { active: 'active', sub: 'running', pid: this.nextPid++, result: 'success' });
        return { code: 0, stdout: '', stderr: '' };
      }
      case 'stop':
        if (this.states.get(name)?.active !== 'failed') this.states.set(name, { active: 'inactive', sub: 'dead', pid: 0, result: 'success' });
        return { code: 0, stdout: '', stderr: '' };
      case 'show': {
        assert.deepEqual(rest.slice(0, 3), ['-p', 'LoadState,ActiveState,SubState,MainPID,Result', '--']);
        const s = this.states.get(name) ?? { active: 'inactive', sub: 'dead', pid: 0, result: 'success' };
        const load = this.loaded.has(name) ? 'loaded' : 'not-found';
        return { code: 0, stdout: `LoadState=${load}\nActiveState=${s.active}\nSubState=${s.sub}\nMainPID=${s.pid}\nResult=${s.result}\n`, stderr: '' };
      }
      default:
        return { code: 1, stdout: '', stderr: `unknown verb ${verb}` };
    }
  };

  /** The calls since the last take, with the `show` polls left out. */
  take(): string[] {
    const calls = this.calls.filter((c) => !c.startsWith('show '));
    this.calls.length = 0;
    return calls;
  }
}

function setup(t: TestContext, pollIntervalMs = 1000): { dir: string; systemctl: SystemctlStandIn; runner: SystemdRunner } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-systemd-'));
  const systemctl = new SystemctlStandIn(dir);
  const runner = new SystemdRunner({ unitDir: dir, exec: systemctl.exec, pollIntervalMs });
  t.after(async () => {
    await runner.close().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir, systemctl, runner };
}

const WEB = '[Unit]\nDescription=web\n\n[Service]\nExecStart=/usr/bin/web --port 80\n';

test('start writes the unit file, reloads, resets, starts, and reads the state', async (t) => {
  const { dir, systemctl, runner } = setup(t);
  await runner.start('web.service', WEB);
  assert.equal(fs.readFileSync(path.join(dir, 'web.service'), 'utf8'), WEB);
  assert.deepEqual(systemctl.take(), ['daemon-reload', 'reset-failed web.service', 'start web.service']);
  assert.equal(systemctl.loaded.get('web.service'), WEB, 'the file was in place before daemon-reload');
  const st = await runner.state('web.service');
  assert.deepEqual(st, { name: 'web.service', load: 'loaded', active: 'active', sub: 'running', mainPid: 1000, result: 'success' });
  assert.deepEqual(runner.list(), ['web.service']);

  // Same text again: no rewrite, no reload.
  await runner.start('web.service', WEB);
  assert.deepEqual(systemctl.take(), ['reset-failed web.service', 'start web.service']);
});

test('a different text for an active unit is a conflict; for a stopped one it is rewritten and reloaded', async (t) => {
  const { dir, systemctl, runner } = setup(t);
  await runner.start('web.service', WEB);
  systemctl.take();
  const changed = `${WEB}Environment=X=1\n`;
  await assert.rejects(runner.start('web.service', changed), (e: unknown) => FlotillaError.is(e) && e.code === 'conflict');
  assert.equal(fs.readFileSync(path.join(dir, 'web.service'), 'utf8'), WEB, 'the running unit file is untouched');
  await runner.stop('web.service');
  await runner.start('web.service', changed);
  assert.deepEqual(systemctl.take(), ['stop web.service', 'daemon-reload', 'reset-failed web.service', 'start web.service']);
  assert.equal(systemctl.loaded.get('web.service'), changed);
});

test('a failed start rejects with systemctl\'s message and leaves the failed state readable', async (t) => {
  const { runner } = setup(t);
  await assert.rejects(runner.start('bad.service', '[Service]\nExecStart=/bin/false\n'), (e: unknown) => {
    assert.ok(FlotillaError.is(e));
    assert.equal(e.code, 'external');
    assert.match(e.message, /systemctl start bad\.service exited with status 1: Job for bad\.service failed/);
    return true;
  });
  const st = await runner.state('bad.service');
  assert.deepEqual([st.active, st.sub, st.result], ['failed', 'failed', 'exit-code']);
});

test('invalid unit text or names are refused before anything is written or run', async (t) => {
  const { dir, systemctl, runner } = setup(t);
  await assert.rejects(runner.start('web.service', 'ExecStart=/x\n'), (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input' && /web\.service:1:/.test(e.message));
  await assert.rejects(runner.start('web', WEB), /invalid unit name/);
  await assert.rejects(runner.start('web@.service', WEB), /is a template/);
  assert.deepEqual(fs.readdirSync(dir), []);
  assert.deepEqual(systemctl.take(), []);
});

test('remove stops, deletes the file and reloads; close does the same for every unit', async (t) => {
  const { dir, systemctl, runner } = setup(t);
  await runner.start('a.service', WEB);
  await runner.start('b.timer', '[Timer]\nOnCalendar=hourly\n');
  await runner.start('c.service', WEB);
  systemctl.take();
  await runner.remove('a.service');
  assert.deepEqual(systemctl.take(), ['stop a.service', 'daemon-reload']);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['b.timer', 'c.service']);
  assert.deepEqual(runner.list(), ['b.timer', 'c.service']);
  await runner.close();
  assert.deepEqual(systemctl.take(), ['stop b.timer', 'stop c.service', 'daemon-reload']);
  assert.deepEqual(fs.readdirSync(dir), []);
  assert.deepEqual(runner.list(), []);
  await assert.rejects(runner.start('d.service', WEB), /runner is closed/);
});

test('state changes made behind the runner\'s back reach listeners through polling', async (t) => {
  const { systemctl, runner } = setup(t, 30);
  const events: UnitStatus[] = [];
  const unsubscribe = runner.onStateChange((s) => events.push(s));
  await runner.start('web.service', WEB);
  assert.deepEqual(events.map((e) => `${e.active}/${e.sub}`), ['active/running']);
  systemctl.states.set('web.service', { active: 'failed', sub: 'failed', pid: 0, result: 'signal' });
  const deadline = Date.now() + 3000;
  while (!events.some((e) => e.active === 'failed') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(events.map((e) => `${e.active}/${e.sub}/${e.result}`), ['active/running/success', 'failed/failed/signal']);
  unsubscribe();
  const before = systemctl.calls.length;
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(systemctl.calls.length, before, 'no polling without listeners');
});

test('parseSystemctlShow folds systemd states into the runner interface', () => {
  assert.deepEqual(parseSystemctlShow('x.service', 'LoadState=loaded\nActiveState=reloading\nSubState=reload\nMainPID=42\nResult=success\n'), {
    name: 'x.service',
    load: 'loaded',
    active: 'active',
    sub: 'reload',
    mainPid: 42,
    result: 'success',
  });
  assert.deepEqual(parseSystemctlShow('x.service', 'LoadState=masked\nActiveState=inactive\nSubState=dead\nMainPID=0\n'), {
    name: 'x.service',
    load: 'error',
    active: 'inactive',
    sub: 'dead',
  });
});

test('detectRunner: systemd only when /run/systemd/system exists and PID 1 is systemd', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-detect-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sd = path.join(dir, 'systemd-system');
  const comm = path.join(dir, 'comm');
  assert.equal(detectRunner({ systemdDir: sd, pid1CommPath: comm }), 'process', 'neither');
  fs.mkdirSync(sd);
  assert.equal(detectRunner({ systemdDir: sd, pid1CommPath: comm }), 'process', 'no comm file');
  fs.writeFileSync(comm, 'init\n');
  assert.equal(detectRunner({ systemdDir: sd, pid1CommPath: comm }), 'process', 'PID 1 is not systemd');
  fs.writeFileSync(comm, 'systemd\n');
  assert.equal(detectRunner({ systemdDir: sd, pid1CommPath: comm }), 'systemd');
  fs.rmdirSync(sd);
  assert.equal(detectRunner({ systemdDir: sd, pid1CommPath: comm }), 'process', 'systemd as PID 1 but not booted (no runtime dir)');

  // This machine: systemd is not PID 1, so auto-detection picks the process runner.
  const expected = fs.existsSync('/run/systemd/system') && fs.readFileSync('/proc/1/comm', 'utf8').trim() === 'systemd' ? 'systemd' : 'process';
  assert.equal(detectRunner(), expected);
  assert.equal(createUnitRunner().kind, expected);
});

test('the real systemctl: its refusal on a host without systemd is an external error, not a crash', { skip: fs.existsSync('/run/systemd/system') && 'systemd is running here' }, async () => {
  const runner = new SystemdRunner({ unitDir: '/nonexistent-flotilla-test' });
  await assert.rejects(runner.state('web.service'), (e: unknown) => {
    assert.ok(FlotillaError.is(e));
    assert.ok(e.code === 'external' || e.code === 'missing-tool', e.code);
    return true;
  });
  await runner.close();
});

/**
 * A runner that started web.service and db.service and was then SIGKILLed with its agent (no
 * close()), beside a unit that is not the runner's; `next()` is the runner of the agent's successor.
 */
async function killedPredecessor(t: TestContext): Promise<{ unitDir: string; ownedFile: string; systemctl: SystemctlStandIn; next: () => SystemdRunner }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-systemd-'));
  const ownedFile = path.join(dir, 'state', 'owned.json');
  const unitDir = path.join(dir, 'units');
  fs.mkdirSync(unitDir);
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const systemctl = new SystemctlStandIn(unitDir);
  const next = (): SystemdRunner => new SystemdRunner({ unitDir, exec: systemctl.exec, ownedFile });
  const first = next();
  await first.start('web.service', WEB);
  await first.start('db.service', WEB.replace('web', 'db'));
  fs.writeFileSync(path.join(unitDir, 'someone-elses.service'), WEB); // not the runner's: never adopted
  return { unitDir, ownedFile, systemctl, next };
}

test('a restarted agent\'s runner adopts the units its killed predecessor left, so reconcile can stop or keep them', async (t) => {
  const { unitDir, ownedFile, systemctl, next } = await killedPredecessor(t);
  assert.deepEqual(JSON.parse(fs.readFileSync(ownedFile, 'utf8')), ['db.service', 'web.service']);
  // The agent is SIGKILLed: no close(); the units keep running under systemd.
  const second = next();
  assert.deepEqual(second.list(), ['db.service', 'web.service']);
  assert.equal((await second.state('web.service')).active, 'active');
  // What the agent's reconcile does with a unit no longer assigned here: stopped and removed.
  await second.remove('db.service');
  assert.equal(systemctl.states.get('db.service')?.active, 'inactive');
  assert.equal(fs.existsSync(path.join(unitDir, 'db.service')), false);
  assert.deepEqual(JSON.parse(fs.readFileSync(ownedFile, 'utf8')), ['web.service']);
  // A still-assigned unit with the same text is neither rewritten nor restarted.
  systemctl.take();
  await second.start('web.service', WEB);
  assert.deepEqual(systemctl.take(), ['reset-failed web.service', 'start web.service']);
  assert.equal(systemctl.states.get('web.service')?.pid, 1000, 'same process');
  await second.close();
  assert.deepEqual(JSON.parse(fs.readFileSync(ownedFile, 'utf8')), []);
  assert.deepEqual(next().list(), []);
  assert.equal(fs.existsSync(path.join(unitDir, 'someone-elses.service')), true);
});

test('stopLeftovers: a new fleetd stops what its killed predecessor left (its lease is never resumed), not what it started itself nor foreign units', async (t) => {
  const { unitDir, ownedFile, systemctl, next } = await killedPredecessor(t);
  const second = next();
  await second.start('db.service', WEB.replace('web', 'db')); // taken over explicitly: no longer a leftover
  await second.start('cache.service', WEB.replace('web', 'cache'));
  assert.deepEqual(await second.stopLeftovers(), ['web.service']);
  assert.equal(systemctl.states.get('web.service')?.active, 'inactive');
  assert.equal(fs.existsSync(path.join(unitDir, 'web.service')), false);
  assert.equal(systemctl.states.get('db.service')?.active, 'active');
  assert.equal(systemctl.states.get('cache.service')?.active, 'active');
  assert.equal(fs.existsSync(path.join(unitDir, 'someone-elses.service')), true);
  assert.deepEqual(second.list(), ['cache.service', 'db.service']);
  assert.deepEqual(JSON.parse(fs.readFileSync(ownedFile, 'utf8')), ['cache.service', 'db.service']);
  assert.deepEqual(await second.stopLeftovers(), [], 'once');
  await second.close();
});
