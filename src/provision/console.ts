/**
 * What a node's serial console (console.log, written by QEMU) says about its first boot: the
 * image's progress markers (`FLOTILLA-READY ssh|first-boot <uptime>`, recipe.ts) and first-boot
 * failures — Ignition's `CRITICAL : Ignition failed: ...`, cloud-init's `Running module X (...)
 * failed` / `Failed to run module X`, and the image's own `FLOTILLA-FAILED first-boot <stage> ...`
 * that the first-boot units print when they fail (whatever the reason, with no line of their
 * own). Every wait of `up` and `replace` checks a ConsoleWatch, so a first boot that failed stops
 * the wait within a poll instead of at its deadline.
 */
import * as fs from 'node:fs';
import { FlotillaError } from '../errors';
import { CONSOLE_FAILURE_MARKER, CONSOLE_MARKER } from './image/recipe';

export type FirstBootStage = 'ignition' | 'cloud-init';
export type ConsoleMarker = 'ssh' | 'first-boot';

export interface ConsoleFailure {
  stage: FirstBootStage;
  /** The console line that says so (control characters and terminal escapes removed). */
  line: string;
  /** 1-based line number in console.log. */
  lineNumber: number;
  /** True when only the image's FLOTILLA-FAILED marker said so (no line from Ignition or cloud-init). */
  markerOnly: boolean;
}

export interface ConsoleReport {
  /** Each marker with the guest's uptime when it was written. */
  markers: Partial<Record<ConsoleMarker, number>>;
  failure?: ConsoleFailure;
}

/** Lines that mean first boot failed, most specific first (the first kind found is reported). */
const FAILURE_LINES: ReadonlyArray<{ stage: FirstBootStage; re: RegExp }> = [
  // Ignition's final error (Ignition 2.14: "CRITICAL : Ignition failed: %v"), with the whole error chain.
  { stage: 'ignition', re: /\bIgnition failed\b/ },
  // cloud-init 22.4 (util.logexc in config/modules.py, cc_scripts_*): a module raised or a script failed.
  { stage: 'cloud-init', re: /\bRunning module \S+ \(.*\) failed\b/ },
  { stage: 'cloud-init', re: /\bFailed to run module \S+/ },
];
const MARKER_FAILURE = new RegExp(`${CONSOLE_FAILURE_MARKER} first-boot (ignition|cloud-init)\\b`);
const PROGRESS = new RegExp(`${CONSOLE_MARKER} (ssh|first-boot) ([0-9.]+)`, 'g');

function clean(line: string): string {
  // eslint-disable-next-line no-control-regex
  return line.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '').trim();
}

/** Markers and the first-boot failure (if any) in console text. Pure. */
export function parseConsole(text: string): ConsoleReport {
  const markers: ConsoleReport['markers'] = {};
  for (const m of text.matchAll(PROGRESS)) markers[m[1] as ConsoleMarker] = Number(m[2]);
  const lines = text.split('\n');
  let failure: ConsoleFailure | undefined;
  for (const { stage, re } of FAILURE_LINES) {
    const i = lines.findIndex((l) => re.test(l));
    if (i >= 0) {
      failure = { stage, line: clean(lines[i]!), lineNumber: i + 1, markerOnly: false };
      break;
    }
  }
  if (!failure) {
    const i = lines.findIndex((l) => MARKER_FAILURE.test(l));
    if (i >= 0) failure = { stage: MARKER_FAILURE.exec(lines[i]!)![1] as FirstBootStage, line: clean(lines[i]!), lineNumber: i + 1, markerOnly: true };
  }
  return failure ? { markers, failure } : { markers };
}

/** parseConsole of a console log; nothing if it does not exist yet. */
export function readConsole(consoleLog: string): ConsoleReport {
  let text: string;
  try {
    text = fs.readFileSync(consoleLog, 'latin1');
  } catch {
    return { markers: {} };
  }
  return parseConsole(text);
}

/** A node's first boot failed: names the node, the stage and the console line. */
export class FirstBootFailedError extends FlotillaError {
  constructor(
    readonly node: string,
    readonly stage: FirstBootStage,
    readonly line: string,
    readonly consoleLog: string,
    readonly lineNumber: number,
    /** Seconds since the node's launch when the host saw it. */
    readonly seconds: number | undefined,
    readonly tail: string,
    /** What was done about it (e.g. the VMs were stopped), one line. */
    readonly note?: string,
  ) {
    super(
      'external',
      `node ${node}: first boot failed in ${stage}${seconds !== undefined ? ` (seen ${seconds.toFixed(1)} s after launch)` : ''}: ${line}\n` +
        `${note ? `${note}\n` : ''}console log: ${consoleLog}:${lineNumber}\n--- last lines ---\n${tail}`,
    );
  }

  withNote(note: string): FirstBootFailedError {
    return new FirstBootFailedError(this.node, this.stage, this.line, this.consoleLog, this.lineNumber, this.seconds, this.tail, note);
  }

  static override is(value: unknown): value is FirstBootFailedError {
    return FlotillaError.is(value) && typeof (value as Partial<FirstBootFailedError>).stage === 'string' && typeof (value as Partial<FirstBootFailedError>).withNote === 'function';
  }
}

/**
 * The console's last lines up to the failure line, without Ignition's "Full config:" dump (which
 * it prints on failure: the whole config, the node's private host key included, one JSON line each).
 */
