/**
 * One `.service` unit run as plain child processes, with systemd's service state
 * machine (systemd.service(5)): ExecStartPre, ExecStart, ExecStartPost, ExecStop,
 * ExecStopPost in their sub-states, Restart= with RestartSec= and the start limit, stop
 * timeouts with SIGKILL escalation, and the waiters of a start settled by its outcome.
 */
import { FlotillaError } from '../../errors';
import { substituteEnvironment, type ExecCommand } from './command-line';
import { ProcessGroups, signalGroup, spawnInGroup, type Spawned } from './process-groups';
import { StartLimit, restartAllowed } from './restart-policy';
import { describeExit, mainResult, resultEnvironment, type ServiceResult } from './run-result';
import type { ServiceConfig } from './service-config';
import { unknownUnitStatus, type ActiveState, type UnitStatus } from './types';

/** What a unit needs from the runner that owns it. */
export interface UnitHost {
  readonly defaultTimeoutStopMs: number;
  readonly defaultTimeoutStartMs: number;
  /** Tells the runner's listeners about a state change. */
  emit(status: UnitStatus): void;
  /** The environment of the unit's commands; throws Error when it cannot be assembled. */
  environmentFor(cfg: ServiceConfig): Record<string, string>;
  /** The working directory of the unit's commands; throws Error when it is missing. */
  workingDirectoryFor(cfg: ServiceConfig): string;
  /** A file descriptor appending to the unit's log, or undefined when logs are off. */
  openLog(name: string): number | undefined;
  /** Notes a message in the unit's log. */
  log(name: string, message: string): void;
}

/** How long to wait for processes to vanish after SIGKILL before giving up on them. */
const SIGKILL_WAIT_MS = 10_000;

/** The promise's value, or undefined if it takes longer than `ms` (the timer is cleared either way). */
async function raceTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

interface Attempt {
  /** A Type=oneshot without RemainAfterExit ran its commands: start succeeds once the unit is dead again. */
  oneshotDone?: boolean;
  env: Record<string, string>;
  cwd: string;
  result: ServiceResult;
  reason: string;
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

/** One unit under the process runner: its status and the lifecycle of its start attempts. */
export class ProcessUnit {
  status: UnitStatus;
  text = '';
  config?: ServiceConfig;
  /** Set while a lifecycle runs: from start until the unit is dead or failed. */
  lifecycle?: Promise<void>;
  private stopRequested = false;
  private stopRequest: Promise<void> = Promise.resolve();
  private wakeForStop: () => void = () => undefined;
  private readonly startLimit = new StartLimit();
  private readonly groups = new ProcessGroups();
  private main?: Spawned;
  private waiters: Waiter[] = [];

  constructor(
    readonly name: string,
    private readonly runner: UnitHost,
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
    this.startLimit.reset(); // an explicit start resets the start limit, like reset-failed
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
        if (!this.startLimit.take(cfg)) {
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
      this.groups.signalAllUnchecked('SIGKILL');
      this.finish('resources', `${this.name}: internal error in the process runner: ${(err as Error).message}`);
    }
  }

  private finish(result: ServiceResult, failure: string, oneshotDone = false): void {
    this.setMainPid(undefined);
    this.status = { ...this.status, result };
    if (result === 'success') this.setState('inactive', 'dead');
    else this.setState('failed', 'failed');
    if (oneshotDone && result === 'success') this.settleWaiters();
    else if (result === 'success') this.settleWaiters(new FlotillaError('conflict', `${this.name} was stopped before it became active`));
    else this.settleWaiters(new FlotillaError('external', failure));
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
    a.result = mainResult(cfg, exited, false);
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
    const stopAttempt: Attempt = { ...a, env: { ...a.env, ...resultEnvironment(a.result, this.main?.exitInfo), ...(mainAlive ? { MAINPID: String(this.main!.pid) } : {}) } };
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
    if (this.groups.live().length === 0 && !mainAlive) return;
    this.setState('deactivating', termSub);
    this.groups.signal(cfg.killSignal);
    if (cfg.killSignal !== 'SIGKILL') this.groups.signal('SIGCONT'); // wake stopped processes so they see the signal
    let killed = false;
    if (!(await this.groups.waitGone(this.timeoutStop(cfg)))) {
      this.setState('deactivating', killSub);
      this.log(`processes still running after ${this.timeoutStop(cfg)} ms, sending SIGKILL`);
      this.groups.signal('SIGKILL');
      killed = true;
      if (!(await this.groups.waitGone(SIGKILL_WAIT_MS))) this.log(`processes survived SIGKILL: groups ${this.groups.live().join(' ')}`);
      if (a.result === 'success') {
        a.result = 'timeout';
        a.reason = `processes did not exit within TimeoutStopSec (${this.timeoutStop(cfg)} ms)`;
      }
    }
    if (mainAlive && this.main) {
      const info = await raceTimeout(this.main.exited, 1000);
      // Dying of our own KillSignal is how a stop is meant to end.
      if (info && !killed && a.result === 'success' && !(info.signal === cfg.killSignal) && mainResult(cfg, info, false) !== 'success') {
        a.result = mainResult(cfg, info, false);
        a.reason = `main process ${describeExit(info)} when stopped`;
      }
    }
    this.setMainPid(undefined);
  }

  private async stopPostPhase(cfg: ServiceConfig, a: Attempt): Promise<void> {
    if (cfg.execStopPost.length === 0) return;
    this.setState('deactivating', 'stop-post');
    const post: Attempt = { ...a, env: { ...a.env, ...resultEnvironment(a.result, this.main?.exitInfo) } };
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
        if (!(await this.groups.waitGone(this.timeoutStop(cfg), [p.pid]))) signalGroup(p.pid, 'SIGKILL');
      }
      await raceTimeout(p.exited, 1000);
      if (outcome === 'timeout') {
        a.result = 'timeout';
        a.reason = `${where} timed out after ${timeoutMs} ms`;
      }
      return false;
    }
    const result = isMain ? mainResult(this.config!, outcome, true) : outcome.code === 0 ? 'success' : outcome.signal ? 'signal' : 'exit-code';
    if (result === 'success') return true;
    this.log(`${where} ${describeExit(outcome)}${cmd.ignoreFailure ? ' (ignored: "-" prefix)' : ''}`);
    if (cmd.ignoreFailure) return true;
    a.result = result;
    a.reason = `${where} ${describeExit(outcome)}`;
    return false;
  }

  private spawn(cmd: ExecCommand, a: Attempt): Spawned {
    const argv = cmd.noSubstitution ? cmd.argv : [cmd.argv[0]!, ...substituteEnvironment(cmd.argv.slice(1), a.env)];
    const spawned = spawnInGroup(cmd.path, argv, { cwd: a.cwd, env: a.env, openOutput: () => this.runner.openLog(this.name) });
    if (spawned.pid !== undefined) this.groups.add(spawned.pid);
    return spawned;
  }
}
