/** src/cluster/etcdctl.ts: the command line it builds runs the real etcdctl against a real TLS etcd, and proves a refusal without a certificate. */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startEtcd, type SingleEtcd } from '../fixtures/etcd';
import { PKI } from '../../src/config/node-files';
import { etcdctlCommand, memberEtcdctl } from '../../src/cluster/etcdctl';

let etcd: SingleEtcd;
before(async () => {
  etcd = await startEtcd({ tls: true });
});
after(async () => {
  await etcd?.stop();
});

function sh(command: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('sh', ['-c', command], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('the command runs under sh: put and get over TLS with the client certificate; refused without it', () => {
  const tls = { caFile: etcd.tls!.caFile, certFile: etcd.tls!.clientCertFile, keyFile: etcd.tls!.clientKeyFile };
  const o = { endpoints: etcd.endpoints, tls, dialTimeoutS: 3, commandTimeoutS: 5 };
  const put = sh(etcdctlCommand("put /t/k 'a value'", o));
  assert.equal(put.status, 0, put.stderr);
  const get = sh(etcdctlCommand('get /t/k --print-value-only', o));
  assert.equal(get.stdout, 'a value\n');
  const refused = sh(etcdctlCommand('get /t/k', { ...o, clientCert: false }));
  assert.notEqual(refused.status, 0, 'etcd answered a client without a certificate');
});

test('a Flotilla node: its own member by default, or the endpoints given; the delivered PKI when TLS is on', () => {
  assert.equal(
    etcdctlCommand('member list', memberEtcdctl({ tls: true, clientPort: 2379 })),
    `ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=${PKI.ca} --cert=${PKI.clientCert} --key=${PKI.clientKey} member list`,
  );
  assert.equal(
    etcdctlCommand('endpoint health', memberEtcdctl({ tls: false, clientPort: 2379 }, { endpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'], commandTimeoutS: 20 })),
    'ETCDCTL_API=3 etcdctl --endpoints=http://10.0.0.1:2379,http://10.0.0.2:2379 --command-timeout=20s endpoint health',
  );
  // Words from an inventory are quoted for the shell.
  assert.match(etcdctlCommand('version', { endpoints: ['http://h:1'], program: '/opt/etcd dir/etcdctl' }), /^ETCDCTL_API=3 '\/opt\/etcd dir\/etcdctl' /);
});
