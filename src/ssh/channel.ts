/**
 * One command on an SSH channel: opening it without losing early events, reading both streams
 * to their end under an output cap, the process-group marker that lets a deadline kill the
 * command's whole tree, and the channel slots that keep within sshd's MaxSessions.
 */
import type { Client, ClientChannel } from 'ssh2';
import { SshError } from './errors';

export interface ExecOptions {
  /** Deadline for this command, from the call (queueing included). */
  timeoutMs?: number;
  /** Run through `sudo -n` (skipped when logged in as root). */
  sudo?: boolean;
  /** Sent to the command's stdin, which is then closed. */
  stdin?: string | Buffer;
  /** Aborting closes the channel (the command is signalled) and rejects with `timeout`. */
  signal?: AbortSignal;
  /** Output kept per stream (bytes, default 64 MiB); the rest is read and dropped, and `truncated` set. */
  maxOutputBytes?: number;
  /** What errors call this command (default: its program's name; never its text). */
  label?: string;
}

export interface ExecResult {
  /** Exit status, or null when the command was killed by a signal. */
  code: number | null;
  /** Signal name without SIG (e.g. `KILL`), or null. */
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Wall-clock time from the call, queueing for a channel included. */
  ms: number;
  /** True when output beyond `maxOutputBytes` was dropped. */
  truncated: boolean;
}

/** A counting semaphore for a connection's session channels. */
export class Slots {
  private free: number;
  private readonly waiters: Array<() => void> = [];
  constructor(n: number) {
    this.free = n;
  }
  acquire(signal?: AbortSignal): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const w = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal!.reason);
      };
      this.waiters.push(w);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
  release(): void {
    const w = this.waiters.shift();
    if (w) w();
    else this.free++;
  }
}

const WRAPPERS = new Set(['sudo', 'env', 'exec', 'nice', 'nohup', 'timeout', 'setsid', '--']);

/**
 * What errors call a command: the caller's label, or the name of the program it runs. Never its
 * arguments or the rest of its text, which may hold secrets (a token, a key piped in a heredoc).
 */
export function commandLabel(command: string, label?: string): string {
  if (label) return label;
  const program = command
    .trim()
    .split(/\s+/)
    .find((w) => !WRAPPERS.has(w) && !w.startsWith('-') && !w.includes('=') && !/^\d/.test(w));
  const name = program?.split('/').pop();
  return name && /^[A-Za-z0-9_.+-]{1,64}$/.test(name) ? `\`${name} …\`` : 'a command';
}

/** sshd refused to open a session channel (OpenSSH: "no more sessions", reason 2). */
export function sessionRefused(err: unknown): boolean {
  return err instanceof Error && (err as { reason?: unknown }).reason === 2 && /open failed/i.test(err.message);
}

/** An exec channel with what happened before anyone listened: ssh2 emits `exit` and `close` as plain events. */
export interface OpenedExec {
  ch: ClientChannel;
  exit: { got: boolean; code: number | null; signal: string | null };
  closed: boolean;
}

/**
 * Opens an exec channel and records its exit status and close from the first moment: when
 * sshd's CHANNEL_SUCCESS, exit-status and CHANNEL_CLOSE arrive in one read (a busy host),
 * ssh2 emits them before an awaiting caller could attach listeners, and they would be lost.
 * A channel that opens after `signal` aborted is closed at once.
 */
export function openExec(client: Client, command: string, signal?: AbortSignal): Promise<OpenedExec> {
  return new Promise((resolve, reject) => {
    try {
      client.exec(command, (err, ch) => {
        if (err) return reject(err);
        const opened: OpenedExec = { ch, exit: { got: false, code: null, signal: null }, closed: false };
        ch.on('exit', (c: number | null, sig?: string) => {
          opened.exit = { got: true, code: typeof c === 'number' ? c : null, signal: sig ? String(sig).replace(/^SIG/, '') : null };
        });
        ch.once('close', () => {
          opened.closed = true;
        });
        if (signal?.aborted) {
          ch.on('error', () => undefined);
          ch.close();
          return reject(signal.reason);
        }
        resolve(opened);
      });
    } catch (err) {
      reject(err as Error);
    }
  });
}



