/**
 * Runs `.service` units as plain child processes, with systemd's service state machine
 * (systemd.service(5)): ExecStartPre, ExecStart, ExecStartPost, ExecStop, ExecStopPost,
 * Restart= with RestartSec= and a start limit, stop timeouts with SIGKILL escalation.
 * For tests and hosts where systemd is not PID 1.
 *
 * Commands run without a shell. Every command runs in its own process group (spawned
 * detached, so setsid makes it a group leader), and stopping a unit signals every group
 * it created: the stand-in for systemd's cgroup, so forked children do not leak. A child
 * that calls setsid itself escapes; only a cgroup could catch that.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import { parseUnitFile } from '../unit-file';
import {
  parseEnvironmentFile,
  parseServiceConfig,
  substituteEnvironment,
  type ExecCommand,
  type ServiceConfig,
  type SpecifierContext,
} from './service-config';
import { unknownUnitStatus, type ActiveState, type StateListener, type UnitRunner, type UnitStatus } from './types';
import { sleep } from '../../util/async';

export interface ProcessRunnerOptions {
  /** TimeoutStopSec for units that set none. systemd's default is 90 s; 5 s keeps tests fast. */
  defaultTimeoutStopMs?: number;
  /** TimeoutStartSec for units that set none (systemd: 90 s; Type=oneshot: no limit). */
  defaultTimeoutStartMs?: number;
  /** The environment every command starts from; systemd gives services only PATH (no inherited variables). */
  baseEnvironment?: Readonly<Record<string, string>>;
  /** When set, each unit's stdout, stderr and the runner's notes about it are appended to `<logDir>/<name>.log`. */
  logDir?: string;
  /** Host facts for %H, %m, %h, %u, %U; read from this host when left out. */
  specifiers?: SpecifierContext;
}

/** systemd's default PATH for services. */
export const DEFAULT_SERVICE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

type Result = 'success' | 'exit-code' | 'signal' | 'timeout' | 'start-limit-hit' | 'resources';

interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the command could not be executed at all. */
  error?: Error;
}

/** systemd's exit status for a failed exec (EXIT_EXEC). */
const EXIT_EXEC = 203;
const CLEAN_DAEMON_SIGNALS: readonly string[] = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGPIPE'];
/** How long to wait for processes to vanish after SIGKILL before giving up on them. */
const SIGKILL_WAIT_MS = 10_000;
const POLL_MS = 20;

function describeExit(info: ExitInfo): string {
  if (info.error) return `could not be executed (${info.error.message})`;
  if (info.signal) return `was killed by ${info.signal}`;
  return `exited with status ${info.code}`;
}

/** The promise's value, or undefined if it takes longer than `ms` (the timer is cleared either way). */
async function raceTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// Process groups

/**
 * Whether any process other than a zombie is in process group `pgid`. kill(-pgid, 0)
 * alone also counts zombies, and an init that does not reap orphans (as in some
 * containers) leaves them forever; on Linux /proc tells them apart.
 */
export function processGroupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return processGroupMembers(pgid)?.length !== 0;
}

/** PIDs of the non-zombie processes in group `pgid`, or undefined without /proc. */
export function processGroupMembers(pgid: number): number[] | undefined {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return undefined;
  }
  const members: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // Fields after the command name, which is in parentheses and may contain anything.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') members.push(Number(entry));
  }
  return members;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    /* gone already */
  }
}

// ---------------------------------------------------------------------------
// One spawned command

interface Spawned {
  pid: number | undefined;
  /** True once exec succeeded, false if it failed. */
  started: Promise<boolean>;
  exited: Promise<ExitInfo>;
  exitInfo?: ExitInfo;
}

// ---------------------------------------------------------------------------
// One unit

interface Attempt {
  /** A Type=oneshot without RemainAfterExit ran its commands: start succeeds once the unit is dead again. */
  oneshotDone?: boolean;
  env: Record<string, string>;
  cwd: string;
  result: Result;
  reason: string;
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

class ProcessUnit {
  status: UnitStatus;
  text = '';
  config?: ServiceConfig;
  /** Set while a lifecycle runs: from start until the unit is dead or failed. */
  lifecycle?: Promise<void>;
  private stopRequested = false;
  private stopRequest: Promise<void> = Promise.resolve();
  private wakeForStop: () => void = () => undefined;
  private startTimes: number[] = [];
  private readonly groups = new Set<number>();
  private main?: Spawned;
  private waiters: Waiter[] = [];

