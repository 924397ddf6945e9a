/**
 * Runs units through the host's systemd: the unit file goes to /run/systemd/system
 * (runtime units, gone after a reboot, like fleet's), then `systemctl daemon-reload`,
 * `start`, `stop`, and `show` for the state.
 *
 * Honest limits: the development machine does not boot with systemd, so this runner is
 * exercised only through an injected `exec` in the tests (the command sequence, the
 * file writes, the parsing of `systemctl show`); against a real systemd it is untested
 * here. State changes are polled (`systemctl show`), not read from D-Bus.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import { writeFileAtomic } from '../../util/fs';
import { parseUnitFile, unitNameInfo } from '../unit-file';
import { unknownUnitStatus, type ActiveState, type LoadState, type StateListener, type UnitRunner, type UnitStatus } from './types';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `systemctl` with these arguments. Injectable so the runner can be tested without systemd. */
export type SystemctlExec = (args: readonly string[]) => Promise<ExecResult>;

export interface SystemdRunnerOptions {
  /** Where unit files are written; default /run/systemd/system. */
  unitDir?: string;
  exec?: SystemctlExec;
  /** How often state is polled while someone listens; default 1000 ms. */
  pollIntervalMs?: number;
  /**
   * Where the names of the units this runner wrote are kept, so that the next runner (a
   * restarted agent) adopts what its predecessor left running; default
   * OWNED_UNITS_FILE with the system unit directory, none otherwise.
   */
  ownedFile?: string;
}

export const SYSTEMD_RUNTIME_UNIT_DIR = '/run/systemd/system';
/** The owned-units list for the system unit directory (tmpfs, like the units: gone at reboot). */
export const OWNED_UNITS_FILE = '/run/flotilla/systemd-runner-units.json';

/** Runs the real systemctl. A missing binary is 'missing-tool'; a non-zero exit is returned, not thrown. */
export const runSystemctl: SystemctlExec = (args) =>
  new Promise((resolve, reject) => {
    execFile('systemctl', [...args], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new FlotillaError('missing-tool', 'systemctl not found: the systemd runner needs systemd', [], { cause: err }));
        return;
      }
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });

const ACTIVE_STATES: readonly string[] = ['active', 'inactive', 'activating', 'deactivating', 'failed'];
const LOAD_STATES: readonly string[] = ['loaded', 'not-found', 'bad-setting', 'error'];

/** Parses `systemctl show -p LoadState,ActiveState,SubState,MainPID,Result` output. */
export function parseSystemctlShow(name: string, stdout: string): UnitStatus {
  const props = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) props.set(line.slice(0, eq), line.slice(eq + 1).trim());
  }
  const active = props.get('ActiveState') ?? '';
  const load = props.get('LoadState') ?? '';
  // systemd has states this interface folds: reloading/refreshing are active, maintenance is deactivating, masked is an error.
  const foldedActive = (ACTIVE_STATES.includes(active) ? active : active === 'reloading' || active === 'refreshing' ? 'active' : active === 'maintenance' ? 'deactivating' : 'inactive') as ActiveState;
  const foldedLoad = (LOAD_STATES.includes(load) ? load : load === 'masked' ? 'error' : 'not-found') as LoadState;
  const status: UnitStatus = { name, load: foldedLoad, active: foldedActive, sub: props.get('SubState') || 'dead' };
  const pid = Number(props.get('MainPID'));
  if (Number.isInteger(pid) && pid > 0) status.mainPid = pid;
  const result = props.get('Result');
  if (result) status.result = result;
  return status;
}

function sameStatus(a: UnitStatus, b: UnitStatus): boolean {
  return a.load === b.load && a.active === b.active && a.sub === b.sub && a.mainPid === b.mainPid && a.result === b.result;
}

export class SystemdRunner implements UnitRunner {
  readonly kind = 'systemd' as const;
  readonly unitDir: string;
  private readonly exec: SystemctlExec;
  private readonly pollIntervalMs: number;
  /** Units this runner wrote, with the text written and the last status seen. */
  private readonly units = new Map<string, { text: string; status: UnitStatus }>();
  private readonly listeners = new Set<StateListener>();
  private pollTimer?: NodeJS.Timeout;
  private polling = false;
  private closed = false;

