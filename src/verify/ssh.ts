/**
 * SSH connections for verification: one persistent ssh2 connection per node, opened in
 * parallel, reused for every check, with the host key pinned.
 *
 * - Pinning: `hostVerifier` compares the key blob the server presents with the inventory's
 *   OpenSSH public key, byte for byte. Anything else is refused before authentication;
 *   there is no trust on first use and no known_hosts file.
 * - Keepalive is on (ssh2 defaults to off, so a dead peer would hang forever) and every
 *   wait has a deadline: the handshake (`readyTimeoutMs`) and every command (`timeoutMs`).
 * - OpenSSH allows 10 session channels per connection (MaxSessions), so commands queue
 *   for one of `maxChannels` slots instead of failing with "open failed".
 * - A node reachable only inside a network namespace is reached through
 *   `ip netns exec NS socat STDIO TCP:HOST:PORT` as the transport (ssh2's `sock`), or any
 *   other `proxyCommand` whose stdin/stdout is the byte stream to sshd.
 * - Failures are FlotillaErrors naming the node and address: refused, timeout,
 *   authentication, host-key mismatch (with both SHA256 fingerprints), connection lost.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import { Client, utils, type ClientChannel } from 'ssh2';
import { FlotillaError, type FlotillaErrorCode } from '../errors';

// ---------------------------------------------------------------------------
// Targets and options

export interface SshTarget {
  /** Node name, for messages. */
  node: string;
  host: string;
  port: number;
  user: string;
  /** The pinned host key: an OpenSSH public key line, `ssh-ed25519 AAAA... comment`. */
  hostKey: string;
  /** OpenSSH or PEM private key text. */
  privateKey: string | Buffer;
  /** Where the private key came from, for messages (never its content). */
  privateKeyFile?: string;
  /** Reach host:port from inside this network namespace (`ip netns exec NS socat ...`). */
  netns?: string;
  /** Any command whose stdin/stdout is the byte stream to sshd (like OpenSSH's ProxyCommand). Overrides netns. */
  proxyCommand?: readonly string[];
}

export interface ConnectOptions {
  /** Handshake and authentication deadline (ms, default 10 000). */
  readyTimeoutMs?: number;
  /** SSH keepalive interval (ms, default 5 000; the connection is dropped after `keepaliveCountMax` unanswered). */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** Concurrent session channels per connection (default 6; OpenSSH's MaxSessions is 10, and sshd frees a slot only after the close). */
  maxChannels?: number;
  /** Default command deadline (ms, default 60 000). */
  commandTimeoutMs?: number;
}

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

export type SshFailure = 'refused' | 'timeout' | 'auth' | 'host-key' | 'closed' | 'unreachable' | 'other';

/** A connection or command failure; `kind` says which (tests and retries branch on it). */
export class SshError extends FlotillaError {
  constructor(
    readonly kind: SshFailure,
    code: FlotillaErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, [], options);
  }
}

/** The server presented a key other than the pinned one. Never retried. */
export class HostKeyMismatchError extends SshError {
  constructor(
    readonly where: string,
    readonly presentedFingerprint: string,
    readonly expectedFingerprint: string,
    presentedType: string,
    expectedType: string,
  ) {
    super(
      'host-key',
      'external',
      `${where}: host key mismatch: the server presented ${presentedType} ${presentedFingerprint}, but the inventory pins ${expectedType} ${expectedFingerprint}; refusing to connect (a different machine answers, or the node was re-created with a new key: re-render and update the inventory)`,
    );
  }
}

// ---------------------------------------------------------------------------
// Keys

/** The key blob of an OpenSSH public key line (what a server presents). */
export function publicKeyBlob(publicKey: string): Buffer {
  const parsed = utils.parseKey(publicKey.trim());
  if (parsed instanceof Error) throw new FlotillaError('invalid-input', `not an OpenSSH public key: ${parsed.message}`);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key) throw new FlotillaError('invalid-input', 'not an OpenSSH public key');
  if (key.isPrivateKey()) throw new FlotillaError('invalid-input', 'a private key was given where the public host key belongs');
  return key.getPublicSSH();
}