  constructor(
    readonly name: string,
    private readonly runner: ProcessRunner,
  ) {
    this.status = unknownUnitStatus(name);
  }

  get busy(): boolean {
    return this.lifecycle !== undefined;
  }

  setState(active: ActiveState, sub: string): void {
    if (this.status.active === active && this.status.sub === sub) return;
    this.status = { ...this.status, active, sub };
    this.runner.emit(this.status);
  }

  private setMainPid(pid: number | undefined): void {
    const { mainPid: _old, ...rest } = this.status;
    this.status = pid === undefined ? rest : { ...rest, mainPid: pid };
  }

  /** A promise settled by the outcome of the current or next start attempt. */
  waitForAttempt(): Promise<void> {
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private settleWaiters(err?: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  begin(text: string, config: ServiceConfig): void {
    this.text = text;
    this.config = config;
    if (config.unenforcedLimits.length) this.log(`${config.unenforcedLimits.join(' ')}: used for placement; not enforced (the process runner has no cgroups)`);
    this.status = { ...this.status, load: 'loaded' };
    this.startTimes = []; // an explicit start resets the start limit, like reset-failed
    this.stopRequested = false;
    this.stopRequest = new Promise((resolve) => (this.wakeForStop = resolve));
    this.lifecycle = this.run().finally(() => {
      this.lifecycle = undefined;
    });
  }

  requestStop(): void {
    this.stopRequested = true;
    this.wakeForStop();
  }

  private log(message: string): void {
    this.runner.log(this.name, message);
  }

  private async run(): Promise<void> {
    const cfg = this.config!;
    try {
      for (;;) {
        if (!this.takeStartSlot(cfg)) {
          this.log(`start request repeated too quickly (StartLimitBurst=${cfg.startLimitBurst} within ${cfg.startLimitIntervalMs} ms), refusing to start`);
          this.finish('start-limit-hit', `${this.name}: start limit hit (StartLimitBurst=${cfg.startLimitBurst})`);
          return;
        }
        const attempt = await this.attempt(cfg);
        if (!this.stopRequested && restartAllowed(cfg.restart, attempt.result)) {
          this.status = { ...this.status, result: attempt.result };
          this.setState('activating', 'auto-restart');
          this.log(`scheduling restart in ${cfg.restartMs} ms (result ${attempt.result})`);
          const stopped = await this.sleepUnlessStopped(cfg.restartMs);
          if (!stopped) continue;
          this.finish('success', `${this.name} was stopped`);
          return;
        }
        this.finish(attempt.result, `${this.name} failed: ${attempt.reason}`, attempt.oneshotDone);
        return;
      }
    } catch (err) {
      // A bug here must not leave the unit looking alive.
      this.log(`internal error: ${(err as Error).stack ?? String(err)}`);
      for (const g of this.groups) signalGroup(g, 'SIGKILL');
      this.finish('resources', `${this.name}: internal error in the process runner: ${(err as Error).message}`);
    }
  }

  private finish(result: Result, failure: string, oneshotDone = false): void {
    this.setMainPid(undefined);
    this.status = { ...this.status, result };
    if (result === 'success') this.setState('inactive', 'dead');
    else this.setState('failed', 'failed');
    if (oneshotDone && result === 'success') this.settleWaiters();
    else if (result === 'success') this.settleWaiters(new FlotillaError('conflict', `${this.name} was stopped before it became active`));
    else this.settleWaiters(new FlotillaError('external', failure));
  }

  private takeStartSlot(cfg: ServiceConfig): boolean {
    if (cfg.startLimitIntervalMs === 0 || cfg.startLimitBurst === 0) return true;
    const now = Date.now();
    this.startTimes = this.startTimes.filter((t) => now - t < cfg.startLimitIntervalMs);
    if (this.startTimes.length >= cfg.startLimitBurst) return false;
    this.startTimes.push(now);
    return true;
  }

  private async sleepUnlessStopped(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
      this.stopRequest.then(() => true as const),
    ]);
    clearTimeout(timer);
    return stopped;
  }

  // -- one run: start, wait, stop ------------------------------------------

