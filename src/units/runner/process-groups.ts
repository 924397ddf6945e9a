/**
 * Process groups, the process runner's stand-in for systemd's cgroup. Every command is
 * spawned detached, so setsid makes it the leader of its own group and its forked
 * children stay in that group; a unit's processes are then found and signalled group
 * by group, so they do not leak. A child that calls setsid itself escapes; only a
 * cgroup could catch that.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { sleep } from '../../util/async';
import { EXIT_EXEC, type ExitInfo } from './run-result';

const POLL_MS = 20;

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

/** Sends `signal` to every process in group `pgid`; a group that is gone is no error. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    /* gone already */
  }
}

/** A spawned command. */
export interface Spawned {
  pid: number | undefined;
  /** True once exec succeeded, false if it failed. */
  started: Promise<boolean>;
  exited: Promise<ExitInfo>;
  exitInfo?: ExitInfo;
}

export interface SpawnOptions {
  cwd: string;
  env: Record<string, string>;
  /** A file descriptor for stdout and stderr (closed here once the child has it), or undefined to discard them. */
  openOutput: () => number | undefined;
}

/**
 * Runs `file` with `argv` (argv[0] first), without a shell, as the leader of a new
 * process group. Never throws: a command that cannot be started exits with EXIT_EXEC.
 */
export function spawnInGroup(file: string, argv: readonly string[], options: SpawnOptions): Spawned {
  let out: number | undefined;
  let child: ChildProcess;
  try {
    out = options.openOutput();
    child = spawn(file, argv.slice(1), {
      argv0: argv[0],
      cwd: options.cwd,
      env: options.env,
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
  return spawned;
}

/** The process groups one unit's commands have created. */
export class ProcessGroups {
  private readonly groups = new Set<number>();

  add(pgid: number): void {
    this.groups.add(pgid);
  }

  /** The groups that still have live processes; the others are forgotten. */
  live(): number[] {
    for (const g of [...this.groups]) if (!processGroupAlive(g)) this.groups.delete(g);
    return [...this.groups];
  }

  /** Signals every group that still has live processes. */
  signal(signal: NodeJS.Signals): void {
    for (const g of this.live()) signalGroup(g, signal);
  }

  /** Signals every group ever added, without looking which are alive. */
  signalAllUnchecked(signal: NodeJS.Signals): void {
    for (const g of this.groups) signalGroup(g, signal);
  }

  /** Waits until the given groups (default: all of them) are empty; false on timeout. */
  async waitGone(timeoutMs: number, groups?: number[]): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = groups ? groups.filter(processGroupAlive) : this.live();
      if (live.length === 0) return true;
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(POLL_MS, Math.max(1, deadline - Date.now())));
    }
  }
}
