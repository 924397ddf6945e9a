/** Inventory and YAML check files: defaults, and every problem located by file and line (exit 2). */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../../src/errors';
import { exitCodeFor } from '../../src/cli/exit-codes';
import { generateHostKey } from '../../src/ssh/keys';
import { loadInventoryText } from '../../src/cluster/inventory';
import { loadChecksText, unmatched } from '../../src/verify/checks/yaml';
import { makeTempDir, removeTempDir } from '../fixtures/proc';

let dir: string;
const host = generateHostKey('h').publicKey;
const client = generateHostKey('c');
before(() => {
  dir = makeTempDir('flotilla-verify-inv');
  fs.writeFileSync(path.join(dir, 'id_ed25519'), client.privateKey, { mode: 0o600 });
});
after(() => removeTempDir(dir));

const file = (): string => path.join(dir, 'inventory.yaml');

function errorOf(fn: () => unknown): FlotillaError {
  try {
    fn();
  } catch (err) {
    assert.ok(FlotillaError.is(err), String(err));
    return err;
  }
  assert.fail('no error');
}

test('a good inventory: defaults for user, members, endpoints, prefix, node TLS, access', () => {
  const text = [
    'name: demo',
    'ssh: {user: core, privateKeyFile: id_ed25519}',
    'nodes:',
    `  - {name: core1, address: 10.99.0.11, role: controller, hostKey: "${host}", ssh: {host: 127.0.0.1, port: 2201, netns: flotilla-demo}, metadata: {region: east}}`,
    `  - {name: core2, address: 10.99.0.12, hostKey: "${host}", ssh: {port: 2202}}`,
    'etcd: {tls: {caFile: pki/ca.crt, certFile: pki/client.crt, keyFile: pki/client.key}}',
    'discovery: {services: [web]}',
  ].join('\n');
  const inv = loadInventoryText(text, file());
  assert.equal(inv.name, 'demo');
  assert.equal(inv.ssh.privateKey, client.privateKey);
  assert.deepEqual(inv.nodes.map((n) => [n.name, n.etcdMember, n.ssh.user, n.ssh.host, n.ssh.port]), [['core1', true, 'core', '127.0.0.1', 2201], ['core2', false, 'core', '10.99.0.12', 2202]]);
  assert.deepEqual(inv.etcd.endpoints, ['https://10.99.0.11:2379']);
  assert.equal(inv.etcd.access, 'tunnel', 'a node in a netns: etcd is tunnelled');
  assert.equal(inv.etcd.tls!.caFile, path.join(dir, 'pki/ca.crt'));
  assert.equal(inv.etcd.nodeTls!.certFile, '/etc/flotilla/pki/client.crt');
  assert.equal(inv.keyPrefix, '/flotilla/demo/');
  assert.deepEqual(inv.discovery, { prefix: '/flotilla/demo/services/', services: ['web'] });
  assert.equal(inv.nodes[0]!.agent.stopCommand, 'systemctl stop flotilla-fleetd.path flotilla-fleetd.service');
});

test('every inventory problem at once, each with file:line:column and path', () => {
  const text = [
    'name: Demo_1', // 1
    'ssh: {privateKeyFile: missing.key}', // 2
    'nodes:', // 3
    `  - name: core1`, // 4
    '    address: 10.99.0.11', // 5
    '    hostKey: "ssh-ed25519 AAAAnotakey"', // 6
    '    ssh: {host: 127.0.0.1, port: 70000}', // 7
    '    adress: typo', // 8
    '  - name: core1', // 9
    '    address: 10.99.0.12', // 10
    `    hostKey: "${host}"`, // 11
    '    ssh: {port: 22, netns: "bad ns"}', // 12
    'etcd: {endpoints: ["ftp://x"], access: sideways}', // 13
  ].join('\n');
  const err = errorOf(() => loadInventoryText(text, file()));
  assert.equal(err.code, 'invalid-input');
  assert.equal(exitCodeFor(err), 2);
  const got = err.problems.map((p) => `${p.line}:${p.path}`);
  for (const want of ['1:name', '2:ssh.privateKeyFile', '6:nodes[0].hostKey', '7:nodes[0].ssh.port', '8:nodes[0].adress', '9:nodes[1].name', '12:nodes[1].ssh.netns', '13:etcd.endpoints[0]', '13:etcd.access']) {
    assert.ok(got.includes(want), `expected ${want} in ${got.join(', ')}`);
  }
  assert.match(err.message, /inventory\.yaml:8:5: nodes\[0\]\.adress: unknown field \(did you mean "address"\?\)/);
  assert.match(err.message, /inventory\.yaml:9:\d+: nodes\[1\]\.name: duplicate name "core1" \(also nodes\[0\]\)/);
  assert.match(err.message, /ssh\.privateKeyFile: cannot read .*missing\.key: no such file/);
  // Lines are in order.
  const lines = err.problems.map((p) => p.line ?? 0);
  assert.deepEqual(lines, [...lines].sort((a, b) => a - b));
});