  private async attempt(cfg: ServiceConfig): Promise<Attempt> {
    const a: Attempt = { env: {}, cwd: '/', result: 'success', reason: '' };
    this.main = undefined;
    this.setMainPid(undefined);
    this.setState('activating', 'start-pre');
    const mainStarted = await this.startPhase(cfg, a);
    if (mainStarted) {
      if (a.result === 'success') await this.runPhase(cfg, a);
      await this.execStopPhase(cfg, a);
    } else if (a.result === 'success' && this.stopRequested) {
      a.reason = 'stopped while starting';
    }
    await this.killPhase(cfg, a, 'stop-sigterm', 'stop-sigkill');
    await this.stopPostPhase(cfg, a);
    await this.killPhase(cfg, a, 'final-sigterm', 'final-sigkill');
    this.setMainPid(undefined);
    if (this.waiters.length > 0 && !(a.oneshotDone && a.result === 'success')) {
      this.settleWaiters(
        a.result === 'success'
          ? new FlotillaError('conflict', `${this.name} was stopped before it became active`)
          : new FlotillaError('external', `${this.name} failed to start: ${a.reason}`),
      );
    }
    return a;
  }

  /** ExecStartPre, ExecStart, ExecStartPost. Returns whether the main process (or oneshot commands) ran. */
  private async startPhase(cfg: ServiceConfig, a: Attempt): Promise<boolean> {
    try {
      a.env = this.runner.environmentFor(cfg);
      a.cwd = this.runner.workingDirectoryFor(cfg);
    } catch (err) {
      a.result = 'resources';
      a.reason = (err as Error).message;
      this.log(a.reason);
      return false;
    }
    const startTimeout = cfg.timeoutStartMs ?? this.runner.defaultTimeoutStartMs;
    for (const cmd of cfg.execStartPre) {
      if (!(await this.control(cmd, a, startTimeout, true))) return false;
    }
    if (this.stopRequested) return false;
    this.setState('activating', 'start');
    if (cfg.type === 'oneshot') {
      for (const cmd of cfg.execStart) {
        if (!(await this.control(cmd, a, cfg.timeoutStartMs ?? Infinity, true, true))) return false;
      }
    } else {
      const cmd = cfg.execStart[0]!;
      const main = this.spawn(cmd, a);
      if (!(await main.started)) {
        const info = await main.exited;
        a.result = 'exit-code';
        a.reason = `${cmd.setting}=${cmd.path} ${describeExit(info)}`;
        return false;
      }
      this.main = main;
      this.setMainPid(main.pid);
    }
    if (cfg.execStartPost.length > 0) {
      this.setState('activating', 'start-post');
      for (const cmd of cfg.execStartPost) {
        if (!(await this.control(cmd, a, startTimeout, true))) return true;
      }
    }
    return true;
  }

  /** Active until the main process exits or a stop is requested. */
  private async runPhase(cfg: ServiceConfig, a: Attempt): Promise<void> {
    if (this.stopRequested) return;
    if (cfg.type === 'oneshot') {
      if (!cfg.remainAfterExit) {
        a.oneshotDone = true; // start() resolves when the unit is dead again, as systemctl start does
        return;
      }
      this.setState('active', 'exited');
      this.settleWaiters();
      await this.stopRequest;
      return;
    }
    const main = this.main!;
    this.setState('active', 'running');
    this.settleWaiters();
    const exited = await Promise.race([main.exited, this.stopRequest.then(() => undefined)]);
    if (exited === undefined) return;
    this.setMainPid(undefined);
    a.result = this.mainResult(cfg, exited, false);
    a.reason = `main process ${describeExit(exited)}`;
    this.log(a.reason);
    if (a.result === 'success' && cfg.remainAfterExit) {
      this.setState('active', 'exited');
      await this.stopRequest;
    }
  }

  private async execStopPhase(cfg: ServiceConfig, a: Attempt): Promise<void> {
    if (cfg.execStop.length === 0) return;
    this.setState('deactivating', 'stop');
    const mainAlive = this.main !== undefined && this.main.exitInfo === undefined;
    const stopAttempt: Attempt = { ...a, env: { ...a.env, ...this.resultEnvironment(a), ...(mainAlive ? { MAINPID: String(this.main!.pid) } : {}) } };
    for (const cmd of cfg.execStop) {
      if (!(await this.control(cmd, stopAttempt, this.timeoutStop(cfg), false)) && a.result === 'success') {
        a.result = stopAttempt.result;
        a.reason = stopAttempt.reason;
      }
    }
  }

