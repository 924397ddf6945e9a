/**
 * Waiting for a booting node's SSH: QEMU's user-mode forward accepts TCP long before the guest's
 * sshd runs, so ready means the pinned host key answered and a real command succeeded. A
 * different host key fails at once; anything else is retried until the deadline.
 */
import { FlotillaError } from '../errors';
import { sleep } from '../util/async';
import { NodeConnection, type ConnectOptions } from './connection';
import { HostKeyMismatchError } from './errors';
import { describeTarget, type SshTarget } from './transport';

export interface WaitForSshOptions {
  /** Pause between attempts (ms, default 1000). */
  intervalMs?: number;
  /** The command whose success means ready. Default `true`. */
  command?: string;
  /** How long one attempt may wait for the key exchange before retrying (default 6 s). */
  handshakeTimeoutMs?: number;
  /** Called before each retry with the reason the last attempt failed. */
  onAttempt?: (attempt: number, error: string) => void;
  /**
   * A cheap local signal that an attempt can succeed now (e.g. the node's console said so).
   * While it is false, attempts are made only every `hintlessIntervalMs` (a safety net).
   */
  readyHint?: () => boolean;
  hintlessIntervalMs?: number;
  /**
   * Checked between attempts: give up early (e.g. QEMU exited). Return a reason to stop, or an
   * error to throw as it is (e.g. the node's first boot failed).
   */
  abort?: () => string | Error | undefined;
  /** Options for the connection that `connectWhenReady` returns (channels, keepalive, command deadline). */
  connection?: ConnectOptions;
}

/** Waits until the node answers SSH with its pinned host key and a command succeeds, until `deadline` (epoch ms). */
export async function waitForSsh(target: SshTarget, deadline: number, opts: WaitForSshOptions = {}): Promise<{ attempts: number }> {
  const { attempts, connection } = await connectWhenReady(target, deadline, opts);
  await connection.close();
  return { attempts };
}

/** As waitForSsh, and keeps the connection that succeeded open for the caller (who closes it). */
export async function connectWhenReady(target: SshTarget, deadline: number, opts: WaitForSshOptions = {}): Promise<{ attempts: number; connection: NodeConnection }> {
  const where = describeTarget(target);
  const command = opts.command ?? 'true';
  const checkAbort = (last: string): void => {
    const why = opts.abort?.();
    if (why instanceof Error) throw why;
    if (why) throw new FlotillaError('external', `${where}: giving up: ${why}; last error: ${last}`);
  };
  let attempt = 0;
  let last = 'no attempt made';
  let lastTry = Date.now();
  for (;;) {
    if (opts.readyHint && !opts.readyHint() && Date.now() - lastTry < (opts.hintlessIntervalMs ?? 10_000) && Date.now() < deadline) {
      checkAbort(last);
      await sleep(200);
      continue;
    }
    lastTry = Date.now();
    attempt++;
    const left = deadline - Date.now();
    if (left <= 0) throw new FlotillaError('timeout', `${where}: not ready by the deadline after ${attempt - 1} attempts; last error: ${last}`);
    const budget = Math.max(1000, Math.min(left, 30_000));
    const connection = new NodeConnection(target, { ...opts.connection, readyTimeoutMs: budget, handshakeTimeoutMs: Math.min(budget, opts.handshakeTimeoutMs ?? 6000) });
    try {
      const res = await connection.exec(command, { timeoutMs: budget, label: 'the readiness command' });
      if (res.code === 0) return { attempts: attempt, connection };
      last = `the readiness command exited ${res.code}: ${res.stderr.trim().slice(0, 200)}`;
    } catch (err) {
      if (err instanceof HostKeyMismatchError) {
        await connection.close();
        throw err;
      }
      last = (err as Error).message;
    }
    await connection.close();
    opts.onAttempt?.(attempt, last);
    checkAbort(last);
    await sleep(Math.max(0, Math.min(opts.intervalMs ?? 1000, deadline - Date.now())));
  }
}
