/** src/cluster/store.ts: the cluster directory's layout, records that round-trip, damaged files named, the client key kept. */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeTempDir, removeTempDir } from '../fixtures/proc';
import { clusterFiles, ensureClientKey, listClusters, nodeSshTarget, readRecord, readSavedSpec, resolveClusterName, writeKnownHosts, writeRecord, type ClusterRecord } from '../../src/cluster/store';
import { generateKeyPair } from '../../src/ssh';

let state: string;
const saved = process.env.FLOTILLA_STATE_DIR;
before(() => {
  state = makeTempDir('flotilla-store');
  process.env.FLOTILLA_STATE_DIR = state;
});
after(() => {
  if (saved === undefined) delete process.env.FLOTILLA_STATE_DIR;
  else process.env.FLOTILLA_STATE_DIR = saved;
  removeTempDir(state);
});

function record(name: string): ClusterRecord {
  const f = clusterFiles(name);
  return {
    version: 1, name, platform: 'local', format: 'cloud-config', netns: `flotilla-${name}`, createdAt: new Date(0).toISOString(), user: 'core',
    sshKeyFile: f.key, knownHostsFile: f.knownHosts, tls: true, keyPrefix: '/flotilla/', clientPort: 2379, etcdEndpoints: [], accelerator: 'tcg',
    nodes: [{ name: 'node1', address: '10.0.0.11', role: 'controller', etcdMember: true, metadata: {}, sshPort: 2201, hostPublicKey: generateKeyPair('h').publicKey, pidFile: '/x', consoleLog: '/y' }],
    timeline: {}, phases: [], cpuSeconds: {},
  };
}

test('records round-trip under <state>/clusters/NAME; the name defaults to the only cluster', () => {
  assert.deepEqual(listClusters(), []);
  assert.throws(() => resolveClusterName(undefined), /no local cluster; run flotilla up/);
  const r = record('one');
  writeRecord(r);
  assert.equal(clusterFiles('one').record, path.join(state, 'clusters', 'one', 'cluster.json'));
  assert.deepEqual(readRecord('one'), r);
  assert.equal(readRecord('none'), undefined);
  assert.equal(resolveClusterName(undefined), 'one');
  writeRecord(record('two'));
  assert.deepEqual(listClusters(), ['one', 'two']);
  assert.throws(() => resolveClusterName(undefined), /several local clusters \(one, two\); pass --name/);
  assert.equal(resolveClusterName('two'), 'two');
});

test('a damaged record or saved spec is an error naming its file', () => {
  writeRecord(record('bad'));
  fs.writeFileSync(clusterFiles('bad').record, '{ not json');
  assert.throws(() => readRecord('bad'), (e: Error) => e.message.startsWith(`${clusterFiles('bad').record}: unreadable cluster record`));
  fs.writeFileSync(clusterFiles('bad').spec, '[');
  assert.throws(() => readSavedSpec('bad'), new RegExp(`${clusterFiles('bad').spec.replace(/[.]/g, '\\.')}: unreadable saved spec`));
});

test('the client key is made once and kept (0600); the SSH target and known_hosts pin each node\'s key', () => {
  const r = record('keys');
  writeRecord(r);
  const k1 = ensureClientKey('keys');
  const k2 = ensureClientKey('keys');
  assert.deepEqual(k2, k1);
  assert.equal(fs.statSync(k1.file).mode & 0o777, 0o600);
  const t = nodeSshTarget(r, r.nodes[0]!);
  assert.deepEqual({ ...t, privateKey: String(t.privateKey) }, { node: 'node1', host: '127.0.0.1', port: 2201, user: 'core', hostKey: r.nodes[0]!.hostPublicKey, privateKey: k1.privateKey, privateKeyFile: k1.file, netns: 'flotilla-keys' });
  writeKnownHosts(r);
  assert.equal(fs.readFileSync(r.knownHostsFile, 'utf8'), `[127.0.0.1]:2201 ${r.nodes[0]!.hostPublicKey.split(' ').slice(0, 2).join(' ')}\n`);
});