  /** Signals every process group the unit still has; SIGKILL after TimeoutStopSec. */
  private async killPhase(cfg: ServiceConfig, a: Attempt, termSub: string, killSub: string): Promise<void> {
    const mainAlive = this.main !== undefined && this.main.exitInfo === undefined;
    if (this.liveGroups().length === 0 && !mainAlive) return;
    this.setState('deactivating', termSub);
    this.signalAll(cfg.killSignal);
    if (cfg.killSignal !== 'SIGKILL') this.signalAll('SIGCONT'); // wake stopped processes so they see the signal
    let killed = false;
    if (!(await this.waitGroupsGone(this.timeoutStop(cfg)))) {
      this.setState('deactivating', killSub);
      this.log(`processes still running after ${this.timeoutStop(cfg)} ms, sending SIGKILL`);
      this.signalAll('SIGKILL');
      killed = true;
      if (!(await this.waitGroupsGone(SIGKILL_WAIT_MS))) this.log(`processes survived SIGKILL: groups ${this.liveGroups().join(' ')}`);
      if (a.result === 'success') {
        a.result = 'timeout';
        a.reason = `processes did not exit within TimeoutStopSec (${this.timeoutStop(cfg)} ms)`;
      }
    }
    if (mainAlive && this.main) {
      const info = await raceTimeout(this.main.exited, 1000);
      // Dying of our own KillSignal is how a stop is meant to end.
      if (info && !killed && a.result === 'success' && !(info.signal === cfg.killSignal) && this.mainResult(cfg, info, false) !== 'success') {
        a.result = this.mainResult(cfg, info, false);
        a.reason = `main process ${describeExit(info)} when stopped`;
      }
    }
    this.setMainPid(undefined);
  }

  private async stopPostPhase(cfg: ServiceConfig, a: Attempt): Promise<void> {
    if (cfg.execStopPost.length === 0) return;
    this.setState('deactivating', 'stop-post');
    const post: Attempt = { ...a, env: { ...a.env, ...this.resultEnvironment(a) } };
    for (const cmd of cfg.execStopPost) {
      if (!(await this.control(cmd, post, this.timeoutStop(cfg), false)) && a.result === 'success') {
        a.result = post.result;
        a.reason = post.reason;
      }
    }
  }

  // -- helpers ---------------------------------------------------------------

  private timeoutStop(cfg: ServiceConfig): number {
    return cfg.timeoutStopMs ?? this.runner.defaultTimeoutStopMs;
  }

  /** $SERVICE_RESULT, $EXIT_CODE, $EXIT_STATUS for ExecStop= and ExecStopPost=, as systemd sets them. */
  private resultEnvironment(a: Attempt): Record<string, string> {
    const env: Record<string, string> = { SERVICE_RESULT: a.result };
    const info = this.main?.exitInfo;
    if (info) {
      env.EXIT_CODE = info.signal ? 'killed' : 'exited';
      env.EXIT_STATUS = info.signal ? info.signal.replace(/^SIG/, '') : String(info.error ? EXIT_EXEC : info.code);
    }
    return env;
  }

  private mainResult(cfg: ServiceConfig, info: ExitInfo, command: boolean): Result {
    if (info.error) return 'exit-code';
    if (info.code !== null) return info.code === 0 || cfg.successExitCodes.includes(info.code) ? 'success' : 'exit-code';
    const sig = info.signal!;
    if (cfg.successSignals.includes(sig) || (!command && CLEAN_DAEMON_SIGNALS.includes(sig))) return 'success';
    return 'signal';
  }

