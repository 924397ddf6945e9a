/**
 * `flotilla services` (table, JSON, one service, nothing announced, malformed entries,
 * --watch as a real process) and `flotilla announce` flag errors and its node-config
 * connection, against a real etcd member.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Etcd3 } from 'etcd3';
import { etcdctl, startEtcd, type SingleEtcd } from '../fixtures/etcd';
import { makeTempDir, removeTempDir } from '../fixtures/proc';
import { BIN, cli } from '../helpers/cli';
import { announcer, cleanEnv, getKv, waitUntil } from './helpers';

let etcd: SingleEtcd;
let client: Etcd3;
let dir: string;
const PREFIX = '/flotilla/dcli/services/';

before(async () => {
  dir = makeTempDir('flotilla-discovery-cli');
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.endpoint });
  for (const k of Object.keys(process.env)) if (k.startsWith('FLOTILLA_')) delete process.env[k];
});
after(async () => {
  client?.close();
  await etcd?.stop();
  removeTempDir(dir);
});

const conn = () => ['--endpoints', etcd.endpoint, '--cluster', 'dcli'];

test('announce: bad flags are usage errors (exit 2) naming the flag, before anything is written', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['--port', '80'], /give exactly one SERVICE name/],
    [['a', 'b', '--port', '80'], /give exactly one SERVICE name \(got 2: a b\)/],
    [['we/b', '--port', '80'], /SERVICE: "we\/b" is not a name/],
    [['web'], /--port is required/],
    [['web', '--port', '70000'], /--port must be a whole number from 1 to 65535 \(got "70000"\)/],
    [['web', '--port', '80', '--protocol', 'udp'], /--protocol must be one of tcp, http \(got "udp"\)/],
    [['web', '--port', '80', '--path', '/h'], /--path needs --protocol http/],
    [['web', '--port', '80', '--protocol', 'http', '--path', 'health', '--host', 'h'], /flotilla announce: path: want an absolute request path/],
    [['web', '--port', '80', '--ttl', '1'], /--ttl must be a whole number from 2 to 3600 \(got "1"\)/],
    [['web', '--port', '80', '--check-interval', '0'], /--check-interval must be a whole number from 1 to 3600/],
    [['web', '--port', '80', '--host', 'not a host'], /host: want an IP address or host name, got "not a host"/],
    [['web', '--port', '80', '--instance', 'x/y'], /--instance: "x\/y" is not a name/],
    [['web', '--port', '80', '--bogus'], /Unknown option '--bogus'/],
    [['web', '--port', '80', '--host', 'h'], /no etcd endpoints: pass --endpoints or set FLOTILLA_ENDPOINTS/],
    [['web', '--port', '80', '--host', 'h', '--config', 'x.json', '--endpoints', 'http://127.0.0.1:1'], /--config and --endpoints both say where etcd is: give one/],
  ];
  for (const [args, re] of cases) {
    const r = await cli('announce', ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
  const missing = await cli('announce', 'web', '--port', '80', '--config', path.join(dir, 'nope.json'));
  assert.equal(missing.code, 3);
  assert.match(missing.stderr, /cannot read config .*nope\.json/);
  assert.deepEqual((await client.getAll().prefix(PREFIX).keys()), []);
});

test('announce --config: etcd, address and machine ID from a node\'s fleetd.json', async () => {
  const cfg = path.join(dir, 'fleetd.json');
  fs.writeFileSync(cfg, JSON.stringify({ cluster: 'dcli', endpoints: [etcd.endpoint], machineId: 'f00dcafe', address: '10.99.0.21', tls: null }));
  const a = announcer(dir, 'cfg', ['node-svc', '--port', '9000', '--config', cfg]);
  try {
    await a.waitLog(/announced node-svc\/f00dcafe tcp:\/\/10\.99\.0\.21:9000/);
    assert.deepEqual(JSON.parse((await getKv(client, `${PREFIX}node-svc/f00dcafe`))!.value.toString()), { host: '10.99.0.21', port: 9000, protocol: 'tcp' });
  } finally {
    await a.proc.stop();
  }
  assert.equal(await getKv(client, `${PREFIX}node-svc/f00dcafe`), undefined);
});

test('services: table, one service, JSON with lease, not-found exit 3, malformed entries reported', async () => {
  await etcdctl(etcd, ['put', `${PREFIX}web/n2`, '{"host":"10.0.0.2","port":80,"protocol":"http","path":"/health"}']);
  await etcdctl(etcd, ['put', `${PREFIX}web/n1`, '{"host":"10.0.0.1","port":80,"protocol":"http"}']);
  await etcdctl(etcd, ['put', `${PREFIX}db/n1`, '{"host":"10.0.0.1","port":5432}']);
  try {
    const all = await cli('services', ...conn());
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.stdout, [
      'SERVICE  INSTANCE  ENDPOINT',
      'db       n1        tcp://10.0.0.1:5432',
      'web      n1        http://10.0.0.1:80/',
      'web      n2        http://10.0.0.2:80/health',
      '',
    ].join('\n'));
    const web = await cli('services', 'web', '--json', ...conn());
    assert.equal(web.code, 0, web.stderr);
    const parsed = JSON.parse(web.stdout) as { prefix: string; instances: Array<Record<string, unknown>>; problems: string[] };
    assert.equal(parsed.prefix, PREFIX);
    assert.deepEqual(parsed.instances.map((i) => i.url), ['http://10.0.0.1:80/', 'http://10.0.0.2:80/health']);
    assert.deepEqual(parsed.instances[1], { service: 'web', instance: 'n2', host: '10.0.0.2', port: 80, protocol: 'http', path: '/health', url: 'http://10.0.0.2:80/health', key: `${PREFIX}web/n2`, lease: '0' });
    const none = await cli('services', 'nosuch', ...conn());
    assert.equal(none.code, 3);
    assert.match(none.stderr, /no instance of nosuch is announced under \/flotilla\/dcli\/services\//);
    await etcdctl(etcd, ['put', `${PREFIX}web/n3`, '{"host":"10.0.0.3","port":80,"proto":"http"}']);
    const bad = await cli('services', 'web', ...conn());
    assert.equal(bad.code, 0);
    assert.match(bad.stderr, /warning: \/flotilla\/dcli\/services\/web\/n3: proto: unknown field/);
    assert.doesNotMatch(bad.stdout, /n3/);
    const usage = await cli('services', 'a', 'b', ...conn());
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /give at most one SERVICE/);
  } finally {
    await etcdctl(etcd, ['del', '--prefix', PREFIX]);
  }
});

test('services --watch: current instances, then + and - lines as announcers come and go', async () => {
  const watcher = spawn(process.execPath, [BIN, 'services', '--watch', ...conn()], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  watcher.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  watcher.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => watcher.once('exit', (code) => r(code)));
  const a = announcer(dir, 'watched', ['watched', '--host', '127.0.0.1', '--port', '7000', '--instance', 'w1', ...conn()]);
  try {
    await etcdctl(etcd, ['put', `${PREFIX}pre/p1`, '{"host":"10.0.0.9","port":1}']);
    await waitUntil('watch to report both instances', async () => (/\+ pre\/p1 tcp:\/\/10\.0\.0\.9:1\n/.test(out) && /\+ watched\/w1 tcp:\/\/127\.0\.0\.1:7000\n/.test(out) ? true : undefined));
    await a.proc.stop();
    await waitUntil('watch to report watched/w1 gone', async () => (/- watched\/w1\n/.test(out) ? true : undefined));
    await etcdctl(etcd, ['put', `${PREFIX}pre/p1`, 'junk']);
    await waitUntil('watch to report the junk value', async () => (/- pre\/p1\n/.test(out) && /warning: .*pre\/p1: value is not a JSON object/.test(err) ? true : undefined));
    watcher.kill('SIGTERM');
    assert.equal(await exited, 0, err);
  } finally {
    watcher.kill('SIGKILL');
    await a.proc.kill();
    await etcdctl(etcd, ['del', '--prefix', PREFIX]);
  }
});