  private readonly ownedFile: string | undefined;
  /** Units adopted from a previous runner process and not yet started or removed by this one. */
  private readonly leftovers = new Set<string>();

  constructor(options: SystemdRunnerOptions = {}) {
    this.unitDir = options.unitDir ?? SYSTEMD_RUNTIME_UNIT_DIR;
    this.exec = options.exec ?? runSystemctl;
    this.pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.ownedFile = options.ownedFile ?? (this.unitDir === SYSTEMD_RUNTIME_UNIT_DIR ? OWNED_UNITS_FILE : undefined);
    this.adopt();
  }

  /**
   * Takes over the units a previous runner wrote and left (its agent was killed): they are
   * listed again, so the agent's first reconcile keeps those still assigned here and stops
   * the ones the engine has meanwhile placed elsewhere, instead of leaving them running.
   */
  private adopt(): void {
    if (!this.ownedFile) return;
    let names: unknown;
    try {
      names = JSON.parse(fs.readFileSync(this.ownedFile, 'utf8'));
    } catch {
      return; // none yet, or unreadable: nothing to adopt
    }
    if (!Array.isArray(names)) return;
    for (const name of names) {
      if (typeof name !== 'string' || name.includes('/') || name.startsWith('.')) continue;
      try {
        this.units.set(name, { text: fs.readFileSync(this.unitPath(name), 'utf8'), status: unknownUnitStatus(name) });
        this.leftovers.add(name);
      } catch {
        /* its file is gone: nothing to adopt */
      }
    }
    this.saveOwned();
  }

  private saveOwned(): void {
    if (!this.ownedFile) return;
    fs.mkdirSync(path.dirname(this.ownedFile), { recursive: true });
    writeFileAtomic(this.ownedFile, `${JSON.stringify(this.list())}\n`);
  }

  private async systemctl(args: readonly string[], what: string): Promise<ExecResult> {
    const r = await this.exec(args);
    if (r.code !== 0) {
      const detail = (r.stderr || r.stdout).trim();
      throw new FlotillaError('external', `${what}: systemctl ${args.join(' ')} exited with status ${r.code}${detail ? `: ${detail}` : ''}`);
    }
    return r;
  }

  private unitPath(name: string): string {
    return path.join(this.unitDir, name);
  }

  async start(name: string, unitText: string): Promise<void> {
    if (this.closed) throw new FlotillaError('conflict', `cannot start ${name}: the runner is closed`);
    this.leftovers.delete(name);
    const info = unitNameInfo(name);
    if (info.kind === 'template') throw new FlotillaError('invalid-input', `${name} is a template; start an instance such as ${info.prefix}@1.${info.type}`);
    parseUnitFile(unitText, name); // refuse what systemd would only warn about

    const file = this.unitPath(name);
    let onDisk: string | undefined;
    try {
      onDisk = fs.readFileSync(file, 'utf8');
    } catch {
      onDisk = undefined;
    }
    if (onDisk !== undefined && onDisk !== unitText) {
      const current = await this.refresh(name);
      if (current.active !== 'inactive' && current.active !== 'failed') {
        throw new FlotillaError('conflict', `${name} is ${current.active} with a different unit text; stop it before starting the new one`);
      }
    }
    const known = this.units.get(name);
    this.units.set(name, { text: unitText, status: known?.status ?? unknownUnitStatus(name) });
    if (!known) this.saveOwned();
    if (onDisk !== unitText) {
      writeFileAtomic(file, unitText);
      await this.systemctl(['daemon-reload'], `cannot load ${name}`);
    }
    // Like the process runner: an explicit start clears a previous failure and its start-limit count.
    await this.exec(['reset-failed', name]);
    try {
      await this.systemctl(['start', name], `${name} failed to start`);
    } finally {
      await this.refresh(name).catch(() => undefined);
    }
    this.ensurePolling();
  }

  async stop(name: string): Promise<void> {
    if (!this.units.has(name)) return;
    try {
      await this.systemctl(['stop', name], `cannot stop ${name}`);
    } finally {
      await this.refresh(name).catch(() => undefined);
    }
  }