  /**
   * Runs a control command (or a oneshot ExecStart) to completion. Returns whether the
   * run may go on; on failure sets `a.result` and `a.reason`.
   */
  private async control(cmd: ExecCommand, a: Attempt, timeoutMs: number, cancelOnStop: boolean, isMain = false): Promise<boolean> {
    if (cancelOnStop && this.stopRequested) return false;
    const p = this.spawn(cmd, a);
    if (isMain) this.main = p;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      p.exited,
      new Promise<'timeout'>((resolve) => {
        if (Number.isFinite(timeoutMs)) timer = setTimeout(() => resolve('timeout'), timeoutMs);
      }),
      cancelOnStop ? this.stopRequest.then(() => 'stop' as const) : new Promise<never>(() => undefined),
    ]);
    clearTimeout(timer);
    const where = `${cmd.setting}=${cmd.argv.join(' ')}`;
    if (outcome === 'timeout' || outcome === 'stop') {
      if (outcome === 'timeout') this.log(`${where} timed out after ${timeoutMs} ms`);
      if (p.pid !== undefined) {
        const cfg = this.config!;
        signalGroup(p.pid, cfg.killSignal);
        if (!(await this.waitGroupsGone(this.timeoutStop(cfg), [p.pid]))) signalGroup(p.pid, 'SIGKILL');
      }
      await raceTimeout(p.exited, 1000);
      if (outcome === 'timeout') {
        a.result = 'timeout';
        a.reason = `${where} timed out after ${timeoutMs} ms`;
      }
      return false;
    }
    const result = isMain ? this.mainResult(this.config!, outcome, true) : outcome.code === 0 ? 'success' : outcome.signal ? 'signal' : 'exit-code';
    if (result === 'success') return true;
    this.log(`${where} ${describeExit(outcome)}${cmd.ignoreFailure ? ' (ignored: "-" prefix)' : ''}`);
    if (cmd.ignoreFailure) return true;
    a.result = result;
    a.reason = `${where} ${describeExit(outcome)}`;
    return false;
  }

  private spawn(cmd: ExecCommand, a: Attempt): Spawned {
    const argv = cmd.noSubstitution ? cmd.argv : [cmd.argv[0]!, ...substituteEnvironment(cmd.argv.slice(1), a.env)];
    let out: number | undefined;
    let child: ChildProcess;
    try {
      out = this.runner.openLog(this.name);
      child = spawn(cmd.path, argv.slice(1), {
        argv0: argv[0],
        cwd: a.cwd,
        env: a.env,
        detached: true, // setsid: its own process group, which stop signals as a whole
        stdio: ['ignore', out ?? 'ignore', out ?? 'ignore'],
      });
    } catch (err) {
      // Invalid arguments (a NUL byte in a value) throw instead of emitting 'error'.
      const info: ExitInfo = { code: EXIT_EXEC, signal: null, error: err as Error };
      return { pid: undefined, started: Promise.resolve(false), exited: Promise.resolve(info), exitInfo: info };
    } finally {
      if (out !== undefined) fs.closeSync(out);
    }
    const spawned: Spawned = {
      pid: child.pid,
      started: new Promise<boolean>((resolve) => {
        child.once('spawn', () => resolve(true));
        child.once('error', () => resolve(false));
      }),
      exited: new Promise<ExitInfo>((resolve) => {
        child.once('exit', (code, signal) => resolve({ code, signal }));
        child.once('error', (error) => resolve({ code: EXIT_EXEC, signal: null, error }));
      }),
    };
    void spawned.exited.then((info) => (spawned.exitInfo = info));
    if (child.pid !== undefined) this.groups.add(child.pid);
    return spawned;
  }

  private liveGroups(): number[] {
    for (const g of [...this.groups]) if (!processGroupAlive(g)) this.groups.delete(g);
    return [...this.groups];
  }

  private signalAll(signal: NodeJS.Signals): void {
    for (const g of this.liveGroups()) signalGroup(g, signal);
  }

  /** Waits until the given groups (default: all of the unit's) are empty; false on timeout. */
  private async waitGroupsGone(timeoutMs: number, groups?: number[]): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = groups ? groups.filter(processGroupAlive) : this.liveGroups();
      if (live.length === 0) return true;
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(POLL_MS, Math.max(1, deadline - Date.now())));
    }
  }
}

/** Whether Restart= restarts after a run that ended with `result` (systemd.service(5) table). */
function restartAllowed(policy: ServiceConfig['restart'], result: Result): boolean {
  switch (policy) {
    case 'no':
    case 'on-watchdog':
      return false;
    case 'always':
      return result !== 'start-limit-hit';
    case 'on-success':
      return result === 'success';
    case 'on-failure':
      return result !== 'success' && result !== 'start-limit-hit';
    case 'on-abnormal':
      return result === 'signal' || result === 'timeout';
    case 'on-abort':
      return result === 'signal';
  }
}

// ---------------------------------------------------------------------------
// The runner

export class ProcessRunner implements UnitRunner {
  readonly kind = 'process' as const;
  readonly defaultTimeoutStopMs: number;
  readonly defaultTimeoutStartMs: number;
  private readonly baseEnvironment: Readonly<Record<string, string>>;
  private readonly logDir?: string;
  private readonly specifiers: SpecifierContext;
  private readonly units = new Map<string, ProcessUnit>();
  private readonly listeners = new Set<StateListener>();
  private closed = false;

  constructor(options: ProcessRunnerOptions = {}) {
    this.defaultTimeoutStopMs = options.defaultTimeoutStopMs ?? 5000;
    this.defaultTimeoutStartMs = options.defaultTimeoutStartMs ?? 90_000;
    this.baseEnvironment = options.baseEnvironment ?? { PATH: DEFAULT_SERVICE_PATH };
    this.logDir = options.logDir;
    this.specifiers = options.specifiers ?? hostSpecifiers();
    if (this.logDir) fs.mkdirSync(this.logDir, { recursive: true });
  }

