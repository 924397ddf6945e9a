/**
 * Where an SSH connection goes and the byte stream that carries it: a TCP socket (ssh2's own),
 * a relay into a network namespace (`ip netns exec NS socat STDIO TCP:HOST:PORT`, no listener in
 * the root namespace), or any proxy command whose stdin/stdout is the stream to sshd.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Duplex } from 'node:stream';
import { FlotillaError } from '../errors';

/** One SSH server to reach, with the key it must present and the key to log in with. */
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

export function describeTarget(t: Pick<SshTarget, 'node' | 'host' | 'port' | 'netns' | 'proxyCommand'>): string {
  const via = t.proxyCommand ? ` via ${t.proxyCommand[0]}` : t.netns ? ` in netns ${t.netns}` : '';
  return `ssh to node ${t.node} at ${t.host}:${t.port}${via}`;
}

export interface Transport {
  sock?: Duplex;
  child?: ChildProcess;
  /** The proxy's stderr so far (socat says "Connection refused" there). */
  stderr(): string;
}

export function openTransport(t: SshTarget): Transport {
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
