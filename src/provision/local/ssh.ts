/**
 * SSH to nodes with the host key pinned: the key each node presents must be the one Flotilla
 * generated for it (rendered into its first-boot config). There is no trust on first use.
 *
 * Nodes' SSH forwards listen on 127.0.0.1 inside the cluster's network namespace. A connection
 * into the namespace is a short-lived `ip netns exec NS socat STDIO TCP:127.0.0.1:PORT` piped to
 * this process (no listener in the root namespace, no helper daemon to manage).
 */
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import { Client, utils } from 'ssh2';
import { FlotillaError } from '../../errors';

export interface SshEndpoint {
  host: string;
  port: number;
  /** Network namespace the endpoint lives in (the cluster's); absent: this process's namespace. */
  netns?: string;
}

export interface SshAuth {
  username: string;
  /** OpenSSH or PEM private key. */
  privateKey: string | Buffer;
}

/** The raw key blob of an OpenSSH public key line (what an SSH server presents). */
export function hostKeyBlob(publicKey: string): Buffer {
  const parsed = utils.parseKey(publicKey.trim());
  if (parsed instanceof Error) throw new FlotillaError('invalid-input', `not an SSH public key: ${parsed.message}`);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key) throw new FlotillaError('invalid-input', 'not an SSH public key');
  return key.getPublicSSH();
}

/** `ssh-ed25519 AAAA...` for a presented key blob (for error messages). */
function describeBlob(blob: Buffer): string {
  const len = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  const type = blob.subarray(4, 4 + len).toString('latin1');
  return `${type} ${blob.toString('base64')}`;
}

/** Thrown when a server presents a key other than the pinned one: never retried. */
export class HostKeyMismatchError extends FlotillaError {
  constructor(
    readonly endpoint: string,
    readonly presented: string,
    readonly expected: string,
  ) {
    super('external', `host key mismatch at ${endpoint}: it presented ${presented.slice(0, 60)}..., expected the pinned ${expected.slice(0, 60)}...; refusing to connect`);
  }
}

function describe(ep: SshEndpoint): string {
  return `${ep.host}:${ep.port}${ep.netns ? ` (netns ${ep.netns})` : ''}`;
}

/** A byte stream to the endpoint: a TCP socket, or a relay into the namespace. */
export function openTransport(ep: SshEndpoint): Duplex {
  if (!ep.netns) return net.connect({ host: ep.host, port: ep.port });
  if (!/^[0-9.]+$/.test(ep.host) || !Number.isInteger(ep.port)) throw new FlotillaError('invalid-input', `bad endpoint ${describe(ep)}`);
  // socat: one process (reaped by us), and it handles half-closed connections properly.
  const child = spawn('ip', ['netns', 'exec', ep.netns, 'socat', 'STDIO', `TCP:${ep.host}:${ep.port}`], { stdio: ['pipe', 'pipe', 'ignore'] });
  const duplex = Duplex.from({ readable: child.stdout, writable: child.stdin });
  child.once('error', (err) => duplex.destroy(err));
  child.stdin.on('error', () => undefined);
  duplex.once('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
  return duplex;
}

/**
 * Connects and authenticates; the handshake fails unless the server presents `hostPublicKey`.
 * `handshakeTimeoutMs` bounds the wait for key exchange alone: QEMU's user-mode forward accepts
 * a connection before the guest listens and may hold it while its SYNs to the guest go
 * unanswered, so a connection without a handshake is given up early and retried.
 */
export function sshConnect(ep: SshEndpoint, hostPublicKey: string, auth: SshAuth, timeoutMs = 20_000, handshakeTimeoutMs = Math.min(timeoutMs, 10_000)): Promise<Client> {
  const expected = hostKeyBlob(hostPublicKey);
  return new Promise((resolve, reject) => {
    const client = new Client();
    let mismatch: HostKeyMismatchError | undefined;
    let settled = false;
    const sock = openTransport(ep);
    sock.on('error', () => undefined); // reported through the client
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(handshakeTimer);
      if (err) {
        client.end();
        sock.destroy();
        reject(mismatch ?? err);
      } else resolve(client);
    };
    const timer = setTimeout(() => finish(new FlotillaError('timeout', `ssh ${describe(ep)}: no session within ${timeoutMs} ms`)), timeoutMs);
    const handshakeTimer = setTimeout(() => finish(new FlotillaError('timeout', `ssh ${describe(ep)}: no SSH handshake within ${handshakeTimeoutMs} ms`)), handshakeTimeoutMs);
    client.once('handshake', () => clearTimeout(handshakeTimer));
    client.once('ready', () => finish());
    // ssh2 can emit more than one error (e.g. a lost connection after a failed handshake): keep listening.
    client.on('error', (err) => finish(err));
    client.once('close', () => finish(new Error(`ssh ${describe(ep)}: connection closed before the session was ready`)));
    client.connect({
      sock,
      host: ep.host,
      port: ep.port,
      username: auth.username,
      privateKey: auth.privateKey,
      readyTimeout: timeoutMs,
      hostVerifier: (key: Buffer) => {
        if (key.equals(expected)) return true;
        mismatch = new HostKeyMismatchError(describe(ep), describeBlob(key), hostPublicKey.trim());
        return false;
      },
    });
  });
}

