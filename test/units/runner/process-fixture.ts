/**
 * Fixtures for testing the process runner against real processes: small shell loops
 * that write marker files. Every runner made by `setup` is closed and its temp dir
 * removed when the test ends, also when it fails.
 */
import type { TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ProcessRunner, type ProcessRunnerOptions } from '../../../src/units/runner/process';
import type { UnitStatus } from '../../../src/units/runner/types';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function readOr(file: string, fallback = ''): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** Processes in group `pgid` according to ps, with their state letters. */
export function groupProcesses(pgid: number): Array<{ pid: number; stat: string }> {
  const out = execFileSync('ps', ['-eo', 'pid=,pgid=,stat='], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length === 3 && Number(f[1]) === pgid)
    .map((f) => ({ pid: Number(f[0]), stat: f[2]! }));
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Nothing of the group runs any more. `kill -0 -PGID` would be the whole check, but this
 * container's PID 1 does not reap orphans, so a killed shell's `sleep` can linger as a
 * zombie: those are allowed, nothing else is.
 */
export function assertGroupGone(pgid: number): void {
  let groupExists = true;
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, 'ESRCH');
    groupExists = false;
  }
  if (groupExists) {
    const live = groupProcesses(pgid).filter((p) => !p.stat.startsWith('Z'));
    assert.deepEqual(live, [], `processes left in group ${pgid}`);
  }
}

export interface Fixture {
  dir: string;
  runner: ProcessRunner;
  events: UnitStatus[];
}

export function setup(t: TestContext, options: ProcessRunnerOptions = {}): Fixture {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-runner-'));
  const runner = new ProcessRunner({ defaultTimeoutStopMs: 2000, logDir: path.join(dir, 'logs'), ...options });
  const events: UnitStatus[] = [];
  runner.onStateChange((s) => events.push(s));
  t.after(async () => {
    await runner.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir, runner, events };
}

export function subs(events: UnitStatus[], name: string): string[] {
  return events.filter((e) => e.name === name).map((e) => `${e.active}/${e.sub}`);
}

export const LOOP = (mark: string): string =>
  `[Unit]\nDescription=marker loop\n\n[Service]\nEnvironment=MARK=${mark}\nExecStart=/bin/sh -c 'while :; do date +%%s%%N > $MARK; sleep 0.1; done'\n`;

