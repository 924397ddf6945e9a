import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { loadSpecObject } from '../../src/config/load';
import { PKI, PATHS } from '../../src/config/node-files';
import { generatePki, installScript, nodePkiFiles } from '../../src/cluster/pki';
import { Registry } from '../../src/units/registry';
import { freePorts } from '../fixtures/ports';
import { ManagedProcess, makeTempDir, removeTempDir, sleep } from '../fixtures/proc';
import { makeSpec, nodes } from '../helpers/spec';

test('cluster PKI: etcd serves with a member certificate, accepts the client certificate, refuses clients without one', async () => {
  const spec = loadSpecObject(makeSpec({ name: 'pki', nodes: nodes(4) }));
  const pki = await generatePki(spec);
  assert.deepEqual(Object.keys(pki.members), ['node1', 'node2', 'node3'], 'one pair per etcd member');
  assert.deepEqual(nodePkiFiles(pki, 'node4').map((f) => f.path), [PKI.ca, PKI.clientCert, PKI.clientKey], 'workers get no server keys');
  const dir = makeTempDir('flotilla-pki-test-');
  let etcd: ManagedProcess | undefined;
  try {
    for (const [name, contents] of Object.entries({ 'ca.crt': pki.ca.cert, 's.crt': pki.members.node1!.server.cert, 's.key': pki.members.node1!.server.key })) fs.writeFileSync(path.join(dir, name), contents);
    // The SANs name the node's cluster address and 127.0.0.1.
    const text = execFileSync('openssl', ['x509', '-in', path.join(dir, 's.crt'), '-noout', '-text'], { encoding: 'utf8' });
    assert.match(text, /IP Address:10\.99\.0\.11, IP Address:127\.0\.0\.1, DNS:node1/);
    const [client, peer] = await freePorts(2);
    const url = `https://127.0.0.1:${client}`;
    etcd = new ManagedProcess('/usr/bin/etcd', [
      '--name', 'node1', '--data-dir', path.join(dir, 'data'),
      '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-cluster', `node1=http://127.0.0.1:${peer}`,
      '--cert-file', path.join(dir, 's.crt'), '--key-file', path.join(dir, 's.key'), '--trusted-ca-file', path.join(dir, 'ca.crt'), '--client-cert-auth',
    ], path.join(dir, 'etcd.log'));
    let reg: Registry | undefined;
    for (let i = 0; i < 300 && !reg; i++) {
      reg = await Registry.connect({ endpoints: [url], cluster: 'pki', tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }, dialTimeoutMs: 1000 }).catch(() => undefined);
      if (!reg) await sleep(100);
    }
    assert.ok(reg, `etcd did not accept the client certificate:\n${fs.readFileSync(path.join(dir, 'etcd.log'), 'utf8').slice(-2000)}`);
    await reg.submitUnit('x.service', '[Service]\nExecStart=/bin/true\n');
    await reg.close();
    await assert.rejects(Registry.connect({ endpoints: [url], cluster: 'pki', tls: { ca: pki.ca.cert }, dialTimeoutMs: 2000 }), /etcd at https:\/\/127\.0\.0\.1/);
  } finally {
    await etcd?.stop();
    removeTempDir(dir);
  }
});

test('secret delivery script installs files with their modes and creates the ready file last, injection-proof', () => {
  const root = makeTempDir('flotilla-deliver-');
  try {
    const hostile = "'; touch /tmp/pwned-flotilla; echo '\nFLOTILLA_EOF\n$(reboot)";
    const files = [
      { path: PKI.ca, contents: 'CA\n', mode: 0o644 },
      { path: PKI.clientKey, contents: hostile, mode: 0o600 },
    ];
    execFileSync('sh', ['-s'], { input: installScript(files, PATHS.pkiReady, { root }) });
    assert.equal(fs.readFileSync(path.join(root, PKI.clientKey), 'utf8'), hostile);
    assert.equal(fs.statSync(path.join(root, PKI.clientKey)).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.join(root, PKI.ca)).mode & 0o777, 0o644);
    assert.ok(fs.existsSync(path.join(root, PATHS.pkiReady)));
    assert.equal(fs.existsSync('/tmp/pwned-flotilla'), false);
    assert.throws(() => installScript([{ path: "/etc/x'; rm -rf /", contents: '', mode: 0o600 }], PATHS.pkiReady), /unsafe path/);
  } finally {
    removeTempDir(root);
  }
});