/** OpenSSH's fingerprint of a key blob: `SHA256:` and unpadded base64 (as `ssh-keygen -lf` prints). */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type named inside a blob (`ssh-ed25519`, ...). */
export function blobType(blob: Buffer): string {
  const len = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  return len > 0 && len < 64 ? blob.subarray(4, 4 + len).toString('latin1') : 'unknown';
}

/** Single-quotes a word for a POSIX shell. */
export function shq(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

// ---------------------------------------------------------------------------
// Transport

export function describeTarget(t: Pick<SshTarget, 'node' | 'host' | 'port' | 'netns' | 'proxyCommand'>): string {
  const via = t.proxyCommand ? ` via ${t.proxyCommand[0]}` : t.netns ? ` in netns ${t.netns}` : '';
  return `ssh to node ${t.node} at ${t.host}:${t.port}${via}`;
}

interface Transport {
  sock?: Duplex;
  child?: ChildProcess;
  /** The proxy's stderr so far (socat says "Connection refused" there). */
  stderr(): string;
}

function openTransport(t: SshTarget): Transport {
  const argv = t.proxyCommand ?? (t.netns ? ['ip', 'netns', 'exec', t.netns, 'socat', 'STDIO', `TCP:${t.host}:${t.port}`] : undefined);
  if (!argv) return { stderr: () => '' };
  if (t.netns && !t.proxyCommand && !/^[A-Za-z0-9_.-]+$/.test(t.netns)) throw new FlotillaError('invalid-input', `bad network namespace name ${JSON.stringify(t.netns)}`);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    if (err.length < 4096) err += d;
  });
  const sock = Duplex.from({ readable: child.stdout!, writable: child.stdin! });
  child.stdin!.on('error', () => undefined); // EPIPE once the proxy has exited
  child.once('error', (e) => sock.destroy(e));
  child.once('exit', () => {
    // The proxy is gone: end the stream so ssh2 sees the connection close.
    setImmediate(() => sock.destroy());
  });
  sock.once('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
  return { sock, child, stderr: () => err.trim() };
}

// ---------------------------------------------------------------------------
// A counting semaphore for channels

class Slots {
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

// ---------------------------------------------------------------------------
// One node's connection

const DEFAULTS = { readyTimeoutMs: 10_000, keepaliveIntervalMs: 5_000, keepaliveCountMax: 3, maxChannels: 6, commandTimeoutMs: 60_000 };

/**
 * A persistent, pinned connection to one node. `exec` may be called concurrently; it
 * reconnects once, pinned again, if the connection was lost between commands.
 */
export class NodeConnection {
  private client: Client | undefined;
  private transport: Transport | undefined;
  private connecting: Promise<Client> | undefined;
  private closed = false;
  private readonly slots: Slots;
  private readonly opts: Required<ConnectOptions>;
  private readonly expected: Buffer;
  /** Times of the connection (first connect), for reports and the boot timeline. */
  connectedAt: number | undefined;
  connectMs: number | undefined;
  /** Number of successful handshakes (1 + reconnects). */
  handshakes = 0;

