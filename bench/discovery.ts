/**
 * Service discovery timings against one real etcd member, in one run:
 *
 * - announce: Announcer.start() until a reader sees the record;
 * - clean stop: stop() (lease revoked) until the record is gone;
 * - crash: keepalives stop without a revoke (what SIGKILL does) until etcd expires the
 *   record, as a ratio of the TTL;
 * - health: the endpoint starts failing until the record is withdrawn, as a ratio of the
 *   check interval; and back once it answers again;
 * - watch: a put until a watchServices subscriber hears it.
 *
 *   npx tsx bench/discovery.ts [rounds]
 */
import * as http from 'node:http';
import { Etcd3 } from 'etcd3';
import { Announcer } from '../src/discovery/announce';
import { checkEndpoint } from '../src/discovery/endpoint';
import { instanceKey } from '../src/discovery/keys';
import { watchServices } from '../src/discovery/services';
import { startEtcd } from '../test/fixtures/etcd';

const PREFIX = '/flotilla/bench/services/';
const ROUNDS = Number(process.argv[2] ?? 5);
const TTL = 2;
const CHECK_MS = 500;

async function until(fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await fn()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function stats(name: string, xs: number[], unit = 'ms'): void {
  const s = [...xs].sort((a, b) => a - b);
  const med = s[Math.floor(s.length / 2)]!;
  console.log(`${name.padEnd(44)} median ${med.toFixed(unit === 'ms' ? 0 : 2)} ${unit}  (min ${s[0]!.toFixed(unit === 'ms' ? 0 : 2)}, max ${s[s.length - 1]!.toFixed(unit === 'ms' ? 0 : 2)}, n=${s.length})`);
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const client = new Etcd3({ hosts: etcd.endpoint });
  const exists = async (key: string) => (await client.get(key).exec()).kvs.length > 0;
  let status = 200;
  const server = http.createServer((_q, res) => {
    res.statusCode = status;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const endpoint = checkEndpoint({ host: '127.0.0.1', port, protocol: 'http', path: '/' }, 'bench');
  const r = { announce: [] as number[], stop: [] as number[], crash: [] as number[], withdraw: [] as number[], restore: [] as number[], watch: [] as number[] };
  try {
    for (let i = 0; i < ROUNDS; i++) {
      const key = instanceKey(PREFIX, 'web', `n${i}`);
      let t0 = performance.now();
      const a = await Announcer.start(client, { prefix: PREFIX, service: 'web', instance: `n${i}`, endpoint, ttlSeconds: TTL, checkIntervalMs: CHECK_MS });
      await until(() => exists(key));
      r.announce.push(performance.now() - t0);

      status = 503;
      r.withdraw.push((await until(async () => !(await exists(key)))) / CHECK_MS);
      status = 200;
      r.restore.push((await until(() => exists(key))) / CHECK_MS);

      t0 = performance.now();
      await a.stop();
      await until(async () => !(await exists(key)));
      r.stop.push(performance.now() - t0);

      // A crash: a lease kept alive, then abandoned (release() stops keepalives, revokes nothing).
      const lease = client.lease(TTL);
      await lease.put(key).value('{"host":"127.0.0.1","port":1}');
      await new Promise((res) => setTimeout(res, 1000));
      lease.release();
      r.crash.push((await until(async () => !(await exists(key)))) / 1000 / TTL);

      const heard: number[] = [];
      let putAt = 0;
      const w = await watchServices(client, PREFIX, 'watched', (e) => e.type === 'up' && heard.push(performance.now() - putAt));
      putAt = performance.now();
      await client.put(instanceKey(PREFIX, 'watched', `w${i}`)).value('{"host":"h","port":1}');
      await until(async () => heard.length > 0);
      r.watch.push(heard[0]!);
      await w.close();
      await client.delete().key(instanceKey(PREFIX, 'watched', `w${i}`));
    }
  } finally {
    server.close();
    client.close();
    await etcd.stop();
  }
  console.log(`etcd ${etcd.endpoint.replace(/\d+$/, 'PORT')}, TTL ${TTL} s, check interval ${CHECK_MS} ms, ${ROUNDS} rounds`);
  stats('announce: start() → record visible', r.announce);
  stats('stop(): lease revoked → record gone', r.stop);
  stats('crash: keepalives stop → expired (x TTL)', r.crash, 'xTTL');
  stats('unhealthy → withdrawn (x check interval)', r.withdraw, 'xInt');
  stats('healthy again → restored (x check interval)', r.restore, 'xInt');
  stats('watch: put → subscriber hears it', r.watch);
}

void main();