/** A session that ended before it started: retried (see exec). */
export class RefusedSession extends SshError {
  constructor(message: string) {
    super('closed', 'external', message);
  }
}

/**
 * The first line every command prints on stderr (stripped again by `collect`): its process
 * group, which sshd made the login shell's own, so that a deadline can kill the whole tree.
 */
const PGID_MARKER = '\u0001flotilla-pgid=';

/** Prefixes `command` with the line that reports its process group (field 5 of /proc/PID/stat). */
export function withPgidMarker(command: string): string {
  return `read -r _ _ _ _ flotilla_pgid _ 2>/dev/null </proc/$$/stat && printf '\\001flotilla-pgid=%s\\n' "$flotilla_pgid" >&2\n${command}`;
}

/** Reads a channel to its end, keeping at most `maxOutputBytes` of each stream. */
export function collect(opened: OpenedExec, opts: ExecOptions, signal: AbortSignal, started: number, where: () => string, killGroup: (pgid: number) => void = () => undefined): Promise<ExecResult> {
  const max = opts.maxOutputBytes ?? 64 * 1024 * 1024;
  const ch = opened.ch;
  return new Promise<ExecResult>((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let truncated = false;
    const keep = (into: Buffer[], d: Buffer, bytes: number): number => {
      if (bytes + d.length <= max) {
        into.push(d);
        return bytes + d.length;
      }
      truncated = true;
      return bytes;
    };
    ch.on('data', (d: Buffer) => (outBytes = keep(out, d, outBytes)));
    ch.stderr.on('data', (d: Buffer) => (errBytes = keep(err, d, errBytes)));
    const onAbort = (): void => {
      // Ask sshd to signal the command (refused for root logins), close the channel, and kill
      // the command's process group from a fresh channel.
      try {
        ch.signal('KILL');
      } catch {
        /* channel gone */
      }
      ch.close();
      const pgid = findPgid(Buffer.concat(err).toString('latin1'));
      if (pgid !== undefined) killGroup(pgid);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    // Done when the channel is closed and both streams have delivered everything they buffered.
    let pending = 3;
    const finish = (): void => {
      if (--pending > 0) return;
      signal.removeEventListener('abort', onAbort);
      if (signal.aborted) return;
      const raw = Buffer.concat(err).toString('utf8');
      const stderr = stripPgidMarker(raw);
      const markerBytes = Buffer.byteLength(raw) - Buffer.byteLength(stderr);
      if (!opened.exit.got) {
        if (outBytes === 0 && errBytes - markerBytes === 0) reject(new RefusedSession(`${where()}: the session closed without output or exit status (refused by the server, or the connection was lost)`));
        else reject(new SshError('closed', 'external', `${where()}: the channel closed without an exit status (connection lost?)`));
        return;
      }
      resolve({ code: opened.exit.code, signal: opened.exit.signal, stdout: Buffer.concat(out).toString('utf8'), stderr, ms: Date.now() - started, truncated });
    };
    ch.once('end', finish);
    ch.stderr.once('end', finish);
    if (opened.closed) finish();
    else ch.once('close', finish);
    ch.on('error', () => undefined);
    if (opts.stdin !== undefined) ch.end(opts.stdin);
    else ch.end();
  });
}

/** The process group from the marker line (sshd may print its own lines before it). */
export function findPgid(stderr: string): number | undefined {
  const m = new RegExp(`(?:^|\\n)${PGID_MARKER}(\\d+)\\n`).exec(stderr);
  const n = m ? Number(m[1]) : NaN;
  return Number.isInteger(n) && n > 1 ? n : undefined;
}

/** stderr without the first marker line. */
function stripPgidMarker(stderr: string): string {
  const m = new RegExp(`(^|\\n)${PGID_MARKER}\\d+\\n`).exec(stderr);
  return m ? stderr.slice(0, m.index + m[1]!.length) + stderr.slice(m.index + m[0].length) : stderr;
}