  constructor(
    readonly target: SshTarget,
    opts: ConnectOptions = {},
  ) {
    this.opts = { ...DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as Required<ConnectOptions>;
    this.slots = new Slots(this.opts.maxChannels);
    this.expected = publicKeyBlob(target.hostKey);
  }

  get where(): string {
    return describeTarget(this.target);
  }

  get node(): string {
    return this.target.node;
  }

  get connected(): boolean {
    return this.client !== undefined;
  }

  /** Connects (if not connected) and resolves once authenticated. */
  async connect(): Promise<void> {
    await this.ensure();
  }

  private ensure(): Promise<Client> {
    if (this.closed) return Promise.reject(new SshError('closed', 'external', `${this.where}: connection was closed`));
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private open(): Promise<Client> {
    const t = this.target;
    const started = Date.now();
    return new Promise<Client>((resolve, reject) => {
      const client = new Client();
      let transport: Transport;
      try {
        transport = openTransport(t);
      } catch (err) {
        reject(err);
        return;
      }
      this.mismatch = undefined;
      let settled = false;
      let ready = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        client.destroy();
        const child = transport.child;
        const done = (): void => {
          transport.sock?.destroy();
          reject(this.mismatch ?? this.classify(err, transport));
        };
        // A proxy (socat) says why on stderr: read all of it before classifying.
        if (child && child.stderr && !child.stderr.readableEnded) {
          const t = setTimeout(done, 500);
          child.stderr.once('end', () => {
            clearTimeout(t);
            done();
          });
        } else done();
      };
      // ssh2's readyTimeout covers the handshake; this also covers a proxy that never answers.
      const timer = setTimeout(() => fail(Object.assign(new Error('ready timeout'), { level: 'client-timeout' })), this.opts.readyTimeoutMs);
      client.on('error', (err) => {
        if (!ready) fail(err);
        else this.dropped(client, err);
      });
      client.once('close', () => {
        if (!ready) fail(new Error('connection closed before the session was ready'));
        else this.dropped(client);
      });
      client.once('ready', () => {
        if (settled) return;
        settled = ready = true;
        clearTimeout(timer);
        this.client = client;
        this.transport = transport;
        this.handshakes++;
        this.connectedAt ??= Date.now();
        this.connectMs ??= Date.now() - started;
        resolve(client);
      });
      transport.sock?.on('error', () => undefined); // reported through the client
      try {
        this.startClient(client, transport);
      } catch (err) {
        fail(err as Error);
      }
    });
  }

  private startClient(client: Client, transport: Transport): void {
    const t = this.target;
    client.connect({
      ...(transport.sock ? { sock: transport.sock } : {}),
      host: t.host,
      port: t.port,
      username: t.user,
      privateKey: t.privateKey,
      readyTimeout: this.opts.readyTimeoutMs + 1000,
      keepaliveInterval: this.opts.keepaliveIntervalMs,
      keepaliveCountMax: this.opts.keepaliveCountMax,
      // No agent, no password, no keyboard-interactive: the inventory's key or nothing.
      tryKeyboard: false,
      hostVerifier: (key: Buffer) => {
        if (Buffer.isBuffer(key) && key.equals(this.expected)) return true;
        const presented = Buffer.isBuffer(key) ? key : Buffer.from(String(key));
        this.mismatch = new HostKeyMismatchError(this.where, fingerprint(presented), fingerprint(this.expected), blobType(presented), blobType(this.expected));
        return false;
      },
    });
  }

  private mismatch: HostKeyMismatchError | undefined;

  private classify(err: Error & { level?: string; code?: string }, transport: Transport): SshError {
    const w = this.where;
    const proxyErr = transport.stderr();
    if (err.level === 'client-timeout' || /timed out/i.test(err.message)) {
      return new SshError('timeout', 'timeout', `${w}: no SSH session within ${this.opts.readyTimeoutMs} ms (handshake timed out: a firewall dropping packets, a node still booting, or the wrong port)${proxyErr ? `; proxy said: ${proxyErr}` : ''}`, { cause: err });
    }
    if (err.code === 'ECONNREFUSED' || /Connection refused/i.test(proxyErr)) {
      return new SshError('refused', 'external', `${w}: connection refused (nothing listens there: sshd not running yet, or the wrong port)`, { cause: err });
    }
    if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' || /No route|unreachable/i.test(proxyErr)) {
      return new SshError('unreachable', 'external', `${w}: host unreachable (${err.code ?? proxyErr})`, { cause: err });
    }
    if (err.level === 'client-authentication' || /authentication methods failed/i.test(err.message)) {
      return new SshError('auth', 'external', `${w}: authentication failed for user ${this.target.user} with key ${this.target.privateKeyFile ?? '(given)'}: the node does not accept this key (check ssh.authorizedKeys in the spec and sshKey in the inventory)`, { cause: err });
    }
    if (/Cannot parse privateKey|Encrypted private OpenSSH key|privateKey/i.test(err.message)) {
      return new SshError('auth', 'invalid-input', `${w}: cannot use the private key ${this.target.privateKeyFile ?? ''}: ${err.message} (it must be unencrypted OpenSSH or PEM)`, { cause: err });
    }
    const extra = proxyErr ? `; proxy said: ${proxyErr}` : '';
    return new SshError('other', 'external', `${w}: ${err.message}${extra}`, { cause: err });
  }