test('YAML syntax errors and JSON inventories are located too', () => {
  const bad = errorOf(() => loadInventoryText('name: demo\nnodes: [\n', file()));
  assert.match(bad.message, /inventory\.yaml:\d+:\d+: /);
  const json = JSON.stringify({ name: 'demo', ssh: { privateKeyFile: 'id_ed25519' }, nodes: [{ name: 'n1', address: '127.0.0.1', hostKey: host, ssh: { port: 22 }, etcdMember: true }] }, null, 2);
  assert.equal(loadInventoryText(json, path.join(dir, 'inv.json')).nodes[0]!.etcdEndpoint, 'http://127.0.0.1:2379');
});

test('check files: resources parsed; problems located; unknown nodes named', () => {
  const cf = loadChecksText(
    [
      'nodes: [core1]',
      'file:',
      '  /etc/hosts: {exists: true, mode: "0644", owner: root, contains: [localhost, "/^127\\\\./m", "!nothere"]}',
      'command:',
      '  "echo hi": {exit-status: 0, stdout: [hi], timeout: 5000}',
      'port:',
      '  tcp:22: {listening: true}',
      'etcd-key:',
      '  /flotilla/demo/machines/: {prefix: true}',
    ].join('\n'),
    'checks.yaml',
    ['core1', 'core2'],
  );
  assert.deepEqual(cf.resources.map((r) => r.type), ['file', 'command', 'port', 'etcd-key']);
  const f = cf.resources[0]!;
  assert.ok(f.type === 'file' && f.mode === 0o644);
  if (f.type === 'file') {
    assert.deepEqual(unmatched(f.contains, '127.0.0.1 localhost\n'), []);
    assert.deepEqual(unmatched(f.contains, 'nothere localhost'), ['lacks /^127\\./m', 'contains "nothere"']);
  }
  const err = errorOf(() =>
    loadChecksText(
      [
        'file:', // 1
        '  relative/path: {exists: yes}', // 2
        'servce:', // 3
        '  x.service: {running: true}', // 4
        'command:', // 5
        '  "true": {exit-status: 300, stdot: [x]}', // 6
        'port:', // 7
        '  tcp:http: {listening: true}', // 8
        'http:', // 9
        '  https://example.invalid/: {status: 200}', // 10
        '  http://127.0.0.1:1/: {body: ["/(unclosed/"], nodes: [core9]}', // 11
      ].join('\n'),
      'checks.yaml',
      ['core1'],
    ),
  );
  assert.equal(exitCodeFor(err), 2);
  const got = err.problems.map((p) => `${p.line}:${p.path}`);
  for (const want of ['2:file."relative/path"', '2:file."relative/path".exists', '3:servce', '6:command.true."exit-status"', '6:command.true.stdot', '8:port."tcp:http"', '10:http."https://example.invalid/"', '11:http."http://127.0.0.1:1/".body[0]', '11:http."http://127.0.0.1:1/".nodes']) {
    assert.ok(got.includes(want), `expected ${want} in ${got.join(', ')}`);
  }
  assert.match(err.message, /checks\.yaml:3:1: servce: unknown resource type \(did you mean "service"\?\)/);
  assert.match(err.message, /unknown node core9 \(inventory has core1\)/);
});
