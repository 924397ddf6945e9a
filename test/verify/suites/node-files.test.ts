/**
 * The node suite's expected files when verify runs without a spec (replace, `verify --cluster`
 * on a record): whether the PKI must be on the nodes follows the inventory's etcd settings.
 * A plain-HTTP cluster verified this way used to fail "files present" on every node.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { PATHS, PKI } from '../../../src/config/node-files';
import { clusterUsesTls, expectedNodeFiles } from '../../../src/verify/suites/node';
import type { Inventory, InventoryNode } from '../../../src/cluster/inventory';

function inventory(scheme: 'http' | 'https', tls: boolean): Inventory {
  const node: InventoryNode = {
    name: 'node1',
    address: '10.0.0.1',
    hostKey: 'ssh-ed25519 AAAA',
    ssh: { host: '127.0.0.1', port: 2222, user: 'core' },
    role: 'controller',
    etcdMember: true,
    metadata: {},
    etcdEndpoint: `${scheme}://10.0.0.1:2379`,
  } as InventoryNode;
  return {
    name: 'c',
    ssh: { privateKey: 'k' },
    nodes: [node],
    etcd: {
      endpoints: [`${scheme}://10.0.0.1:2379`],
      clientPort: 2379,
      ...(tls ? { nodeTls: { caFile: PKI.ca, certFile: PKI.clientCert, keyFile: PKI.clientKey } } : {}),
      access: 'tunnel',
      etcdctl: 'etcdctl',
    },
    keyPrefix: '/flotilla/',
    discovery: { prefix: '/flotilla/services/', services: [] },
  } as Inventory;
}

it('without a spec, PKI files are expected exactly when the inventory says etcd uses TLS', () => {
  const plain = inventory('http', false);
  const secure = inventory('https', true);
  assert.equal(clusterUsesTls(plain, undefined), false);
  assert.equal(clusterUsesTls(secure, undefined), true);
  // An https endpoint alone is enough (hand-written inventories may leave nodeTls to its default).
  assert.equal(clusterUsesTls({ ...plain, etcd: { ...plain.etcd, endpoints: ['https://10.0.0.1:2379'] } }, undefined), true);

  const plainPaths = expectedNodeFiles(plain.nodes[0]!, undefined, false).map((f) => f.path);
  const securePaths = expectedNodeFiles(secure.nodes[0]!, undefined, true).map((f) => f.path);
  assert.ok(plainPaths.includes(PATHS.etcdEnv) && plainPaths.includes(PATHS.fleetdConfig));
  assert.ok(!plainPaths.some((p) => p.startsWith(PATHS.pkiDir)), plainPaths.join(', '));
  for (const p of [PKI.ca, PKI.clientCert, PKI.clientKey, PKI.etcdServerCert, PKI.etcdPeerKey, PATHS.pkiReady]) assert.ok(securePaths.includes(p), p);
});