  private dropped(client: Client, err?: Error): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.lastDrop = err?.message ?? 'closed by the server';
    this.transport?.sock?.destroy();
    this.transport = undefined;
  }

  private lastDrop: string | undefined;

  /** Why the connection was lost last, if it was. */
  get lastDropReason(): string | undefined {
    return this.lastDrop;
  }

  /** Runs `command` (a shell command line) on the node. Rejects only when it cannot be run or times out. */
  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const started = Date.now();
    const timeoutMs = opts.timeoutMs ?? this.opts.commandTimeoutMs;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new SshError('timeout', 'timeout', `${this.where}: command timed out after ${timeoutMs} ms: ${abbreviate(command)}`)), timeoutMs);
    const onOuterAbort = (): void => ac.abort(new SshError('timeout', 'timeout', `${this.where}: command aborted after ${Date.now() - started} ms: ${abbreviate(command)}${opts.signal?.reason instanceof Error ? ` (${opts.signal.reason.message})` : ''}`));
    if (opts.signal?.aborted) onOuterAbort();
    else opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
    const sudo = opts.sudo === true && this.target.user !== 'root';
    const line = withPgidMarker(sudo ? `sudo -n -- sh -c ${shq(command)}` : command);
    try {
      await this.slots.acquire(ac.signal);
      try {
        let client = await raceAbort(this.ensure(), ac.signal);
        let reconnected = false;
        // sshd frees a session slot a little after the channel closes; a session opened in that
        // gap is refused ("no more sessions": an open failure, or a channel that closes with
        // neither output nor status). Those are retried with a short backoff.
        for (let busy = 0; ; ) {
          try {
            const channel = await raceAbort(openExec(client, line, ac.signal), ac.signal);
            return await collect(channel, opts, ac.signal, started, () => this.where, (pgid) => this.killGroup(client, pgid, sudo));
          } catch (err) {
            if (ac.signal.aborted) throw err;
            if (this.client !== client) {
              // The connection died under us between commands: reconnect once, pinned again.
              if (reconnected) throw err;
              reconnected = true;
              client = await raceAbort(this.ensure(), ac.signal);
              continue;
            }
            if (!(err instanceof RefusedSession || sessionRefused(err)) || ++busy > 20) throw err;
            await raceAbort(new Promise((r) => setTimeout(r, 10 * busy)), ac.signal);
          }
        }
      } finally {
        this.slots.release();
      }
    } catch (err) {
      if (ac.signal.aborted && ac.signal.reason instanceof Error) throw ac.signal.reason;
      if (FlotillaError.is(err)) throw err;
      throw new SshError('closed', 'external', `${this.where}: ${(err as Error).message}${this.lastDrop ? ` (connection lost: ${this.lastDrop})` : ''}`, { cause: err });
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onOuterAbort);
    }
  }

  /**
   * Kills a timed-out command's whole process group from a fresh channel. The channel's own
   * `signal` request is not enough: sshd refuses it for root logins (no privilege-separated
   * session process), and for other users it cannot reach what the command ran under sudo.
   */
  private killGroup(client: Client, pgid: number, sudo: boolean): void {
    const kill = `kill -KILL -- -${pgid}`;
    openExec(client, sudo ? `sudo -n ${kill} 2>/dev/null || ${kill}` : kill)
      .then(({ ch }) => {
        const t = setTimeout(() => ch.close(), 10_000);
        ch.on('close', () => clearTimeout(t));
        ch.on('error', () => undefined);
        ch.resume();
        ch.stderr.resume();
        ch.end();
      })
      .catch(() => undefined);
  }

  /** Like exec, but a non-zero exit is an `external` error with the command's stderr. Returns stdout. */
  async mustExec(command: string, opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(command, opts);
    if (r.code !== 0) {
      throw new FlotillaError('external', `node ${this.node}: \`${abbreviate(command)}\` ${r.code === null ? `killed by SIG${r.signal}` : `exited ${r.code}`}: ${(r.stderr.trim() || r.stdout.trim()).slice(-500)}`);
    }
    return r.stdout;
  }

  /** A TCP connection from the node to host:port (SSH direct-tcpip): a probe, or a stream to speak a protocol over. */
  async connectTcp(host: string, port: number, timeoutMs = this.opts.commandTimeoutMs): Promise<ClientChannel> {
    const client = await this.ensure();
    return withTimeout(
      new Promise<ClientChannel>((resolve, reject) => {
        client.forwardOut('127.0.0.1', 0, host, port, (err, ch) => (err ? reject(new SshError('refused', 'external', `node ${this.node}: cannot connect to ${host}:${port} from the node: ${err.message}`)) : resolve(ch)));
      }),
      timeoutMs,
      () => new SshError('timeout', 'timeout', `node ${this.node}: connecting to ${host}:${port} from the node timed out after ${timeoutMs} ms`),
    );
  }

  /**
   * A listener on 127.0.0.1 (random port) whose connections are carried to host:port as
   * seen from the node: how the host reaches etcd inside a network namespace.
   */
  async tunnel(host: string, port: number): Promise<Tunnel> {
    await this.ensure();
    const sockets = new Set<net.Socket>();
    const server = net.createServer((sock) => {
      sockets.add(sock);
      sock.once('close', () => sockets.delete(sock));
      sock.on('error', () => undefined);
      this.connectTcp(host, port, this.opts.readyTimeoutMs).then(
        (ch) => {
          ch.on('error', () => sock.destroy());
          sock.pipe(ch).pipe(sock);
          sock.once('close', () => ch.close());
        },
        () => sock.destroy(),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
    });
    const addr = server.address() as net.AddressInfo;
    return {
      host: '127.0.0.1',
      port: addr.port,
      close: () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    };
  }

  /**
   * An interactive session (fleetctl ssh): a login shell, or `command`, with a pty when
   * stdin is a terminal; stdin/stdout/stderr are piped through. Resolves with the exit status.
   */
  async interactive(stdio: { stdin: NodeJS.ReadStream; stdout: NodeJS.WriteStream; stderr: NodeJS.WriteStream }, command?: string): Promise<number> {
    const client = await this.ensure();
    const tty = Boolean(stdio.stdin.isTTY);
    const pty = tty ? { term: process.env.TERM ?? 'xterm', cols: stdio.stdout.columns ?? 80, rows: stdio.stdout.rows ?? 24 } : undefined;
    const ch = await new Promise<ClientChannel>((resolve, reject) => {
      const cb = (err: Error | undefined, c: ClientChannel): void => (err ? reject(err) : resolve(c));
      if (command !== undefined) client.exec(command, pty ? { pty } : {}, cb);
      else client.shell(pty ?? false, cb);
    });
    if (tty) stdio.stdin.setRawMode(true);
    const onResize = (): void => ch.setWindow(stdio.stdout.rows ?? 24, stdio.stdout.columns ?? 80, 0, 0);
    if (tty) stdio.stdout.on('resize', onResize);
    stdio.stdin.pipe(ch);
    ch.pipe(stdio.stdout, { end: false });
    ch.stderr.pipe(stdio.stderr, { end: false });
    let code = 0;
    ch.on('exit', (c: number | null, sig?: string) => (code = typeof c === 'number' ? c : sig ? 128 + 15 : 255));
    await new Promise<void>((resolve) => ch.once('close', () => resolve()));
    stdio.stdin.unpipe(ch);
    if (tty) {
      stdio.stdout.off('resize', onResize);
      stdio.stdin.setRawMode(false);
    }
    stdio.stdin.pause();
    return code;
  }

  /** Ends the connection (and its proxy process). Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    const c = this.client;
    const tr = this.transport;
    this.client = undefined;
    this.transport = undefined;
    if (!c) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2000);
      c.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      c.end();
    });
    tr?.sock?.destroy();
    if (tr?.child && tr.child.exitCode === null && tr.child.signalCode === null) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          tr.child!.kill('SIGKILL');
          resolve();
        }, 1000);
        tr.child!.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        tr.child!.kill('SIGTERM');
      });
    }
  }
}

export interface Tunnel {
  host: '127.0.0.1';
  port: number;
  close(): Promise<void>;
}

function abbreviate(cmd: string): string {
  const one = cmd.replace(/\s+/g, ' ').trim();
  return one.length > 120 ? `${one.slice(0, 117)}...` : one;
}

/** sshd refused to open a session channel (OpenSSH: "no more sessions", reason 2). */
function sessionRefused(err: unknown): boolean {
  return err instanceof Error && (err as { reason?: unknown }).reason === 2 && /open failed/i.test(err.message);
}

/** An exec channel with what happened before anyone listened: ssh2 emits `exit` and `close` as plain events. */
interface OpenedExec {
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
function openExec(client: Client, command: string, signal?: AbortSignal): Promise<OpenedExec> {
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

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, err: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(err()), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** A session that ended before it started: retried (see exec). */
class RefusedSession extends SshError {
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
function collect(opened: OpenedExec, opts: ExecOptions, signal: AbortSignal, started: number, where: () => string, killGroup: (pgid: number) => void = () => undefined): Promise<ExecResult> {
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
function findPgid(stderr: string): number | undefined {
  const m = new RegExp(`(?:^|\\n)${PGID_MARKER}(\\d+)\\n`).exec(stderr);
  const n = m ? Number(m[1]) : NaN;
  return Number.isInteger(n) && n > 1 ? n : undefined;
}

/** stderr without the first marker line. */
function stripPgidMarker(stderr: string): string {
  const m = new RegExp(`(^|\\n)${PGID_MARKER}\\d+\\n`).exec(stderr);
  return m ? stderr.slice(0, m.index + m[1]!.length) + stderr.slice(m.index + m[0].length) : stderr;
}

// ---------------------------------------------------------------------------
// The pool: every node, connected in parallel

export interface PoolConnectResult {
  /** Nodes whose connection failed, with why; checks on them report `error`. */
  failed: Map<string, SshError | FlotillaError>;
}

export class SshPool {
  readonly connections = new Map<string, NodeConnection>();
  readonly failures = new Map<string, FlotillaError>();

  constructor(
    targets: readonly SshTarget[],
    readonly options: ConnectOptions = {},
  ) {
    for (const t of targets) this.connections.set(t.node, new NodeConnection(t, options));
  }

  /** Opens every connection at once; failures are kept per node rather than thrown. */
  async connectAll(): Promise<PoolConnectResult> {
    await Promise.all(
      [...this.connections.values()].map(async (c) => {
        try {
          await c.connect();
          this.failures.delete(c.node);
        } catch (err) {
          this.failures.set(c.node, FlotillaError.is(err) ? err : new SshError('other', 'external', `${c.where}: ${(err as Error).message}`));
        }
      }),
    );
    return { failed: new Map(this.failures) };
  }

  /** The node's connection; throws the connect error if it could not be opened. */
  get(node: string): NodeConnection {
    const c = this.connections.get(node);
    if (!c) throw new FlotillaError('not-found', `no node named ${node} in the inventory`);
    const f = this.failures.get(node);
    if (f && !c.connected) throw f;
    return c;
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.connections.values()].map((c) => c.close()));
  }
}