  async start(name: string, unitText: string): Promise<void> {
    if (this.closed) throw new FlotillaError('conflict', `cannot start ${name}: the runner is closed`);
    let unit = this.units.get(name);
    if (unit?.busy) {
      if (unit.text !== unitText) {
        throw new FlotillaError('conflict', `${name} is ${unit.status.active} with a different unit text; stop it before starting the new one`);
      }
      if (unit.status.active === 'active') return;
      if (unit.status.active === 'activating') return unit.waitForAttempt();
      await unit.lifecycle; // deactivating: let the stop finish, then start afresh
      if (unit.busy) return unit.waitForAttempt(); // someone else started it meanwhile
    }
    if (!unit) {
      unit = new ProcessUnit(name, this);
      this.units.set(name, unit);
    }
    let config: ServiceConfig;
    try {
      config = parseServiceConfig(parseUnitFile(unitText, name), this.specifiers);
    } catch (err) {
      unit.text = unitText;
      unit.config = undefined;
      unit.status = { ...unknownUnitStatus(name), load: 'bad-setting' };
      this.emit(unit.status);
      throw err;
    }
    const outcome = unit.waitForAttempt();
    unit.begin(unitText, config);
    await outcome;
  }

  async stop(name: string): Promise<void> {
    const unit = this.units.get(name);
    if (!unit?.lifecycle) return;
    unit.requestStop();
    await unit.lifecycle;
  }

  async remove(name: string): Promise<void> {
    await this.stop(name);
    if (this.units.delete(name)) this.emit(unknownUnitStatus(name));
  }

  async state(name: string): Promise<UnitStatus> {
    const unit = this.units.get(name);
    return unit ? { ...unit.status } : unknownUnitStatus(name);
  }

  list(): string[] {
    return [...this.units.keys()].sort();
  }

  onStateChange(listener: StateListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.units.keys()].map((n) => this.stop(n)));
    this.listeners.clear();
  }

  // -- used by ProcessUnit -------------------------------------------------

  /** @internal */
  emit(status: UnitStatus): void {
    for (const l of this.listeners) {
      try {
        l({ ...status });
      } catch {
        // A listener's bug must not break the unit's state machine.
      }
    }
  }

  /** @internal Environment=, then EnvironmentFile= (which overrides it, as in systemd). */
  environmentFor(cfg: ServiceConfig): Record<string, string> {
    const env: Record<string, string> = { ...this.baseEnvironment };
    for (const [k, v] of cfg.environment) env[k] = v;
    for (const f of cfg.environmentFiles) {
      let text: string;
      try {
        text = fs.readFileSync(f.path, 'utf8');
      } catch (err) {
        if (f.optional && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw new Error(`EnvironmentFile=${f.path}: ${(err as Error).message}`);
      }
      for (const [k, v] of parseEnvironmentFile(text, f.path)) env[k] = v;
    }
    return env;
  }

  /** @internal */
  workingDirectoryFor(cfg: ServiceConfig): string {
    const wd = cfg.workingDirectory;
    if (!wd) return '/';
    try {
      if (fs.statSync(wd.path).isDirectory()) return wd.path;
    } catch {
      /* missing: handled below */
    }
    if (wd.optional) return '/';
    throw new Error(`WorkingDirectory=${wd.path} does not exist or is not a directory`);
  }

  /** @internal A file descriptor appending to the unit's log, or undefined when logs are off. */
  openLog(name: string): number | undefined {
    return this.logDir ? fs.openSync(path.join(this.logDir, `${name}.log`), 'a') : undefined;
  }

  /** @internal */
  log(name: string, message: string): void {
    if (!this.logDir) return;
    try {
      fs.appendFileSync(path.join(this.logDir, `${name}.log`), `flotilla: ${message}\n`);
    } catch {
      /* logging must never break a unit */
    }
  }
}

/** Host facts for the host specifiers, read once. */
export function hostSpecifiers(): SpecifierContext {
  let machineId: string | undefined;
  try {
    machineId = fs.readFileSync('/etc/machine-id', 'utf8').trim() || undefined;
  } catch {
    machineId = undefined;
  }
  const user = os.userInfo();
  return {
    hostname: os.hostname(),
    machineId,
    runtimeDir: user.uid === 0 ? '/run' : (process.env.XDG_RUNTIME_DIR ?? '/run'),
    home: user.homedir,
    userName: user.username,
    uid: user.uid,
  };
}
