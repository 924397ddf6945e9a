/** Announcers as real processes (bin/flotilla announce), and waiting on etcd state. */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { Etcd3, type IKeyValue } from 'etcd3';
import { ManagedProcess, sleep } from '../fixtures/proc';
import { BIN } from '../helpers/cli';

/** Environment without FLOTILLA_* variables, so only the flags given say where etcd is. */
export function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLOTILLA_')));
}

export class AnnouncerProcess {
  readonly proc: ManagedProcess;
  constructor(
    readonly logFile: string,
    args: string[],
  ) {
    this.proc = new ManagedProcess(process.execPath, [BIN, 'announce', ...args], logFile, cleanEnv());
  }
  log(): string {
    return fs.existsSync(this.logFile) ? fs.readFileSync(this.logFile, 'utf8') : '';
  }
  /** Waits until the log matches (or the process exits, or the deadline passes: then throws with the log). */
  async waitLog(re: RegExp, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.log())) {
      if (!this.proc.running) throw new Error(`announcer exited before its log matched ${re}:\n${this.log()}`);
      if (Date.now() > deadline) throw new Error(`announcer log did not match ${re} within ${timeoutMs} ms:\n${this.log()}`);
      await sleep(100);
    }
  }
}

export function announcer(dir: string, name: string, args: string[]): AnnouncerProcess {
  return new AnnouncerProcess(path.join(dir, `${name}.log`), args);
}

/** Polls until `fn` returns a value other than undefined; throws `what` with the last value at the deadline. */
export async function waitUntil<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

export async function getKv(client: Etcd3, key: string): Promise<IKeyValue | undefined> {
  return (await client.get(key).exec()).kvs[0];
}

/** Granted and remaining TTL of a lease as etcd reports them (remaining -1: expired or revoked). */
export async function leaseTtl(client: Etcd3, lease: string): Promise<{ granted: number; remaining: number; keys: string[] }> {
  const r = await client.leaseClient.leaseTimeToLive({ ID: lease, keys: true });
  return { granted: Number(r.grantedTTL), remaining: Number(r.TTL), keys: (r.keys ?? []).map((k) => Buffer.from(k).toString()) };
}

/** An HTTP server on 127.0.0.1 whose /health answers `status` (changeable). */
export async function healthServer(): Promise<{ port: number; status: number; close(): Promise<void> }> {
  const state = { status: 200 };
  const server = http.createServer((req, res) => {
    res.statusCode = req.url === '/health' ? state.status : 404;
    res.end(String(res.statusCode));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    get status() {
      return state.status;
    },
    set status(s: number) {
      state.status = s;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
