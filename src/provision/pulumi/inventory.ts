/**
 * The inventory a stack exports for `flotilla verify --inventory`: how to reach every node
 * (SSH endpoint, login user, pinned host key) and what it should be (cluster address, role,
 * metadata, etcd membership), plus the etcd endpoints. Plain data, no secrets: private keys
 * never appear here. Pure.
 */
import type { NodeRole, ResolvedSpec } from '../../config/spec';
import { etcdEndpoints } from '../../config/node-files';

export const INVENTORY_VERSION = 1;

export interface InventoryNode {
  name: string;
  /** Cluster address (the etcd and agent address). */
  address: string;
  /** Where SSH answers: a public IP (aws) or 127.0.0.1 with a forwarded port (libvirt). */
  sshHost: string;
  sshPort: number;
  user: string;
  /** The pinned host key, `ssh-ed25519 AAAA...`. */
  hostPublicKey: string;
  role: NodeRole;
  metadata: Record<string, string>;
  etcdMember: boolean;
}

export interface Inventory {
  version: typeof INVENTORY_VERSION;
  cluster: string;
  platform: string;
  format: string;
  nodes: InventoryNode[];
  etcd: {
    endpoints: string[];
    tls: boolean;
    /** The cluster CA (PEM), when TLS is on: what etcd's certificates chain to. */
    caCert?: string;
    /** etcd key prefix of the cluster's registry. */
    keyPrefix: string;
  };
}

export interface NodeEndpoint {
  sshHost: string;
  sshPort: number;
  /** Overrides the spec's address (never on the platforms here: nodes get the spec's addresses). */
  address?: string;
}

/** Builds the inventory from the spec, each node's SSH endpoint and host key, and the CA. */
export function buildInventory(spec: ResolvedSpec, endpoints: Record<string, NodeEndpoint>, hostPublicKeys: Record<string, string>, caCert?: string): Inventory {
  return {
    version: INVENTORY_VERSION,
    cluster: spec.name,
    platform: spec.platform,
    format: spec.format,
    nodes: spec.nodes.map((n) => {
      const ep = endpoints[n.name];
      const key = hostPublicKeys[n.name];
      if (!ep || !key) throw new Error(`inventory: no endpoint or host key for node ${n.name}`);
      return {
        name: n.name,
        address: ep.address ?? n.address,
        sshHost: ep.sshHost,
        sshPort: ep.sshPort,
        user: spec.ssh.user,
        hostPublicKey: key,
        role: n.role,
        metadata: { ...n.metadata },
        etcdMember: n.etcdMember,
      };
    }),
    etcd: {
      endpoints: etcdEndpoints(spec),
      tls: spec.etcd.tls,
      ...(spec.etcd.tls && caCert ? { caCert } : {}),
      keyPrefix: spec.agent.keyPrefix,
    },
  };
}
