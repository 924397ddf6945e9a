/**
 * Runs `.service` units as plain child processes, with systemd's service semantics, for
 * tests and hosts where systemd is not PID 1: the UnitRunner over one ProcessUnit per
 * unit name, with what all units share (default timeouts, the base environment, the
 * log directory, host specifiers) and the state listeners.
 */
import { FlotillaError } from '../../errors';
import { parseUnitFile } from '../unit-file';
import { DEFAULT_SERVICE_PATH, serviceEnvironment, serviceWorkingDirectory } from './exec-context';
import { ProcessUnit, type UnitHost } from './process-unit';
import { parseServiceConfig, type ServiceConfig } from './service-config';
import { hostSpecifiers, type SpecifierContext } from './specifiers';
import { unknownUnitStatus, type StateListener, type UnitRunner, type UnitStatus } from './types';
import { UnitLogs } from './unit-logs';

export { DEFAULT_SERVICE_PATH } from './exec-context';
export { processGroupAlive, processGroupMembers } from './process-groups';
export { hostSpecifiers } from './specifiers';

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

export class ProcessRunner implements UnitRunner, UnitHost {
  readonly kind = 'process' as const;
  readonly defaultTimeoutStopMs: number;
  readonly defaultTimeoutStartMs: number;
  private readonly baseEnvironment: Readonly<Record<string, string>>;
  private readonly specifiers: SpecifierContext;
  private readonly logs: UnitLogs;
  private readonly units = new Map<string, ProcessUnit>();
  private readonly listeners = new Set<StateListener>();
  private closed = false;

  constructor(options: ProcessRunnerOptions = {}) {
    this.defaultTimeoutStopMs = options.defaultTimeoutStopMs ?? 5000;
    this.defaultTimeoutStartMs = options.defaultTimeoutStartMs ?? 90_000;
    this.baseEnvironment = options.baseEnvironment ?? { PATH: DEFAULT_SERVICE_PATH };
    this.specifiers = options.specifiers ?? hostSpecifiers();
    this.logs = new UnitLogs(options.logDir);
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
    return serviceEnvironment(this.baseEnvironment, cfg);
  }

  /** @internal */
  workingDirectoryFor(cfg: ServiceConfig): string {
    return serviceWorkingDirectory(cfg);
  }

  /** @internal A file descriptor appending to the unit's log, or undefined when logs are off. */
  openLog(name: string): number | undefined {
    return this.logs.open(name);
  }

  /** @internal */
  log(name: string, message: string): void {
    this.logs.note(name, message);
  }
}
