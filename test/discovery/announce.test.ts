/**
 * `flotilla announce` as a real process against a real etcd member: the record appears
 * under its lease, goes at once on SIGTERM, expires one TTL after SIGKILL, follows the
 * health probe, comes back after being deleted or losing its lease, and yields to a newer
 * announcer of the same instance.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { etcdctl, startEtcd, type SingleEtcd } from '../fixtures/etcd';
import { makeTempDir, removeTempDir } from '../fixtures/proc';
import { announcer, getKv, healthServer, leaseTtl, waitUntil } from './helpers';

let etcd: SingleEtcd;
let client: Etcd3;
let dir: string;
const PREFIX = '/flotilla/dtest/services/';

before(async () => {
  dir = makeTempDir('flotilla-announce');
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.endpoint });
});
after(async () => {
  client?.close();
  await etcd?.stop();
  removeTempDir(dir);
});

const conn = () => ['--endpoints', etcd.endpoint, '--cluster', 'dtest'];

test('announce: record appears under a lease with the TTL asked for; SIGTERM revokes it at once', async () => {
  const web = await healthServer();
  const a = announcer(dir, 'term', ['web', '--host', '127.0.0.1', '--port', String(web.port), '--protocol', 'http', '--path', '/health', '--instance', 'n1', '--ttl', '3', ...conn()]);
  try {
    await a.waitLog(/announced web\/n1 http:\/\/127\.0\.0\.1:\d+\/health/);
    const kv = await getKv(client, `${PREFIX}web/n1`);
    assert.ok(kv, a.log());
    assert.deepEqual(JSON.parse(kv.value.toString()), { host: '127.0.0.1', port: web.port, protocol: 'http', path: '/health' });
    const lease = await leaseTtl(client, kv.lease);
    assert.equal(lease.granted, 3);
    assert.deepEqual(lease.keys, [`${PREFIX}web/n1`]);
    await a.proc.stop();
    assert.equal(await a.proc.exited, 0, a.log());
    // Gone as soon as the process has exited: revoked, not expired.
    assert.equal(await getKv(client, `${PREFIX}web/n1`), undefined);
    assert.equal((await leaseTtl(client, kv.lease)).remaining, -1);
    assert.match(a.log(), /SIGTERM: stopping\n.*withdrew web\/n1/);
  } finally {
    await a.proc.kill();
    await web.close();
  }
});

test('announce: after SIGKILL the record outlives the process until its lease expires', async () => {
  const a = announcer(dir, 'kill', ['db', '--host', '10.99.0.5', '--port', '5432', '--instance', 'n2', '--ttl', '2', ...conn()]);
  try {
    await a.waitLog(/announced db\/n2 tcp:\/\/10\.99\.0\.5:5432/);
    const kv = await getKv(client, `${PREFIX}db/n2`);
    assert.ok(kv);
    assert.equal((await leaseTtl(client, kv.lease)).granted, 2);
    await a.proc.kill();
    // Nobody is left to delete it: only the lease's expiry can.
    await waitUntil('the killed announcer\'s record to expire', async () => ((await getKv(client, `${PREFIX}db/n2`)) ? undefined : true), 20_000);
    assert.equal((await leaseTtl(client, kv.lease)).remaining, -1);
    assert.doesNotMatch(a.log(), /withdrew/);
  } finally {
    await a.proc.kill();
  }
});

test('announce --check-interval: waits for health, withdraws while unhealthy (same lease kept), restores, withdraws when the port closes', async () => {
  const web = await healthServer();
  web.status = 503;
  const key = `${PREFIX}api/n3`;
  const a = announcer(dir, 'health', ['api', '--host', '127.0.0.1', '--port', String(web.port), '--protocol', 'http', '--path', '/health', '--instance', 'n3', '--ttl', '5', '--check-interval', '1', ...conn()]);
  try {
    await a.waitLog(/not announcing api\/n3: unhealthy: GET http:\/\/127\.0\.0\.1:\d+\/health answered 503/);
    assert.equal(await getKv(client, key), undefined);
    web.status = 200;
    const first = await waitUntil('api/n3 announced once healthy', () => getKv(client, key));
    web.status = 500;
    await a.waitLog(/withdrew api\/n3: unhealthy: GET .* answered 500/);
    assert.equal(await getKv(client, key), undefined);
    assert.ok(a.proc.running);
    web.status = 204;
    const second = await waitUntil('api/n3 restored', () => getKv(client, key));
    assert.equal(second.lease, first.lease);
    await web.close();
    // The log line follows the delete, so wait for the line and then look at etcd.
    await a.waitLog(/withdrew api\/n3: unhealthy: GET http:\/\/127\.0\.0\.1:\d+\/health: connect ECONNREFUSED/);
    assert.equal(await getKv(client, key), undefined);
    await a.proc.stop();
    assert.equal(await a.proc.exited, 0);
  } finally {
    await a.proc.kill();
    await web.close().catch(() => undefined);
  }
});

test('announce: a deleted record is put back; a revoked lease is replaced by a new one', async () => {
  const key = `${PREFIX}cache/n4`;
  const a = announcer(dir, 'heal', ['cache', '--host', '127.0.0.1', '--port', '11211', '--instance', 'n4', '--ttl', '3', ...conn()]);
  try {
    await a.waitLog(/announced cache\/n4/);
    const first = (await getKv(client, key))!;
    await etcdctl(etcd, ['del', key]);
    const back = await waitUntil('cache/n4 put back', () => getKv(client, key));
    assert.equal(back.lease, first.lease);
    assert.match(a.log(), /was deleted; announcing again/);
    await etcdctl(etcd, ['lease', 'revoke', BigInt(first.lease).toString(16)]);
    const renewed = await waitUntil('cache/n4 under a new lease', async () => {
      const kv = await getKv(client, key);
      return kv && kv.lease !== first.lease ? kv : undefined;
    });
    assert.equal((await leaseTtl(client, renewed.lease)).granted, 3);
    await a.proc.stop();
    assert.equal(await getKv(client, key), undefined);
  } finally {
    await a.proc.kill();
  }
});

test('announce: a second announcer of the same instance takes over; the first exits with a conflict (4)', async () => {
  const key = `${PREFIX}dup/n5`;
  const first = announcer(dir, 'dup1', ['dup', '--host', '127.0.0.1', '--port', '1000', '--instance', 'n5', '--ttl', '3', ...conn()]);
  let second: ReturnType<typeof announcer> | undefined;
  try {
    await first.waitLog(/announced dup\/n5/);
    second = announcer(dir, 'dup2', ['dup', '--host', '127.0.0.2', '--port', '2000', '--instance', 'n5', '--ttl', '3', ...conn()]);
    await second.waitLog(/replacing .*dup\/n5 \(lease \d+\)/);
    assert.equal(await first.proc.exited, 4, first.log());
    assert.match(first.log(), /dup\/n5 was written by another announcer \(lease \d+\) after this one: give each announcer its own --instance/);
    // The loser revoked only its own lease: the winner's record stays.
    assert.equal(JSON.parse((await getKv(client, key))!.value.toString()).port, 2000);
    await second.proc.stop();
    assert.equal(await getKv(client, key), undefined);
  } finally {
    await first.proc.kill();
    await second?.proc.kill();
  }
});