export function consoleTail(text: string, upToLine?: number, lines = 15): string {
  let all = text.replace(/\r/g, '').split('\n');
  if (upToLine !== undefined) all = all.slice(0, upToLine);
  const out: string[] = [];
  for (let i = 0; i < all.length; i++) {
    const m = /^(?:\[\s*[0-9.]+\]\s*)?(.*?)Full config:\s*$/.exec(all[i]!);
    if (m) {
      // The dump ends with its closing brace, after the same prefix (the journald identifier; the kernel timestamp differs).
      const close = all.findIndex((l, j) => j > i && new RegExp(`^(?:\\[\\s*[0-9.]+\\]\\s*)?${escapeRe(m[1]!)}\\}\\s*$`).test(l));
      const end = close >= 0 ? close : all.length - 1;
      out.push(`${all[i]} (${end - i} lines of Ignition's config dump left out)`);
      i = end;
    } else out.push(all[i]!);
  }
  return out.slice(-lines).join('\n');
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function tailOf(file: string, upToLine: number): string {
  try {
    return consoleTail(fs.readFileSync(file, 'latin1'), upToLine);
  } catch {
    return '(no console output)';
  }
}

/**
 * Watches a node's console while a wait runs. `check()` is cheap (it reads only what was
 * appended since the last call) and returns the failure once it is certain: at once for a line
 * from Ignition or cloud-init; for the image's marker alone, after `graceMs`, because the unit's
 * own output reaches the console through journald and can arrive after the marker.
 */
export class ConsoleWatch {
  private offset = 0;
  private text = '';
  private report: ConsoleReport = { markers: {} };
  private markerSeenAt: number | undefined;
  private failed: FirstBootFailedError | undefined;

  constructor(
    readonly node: string,
    readonly consoleLog: string,
    readonly launchedAt?: number,
    readonly graceMs = 5000,
  ) {}

  /** Markers seen so far (reads the new part of the console). */
  markers(): ConsoleReport['markers'] {
    this.poll();
    return this.report.markers;
  }

  /** The node's first-boot failure, once the console shows one. */
  check(now = Date.now()): FirstBootFailedError | undefined {
    if (this.failed) return this.failed;
    this.poll();
    const f = this.report.failure;
    if (!f) return undefined;
    if (f.markerOnly) {
      this.markerSeenAt ??= now;
      if (now - this.markerSeenAt < this.graceMs) return undefined;
    }
    const seconds = this.launchedAt !== undefined ? (now - this.launchedAt) / 1000 : undefined;
    this.failed = new FirstBootFailedError(this.node, f.stage, f.line, this.consoleLog, f.lineNumber, seconds, tailOf(this.consoleLog, f.lineNumber));
    return this.failed;
  }

  private poll(): void {
    let fd: number | undefined;
    try {
      fd = fs.openSync(this.consoleLog, 'r');
      const size = fs.fstatSync(fd).size;
      if (size < this.offset) {
        // Truncated (a relaunch): start again.
        this.offset = 0;
        this.text = '';
      }
      if (size === this.offset) return;
      const buf = Buffer.alloc(size - this.offset);
      const n = fs.readSync(fd, buf, 0, buf.length, this.offset);
      this.offset += n;
      this.text += buf.subarray(0, n).toString('latin1');
      this.report = parseConsole(this.text);
    } catch {
      /* not there yet */
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  }
}

/**
 * The consoles of several nodes booting together (a cluster): the first first-boot failure on
 * any of them, so that every node's wait stops when one node failed. Reads at most every 100 ms.
 */
export class FirstBootWatch {
  private readonly watches: Map<string, ConsoleWatch>;
  private failed: FirstBootFailedError | undefined;
  private lastPoll = 0;

  constructor(nodes: ReadonlyArray<{ name: string; consoleLog: string; launchedAt?: number }>, graceMs?: number) {
    this.watches = new Map(nodes.map((n) => [n.name, new ConsoleWatch(n.name, n.consoleLog, n.launchedAt, graceMs)]));
  }

  /** The first node failure seen so far. */
  failure(now = Date.now()): FirstBootFailedError | undefined {
    if (this.failed || now - this.lastPoll < 100) return this.failed;
    this.lastPoll = now;
    for (const w of this.watches.values()) {
      const f = w.check(now);
      if (f) return (this.failed = f);
    }
    return undefined;
  }

  /** The node's console has shown this progress marker. */
  saw(node: string, marker: ConsoleMarker): boolean {
    return this.watches.get(node)?.markers()[marker] !== undefined;
  }

  /** `wait`, or the first failure if one is seen before it settles. */
  guard<T>(wait: Promise<T>): Promise<T> {
    return unlessFailed(wait, () => this.failure());
  }
}

/**
 * Runs `wait` while checking `failed` every `intervalMs`: rejects with the failure as soon as it
 * reports one (the wait's own result is then ignored), else settles as `wait` does.
 */
export async function unlessFailed<T>(wait: Promise<T>, failed: () => Error | undefined, intervalMs = 250): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const watch = new Promise<never>((_, reject) => {
    const tick = (): void => {
      const err = failed();
      if (err) reject(err);
      else timer = setTimeout(tick, intervalMs);
    };
    tick();
  });
  try {
    return await Promise.race([wait, watch]);
  } finally {
    if (timer) clearTimeout(timer);
    wait.catch(() => undefined);
  }
}
