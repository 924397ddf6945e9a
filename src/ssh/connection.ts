/**
 * A persistent SSH connection to one node with its host key pinned.
 *
 * - Pinning: `hostVerifier` compares the key blob the server presents with the pinned OpenSSH
 *   public key, byte for byte. Anything else is refused before authentication; there is no
 *   trust on first use and no known_hosts file.
 * - Keepalive is on (ssh2 defaults to off, so a dead peer would hang forever) and every wait
 *   has a deadline: the key exchange (`handshakeTimeoutMs`), the session (`readyTimeoutMs`) and
 *   every command (`timeoutMs`).
 * - Failures are SshErrors naming the node and address: refused, timeout, authentication,
 *   host-key mismatch (with both SHA256 fingerprints), connection lost. They never carry the
 *   text of a command (commands may hold secrets): a caller's `label`, or the program's name.
 */
import * as net from 'node:net';
import { Client, type ClientChannel } from 'ssh2';
import { FlotillaError } from '../errors';
import { RefusedSession, Slots, collect, commandLabel, openExec, sessionRefused, withPgidMarker, type ExecOptions, type ExecResult } from './channel';
import { HostKeyMismatchError, SshError } from './errors';
import { blobType, fingerprint, publicKeyBlob } from './keys';
import { shq } from './shell';
import { describeTarget, openTransport, type SshTarget, type Transport } from './transport';
import { raceAbort, sleep, withTimeout } from '../util/async';

export interface ConnectOptions {
  /** Handshake and authentication deadline (ms, default 10 000). */
  readyTimeoutMs?: number;
  /**
   * Deadline for the key exchange alone (ms, default `readyTimeoutMs`). QEMU's user-mode forward
   * accepts a connection before the guest listens and may hold it while its SYNs to the guest go
   * unanswered, so a connection without a handshake is worth giving up early and retrying.
   */
  handshakeTimeoutMs?: number;
  /** SSH keepalive interval (ms, default 5 000; the connection is dropped after `keepaliveCountMax` unanswered). */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** Concurrent session channels per connection (default 6; OpenSSH's MaxSessions is 10, and sshd frees a slot only after the close). */
  maxChannels?: number;
  /** Default command deadline (ms, default 60 000). */
  commandTimeoutMs?: number;
}

const DEFAULTS = { readyTimeoutMs: 10_000, handshakeTimeoutMs: 0, keepaliveIntervalMs: 5_000, keepaliveCountMax: 3, maxChannels: 6, commandTimeoutMs: 60_000 };

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
        clearTimeout(handshakeTimer);
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
      const handshakeMs = this.opts.handshakeTimeoutMs;
      const handshakeTimer = handshakeMs > 0 && handshakeMs < this.opts.readyTimeoutMs ? setTimeout(() => fail(Object.assign(new Error('handshake timeout'), { level: 'handshake-timeout' })), handshakeMs) : undefined;
      client.once('handshake', () => clearTimeout(handshakeTimer));
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
    if (err.level === 'handshake-timeout') {
      return new SshError('timeout', 'timeout', `${w}: no SSH key exchange within ${this.opts.handshakeTimeoutMs} ms (the port accepts, but nothing answers behind it yet)${proxyErr ? `; proxy said: ${proxyErr}` : ''}`, { cause: err });
    }
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
    const timer = setTimeout(() => ac.abort(new SshError('timeout', 'timeout', `${this.where}: ${commandLabel(command, opts.label)} timed out after ${timeoutMs} ms`)), timeoutMs);
    const onOuterAbort = (): void => ac.abort(new SshError('timeout', 'timeout', `${this.where}: ${commandLabel(command, opts.label)} aborted after ${Date.now() - started} ms${opts.signal?.reason instanceof Error ? ` (${opts.signal.reason.message})` : ''}`));
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
            await raceAbort(sleep(10 * busy), ac.signal);
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
      throw new FlotillaError('external', `node ${this.node}: ${commandLabel(command, opts.label)} ${r.code === null ? `killed by SIG${r.signal}` : `exited ${r.code}`}: ${(r.stderr.trim() || r.stdout.trim()).slice(-500)}`);
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