export interface ExecResult {
  code: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
}

/** Runs one command over an open connection. */
export function sshExec(client: Client, command: string, timeoutMs = 60_000): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new FlotillaError('timeout', `ssh command timed out after ${timeoutMs} ms: ${command}`)), timeoutMs);
    client.exec(command, (err, stream) => {
      if (err) {
        clearTimeout(timer);
        reject(err);
        return;
      }
      let stdout = '';
      let stderr = '';
      let code: number | null = null;
      let signal: string | undefined;
      stream.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
      stream.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      stream.on('exit', (c: number | null, s?: string) => {
        code = c;
        signal = s;
      });
      stream.on('close', () => {
        clearTimeout(timer);
        resolve({ code, ...(signal ? { signal } : {}), stdout, stderr });
      });
    });
  });
}

/** Connect, run one command, disconnect. */
export async function sshRun(ep: SshEndpoint, hostPublicKey: string, auth: SshAuth, command: string, timeoutMs = 60_000): Promise<ExecResult> {
  const client = await sshConnect(ep, hostPublicKey, auth, Math.min(timeoutMs, 30_000));
  try {
    return await sshExec(client, command, timeoutMs);
  } finally {
    client.end();
  }
}

export interface WaitForSshOptions {
  auth: SshAuth;
  netns?: string;
  /** Pause between attempts. */
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
}

/**
 * Waits until the node answers SSH with the pinned host key and a real command succeeds
 * (QEMU's user-mode forward accepts TCP long before the guest's sshd runs). A different
 * host key fails at once; anything else is retried until `deadline` (epoch ms).
 */
export async function waitForSsh(host: string, port: number, hostPublicKey: string, deadline: number, opts: WaitForSshOptions): Promise<{ attempts: number }> {
  const ep: SshEndpoint = { host, port, ...(opts.netns ? { netns: opts.netns } : {}) };
  const command = opts.command ?? 'true';
  let attempt = 0;
  let last = 'no attempt made';
  let lastTry = Date.now();
  for (;;) {
    if (opts.readyHint && !opts.readyHint() && Date.now() - lastTry < (opts.hintlessIntervalMs ?? 10_000) && Date.now() < deadline) {
      const why = opts.abort?.();
      if (why instanceof Error) throw why;
      if (why) throw new FlotillaError('external', `ssh ${describe(ep)}: giving up: ${why}; last error: ${last}`);
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    lastTry = Date.now();
    attempt++;
    const left = deadline - Date.now();
    if (left <= 0) throw new FlotillaError('timeout', `ssh ${describe(ep)} not ready by the deadline after ${attempt - 1} attempts; last error: ${last}`);
    try {
      const budget = Math.max(1000, Math.min(left, 30_000));
      const client = await sshConnect(ep, hostPublicKey, opts.auth, budget, Math.min(budget, opts.handshakeTimeoutMs ?? 6000));
      let res: ExecResult;
      try {
        res = await sshExec(client, command, budget);
      } finally {
        client.end();
      }
      if (res.code === 0) return { attempts: attempt };
      last = `\`${command}\` exited ${res.code}: ${res.stderr.trim().slice(0, 200)}`;
    } catch (err) {
      if (err instanceof HostKeyMismatchError) throw err;
      last = (err as Error).message;
    }
    opts.onAttempt?.(attempt, last);
    const why = opts.abort?.();
    if (why instanceof Error) throw why;
    if (why) throw new FlotillaError('external', `ssh ${describe(ep)}: giving up: ${why}; last error: ${last}`);
    await new Promise((r) => setTimeout(r, Math.max(0, Math.min(opts.intervalMs ?? 1000, deadline - Date.now()))));
  }
}
