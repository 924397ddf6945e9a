/**
 * The verification inventory of a local cluster, from its record: `flotilla verify
 * --cluster NAME` and `flotilla smoke` use it. The host reaches etcd through a tunnel over
 * a node's pinned SSH connection (the cluster network lives in its own namespace).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PKI } from '../../config/node-files';
import { servicesPrefix } from '../../config/key-layout';
import { writeFileAtomic } from '../../util/fs';
import type { Inventory, Pace } from '../../cluster/inventory';
import { readPki } from '../../cluster/pki';
import { clusterFiles, readRecord, type ClusterRecord, type NodeRecord } from '../../cluster/store';

/** True when the node's running QEMU (local or libvirt's) emulates its CPU (TCG); undefined when it is not running. */
export function nodeEmulated(node: Pick<NodeRecord, 'pidFile'>): boolean | undefined {
  try {
    const pid = Number(fs.readFileSync(node.pidFile, 'utf8').trim());
    const args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return args.some((a, i) => /(^|,)accel=tcg(,|$)/.test(a) || (a === '-accel' && /^tcg(,|$)/.test(args[i + 1] ?? '')));
  } catch {
    return undefined;
  }
}

/** emulated when any running node is TCG-emulated: verification deadlines scale with it. */
export function clusterPace(record: Pick<ClusterRecord, 'nodes'>): Pace | undefined {
  const seen = record.nodes.map(nodeEmulated).filter((e): e is boolean => e !== undefined);
  if (seen.length === 0) return undefined;
  return seen.some(Boolean) ? 'emulated' : 'native';
}

export function inventoryFromRecord(record: ClusterRecord): Inventory {
  const files = clusterFiles(record.name);
  let tls: Inventory['etcd']['tls'];
  if (record.tls) {
    const pki = readPki(files.pki);
    if (pki) {
      const pkiDir = files.hostPki;
      const caFile = path.join(pkiDir, 'ca.crt');
      const certFile = path.join(pkiDir, 'client.crt');
      const keyFile = path.join(pkiDir, 'client.key');
      writeFileAtomic(caFile, pki.ca.cert, 0o644);
      writeFileAtomic(certFile, pki.client.cert, 0o644);
      writeFileAtomic(keyFile, pki.client.key, 0o600);
      tls = { caFile, certFile, keyFile };
    }
  }
  const scheme = record.tls ? 'https' : 'http';
  // The accelerator up launched with; records from before it was kept are read from the live QEMU.
  const pace: Pace | undefined = record.accelerator ? (record.accelerator === 'tcg' ? 'emulated' : 'native') : clusterPace(record);
  return {
    name: record.name,
    ...(pace ? { pace } : {}),
    ssh: { privateKey: fs.readFileSync(record.sshKeyFile, 'utf8'), privateKeyFile: record.sshKeyFile },
    nodes: record.nodes.map((n) => ({
      name: n.name,
      address: n.address,
      hostKey: n.hostPublicKey,
      ssh: { host: '127.0.0.1', port: n.sshPort, user: record.user, netns: record.netns },
      role: n.etcdMember ? 'controller' : 'worker',
      etcdMember: n.etcdMember,
      metadata: n.metadata,
      ...(n.machineId ? { machineId: n.machineId } : {}),
      etcdEndpoint: `${scheme}://${n.address}:${record.clientPort}`,
      agent: { stopCommand: 'systemctl stop flotilla-fleetd', startCommand: 'systemctl start flotilla-fleetd' },
    })),
    etcd: {
      endpoints: record.etcdEndpoints,
      clientPort: record.clientPort,
      ...(tls ? { tls } : {}),
      // etcdctl on the nodes uses the PKI `up` delivered there (without it, every on-node etcd
      // check failed its TLS handshake and reported "context deadline exceeded").
      ...(record.tls ? { nodeTls: { caFile: PKI.ca, certFile: PKI.clientCert, keyFile: PKI.clientKey } } : {}),
      access: 'tunnel',
      etcdctl: 'etcdctl',
    },
    keyPrefix: record.keyPrefix,
    discovery: { prefix: servicesPrefix(record.keyPrefix), services: [] },
  };
}

/** Inventory provider for registerInventoryProvider: local clusters by name. */
export async function localInventoryProvider(name: string): Promise<Inventory | undefined> {
  const record = readRecord(name);
  return record ? inventoryFromRecord(record) : undefined;
}