  /**
   * A new agent process never resumes its predecessor's lease: that lease expires and the engine
   * places the machine's units elsewhere. Units left running would then run twice for as long as
   * the new agent takes to register and reconcile (a minute on an emulated node, past the
   * fencing window), so fleetd stops them before it even dials etcd.
   */
  async stopLeftovers(): Promise<string[]> {
    const names = [...this.leftovers].sort();
    for (const name of names) await this.remove(name);
    return names;
  }

  async remove(name: string): Promise<void> {
    this.leftovers.delete(name);
    if (!this.units.has(name)) return;
    await this.stop(name);
    fs.rmSync(this.unitPath(name), { force: true });
    this.units.delete(name);
    this.saveOwned();
    await this.systemctl(['daemon-reload'], `cannot unload ${name}`);
    this.emit(unknownUnitStatus(name));
  }

  async state(name: string): Promise<UnitStatus> {
    return this.refresh(name);
  }

  list(): string[] {
    return [...this.units.keys()].sort();
  }

  onStateChange(listener: StateListener): () => void {
    this.listeners.add(listener);
    this.ensurePolling();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stopPolling();
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopPolling();
    const names = this.list();
    const errors: string[] = [];
    for (const name of names) {
      await this.exec(['stop', name]).then(
        (r) => (r.code === 0 ? undefined : errors.push(`stop ${name}: ${(r.stderr || r.stdout).trim()}`)),
        (err: unknown) => errors.push(`stop ${name}: ${(err as Error).message}`),
      );
      fs.rmSync(this.unitPath(name), { force: true });
      this.units.delete(name);
    }
    this.saveOwned();
    if (names.length > 0) await this.systemctl(['daemon-reload'], 'cannot unload units on close');
    this.listeners.clear();
    if (errors.length > 0) throw new FlotillaError('external', `closing the systemd runner:\n  ${errors.join('\n  ')}`);
  }

  /** Reads the unit's state from systemd, remembers it and tells listeners if it changed. */
  private async refresh(name: string): Promise<UnitStatus> {
    const r = await this.systemctl(['show', '-p', 'LoadState,ActiveState,SubState,MainPID,Result', '--', name], `cannot read the state of ${name}`);
    const status = parseSystemctlShow(name, r.stdout);
    const known = this.units.get(name);
    if (known && !sameStatus(known.status, status)) {
      known.status = status;
      this.emit(status);
    }
    return status;
  }

  private emit(status: UnitStatus): void {
    for (const l of this.listeners) {
      try {
        l({ ...status });
      } catch {
        // A listener's bug must not stop the polling.
      }
    }
  }

  private ensurePolling(): void {
    if (this.pollTimer || this.closed || this.listeners.size === 0 || this.units.size === 0) return;
    this.pollTimer = setInterval(() => void this.pollOnce(), this.pollIntervalMs);
    this.pollTimer.unref(); // polling alone must not keep the process alive
  }

  private stopPolling(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }

  private async pollOnce(): Promise<void> {
    if (this.polling) return; // a slow systemctl must not pile up polls
    this.polling = true;
    try {
      for (const name of this.list()) await this.refresh(name).catch(() => undefined);
    } finally {
      this.polling = false;
    }
  }
}

export interface DetectRunnerOptions {
  /** Default /run/systemd/system, which exists only when systemd booted the host. */
  systemdDir?: string;
  /** Default /proc/1/comm. */
  pid1CommPath?: string;
}

/** 'systemd' when systemd is PID 1 (the check sd_booted() makes, plus PID 1's name); else 'process'. */
export function detectRunner(options: DetectRunnerOptions = {}): 'systemd' | 'process' {
  const dir = options.systemdDir ?? SYSTEMD_RUNTIME_UNIT_DIR;
  try {
    if (!fs.statSync(dir).isDirectory()) return 'process';
    const comm = fs.readFileSync(options.pid1CommPath ?? '/proc/1/comm', 'utf8').trim();
    return comm === 'systemd' ? 'systemd' : 'process';
  } catch {
    return 'process';
  }
}
