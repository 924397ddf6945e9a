/**
 * src/provision/replace-etcd.ts over a real SSH connection (the test sshd on this host) to a real
 * etcd cluster: the view replace decides by, and a failing etcdctl reported with its last lines.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { startSshd, type Sshd } from '../fixtures/sshd';
import { startEtcdCluster, type EtcdCluster } from '../fixtures/etcd';
import { NodeConnection } from '../../src/ssh';
import { etcdctl, etcdView, must } from '../../src/provision/replace-etcd';

let sshd: Sshd;
let etcd: EtcdCluster;
let conn: NodeConnection;
before(async () => {
  [sshd, etcd] = await Promise.all([startSshd(), startEtcdCluster(3)]);
  conn = new NodeConnection({ node: 'anchor', host: sshd.host, port: sshd.port, user: sshd.user, hostKey: sshd.hostKeyPublic, privateKey: sshd.clientPrivateKey });
});
after(async () => {
  await conn?.close();
  await Promise.all([sshd?.stop(), etcd?.stop()]);
});

test('the live view: every member, each healthy by its own endpoint, one leader; a dead member is not healthy', async () => {
  const record = { tls: false, clientPort: etcd.members[0]!.clientPort };
  const view = await etcdView(record, conn);
  assert.deepEqual(view.members.map((m) => m.name).sort(), etcd.members.map((m) => m.name).sort());
  assert.equal(view.healthyIds.size, 3);
  assert.ok(view.leaderId && view.members.some((m) => m.id === view.leaderId));

  await etcd.members[2]!.stop();
  const after = await etcdView(record, conn);
  assert.equal(after.members.length, 3, 'a stopped member is still a member');
  assert.equal(after.healthyIds.size, 2);
  assert.ok(!after.healthyIds.has(after.members.find((m) => m.name === etcd.members[2]!.name)!.id));
});

test('must: a failing etcdctl is an error with what it was doing and its last lines', async () => {
  const record = { tls: false, clientPort: etcd.members[0]!.clientPort };
  await assert.rejects(must(etcdctl(conn, record, 'no-such-command'), 'etcdctl no-such-command'), /^FlotillaError: etcdctl no-such-command failed \(exit 1\): .*unknown command/);
  assert.equal((await must(etcdctl(conn, record, 'put /k v'), 'put')).trim(), 'OK');
});
