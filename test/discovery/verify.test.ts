/**
 * The verify discovery suite against announcements made by `flotilla announce` (real etcd,
 * the sshd fixture as the node that probes): passes while the announcer keeps its service
 * announced; once the endpoint fails the announcer withdraws it and the suite reports the
 * expected service as not announced.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Etcd3 } from 'etcd3';
import { resolveInventory } from '../../src/cluster/inventory';
import { VerifyCluster } from '../../src/verify/cluster';
import { runChecks } from '../../src/verify/runner';
import { discoverySuite } from '../../src/verify/suites/discovery';
import type { CheckResult } from '../../src/verify/types';
import { startEtcd, type SingleEtcd } from '../fixtures/etcd';
import { makeTempDir, removeTempDir } from '../fixtures/proc';
import { startSshd, type Sshd } from '../fixtures/sshd';
import { announcer, getKv, healthServer, waitUntil } from './helpers';

let etcd: SingleEtcd;
let sshd: Sshd;
let client: Etcd3;
let dir: string;

before(async () => {
  dir = makeTempDir('flotilla-discovery-verify');
  [etcd, sshd] = await Promise.all([startEtcd(), startSshd()]);
  client = new Etcd3({ hosts: etcd.endpoint });
  fs.writeFileSync(path.join(dir, 'id'), sshd.clientPrivateKey, { mode: 0o600 });
});
after(async () => {
  client?.close();
  await Promise.all([etcd?.stop(), sshd?.stop()]);
  removeTempDir(dir);
});

async function verifyDiscovery(): Promise<CheckResult[]> {
  const inv = resolveInventory(
    {
      name: 'dver',
      ssh: { user: sshd.user, privateKeyFile: path.join(dir, 'id') },
      nodes: [{ name: 'n1', address: '127.0.0.1', etcdMember: true, hostKey: sshd.hostKeyPublic, ssh: { host: '127.0.0.1', port: sshd.port } }],
      etcd: { endpoints: [etcd.endpoint] },
      discovery: { services: ['web'] },
    },
    { baseDir: dir },
  );
  const c = new VerifyCluster(inv);
  try {
    await c.connect();
    return await runChecks(discoverySuite(c), c, { timeoutMs: 3000 });
  } finally {
    await c.close();
  }
}
const explain = (rs: CheckResult[]): string => rs.map((r) => `${r.status} ${r.id}: ${r.message}`).join('\n');

test('verify discovery passes on what flotilla announce keeps announced, and fails once it withdraws', async () => {
  const web = await healthServer();
  const a = announcer(dir, 'web', ['web', '--host', '127.0.0.1', '--port', String(web.port), '--protocol', 'http', '--path', '/health', '--instance', 'n1', '--check-interval', '1', '--endpoints', etcd.endpoint, '--cluster', 'dver']);
  try {
    await a.waitLog(/announced web\/n1/);
    let rs = await verifyDiscovery();
    assert.deepEqual(rs.map((r) => r.status), ['pass', 'pass'], explain(rs));
    assert.match(rs[1]!.message, /1 endpoints answer/);
    web.status = 503;
    await waitUntil('web/n1 withdrawn', async () => ((await getKv(client, '/flotilla/dver/services/web/n1')) ? undefined : true));
    rs = await verifyDiscovery();
    assert.equal(rs[0]!.status, 'fail', explain(rs));
    assert.match(rs[0]!.message, /not announced: web/);
  } finally {
    await a.proc.stop();
    await web.close();
  }
});
