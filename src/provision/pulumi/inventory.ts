/**
 * The inventory a stack exports, in the file format `flotilla verify --inventory FILE` reads
 * (src/cluster/inventory.ts): every node's SSH endpoint, login user and pinned host key, its
 * cluster address, role, metadata and etcd membership; etcd endpoints reached through a member's
 * SSH connection (neither AWS security groups nor the libvirt cluster L2 let the host dial them);
 * the host-side files: the SSH private key and etcd's CA and client certificate. Plain data,
 * no secrets: files are referenced by path. Pure.
 */
import * as path from 'node:path';
import type { NodeRole, ResolvedSpec } from '../../config/spec';
import { etcdEndpoints } from '../../config/node-files';

export interface InventoryFileNode {
  name: string;
  /** Cluster address (etcd and agent traffic). */
  address: string;
  /** The pinned host key, `ssh-ed25519 AAAA...`. */
  hostKey: string;
  /** Where SSH answers: a public IP (aws) or 127.0.0.1 with a forwarded port (libvirt). */
  ssh: { host: string; port: number; user: string };
  role: NodeRole;
  etcdMember: boolean;
  metadata: Record<string, string>;
}

/** `flotilla verify --inventory` input. */
export interface InventoryFile {
  name: string;
  /** The key the nodes accept (absent when the stack was given none: add it before verifying). */
  ssh?: { user: string; privateKeyFile: string };
  nodes: InventoryFileNode[];
  etcd: {
    endpoints: string[];
    clientPort: number;
    /** Host-side copies of the CA and the client certificate and key (when TLS is on and files are written). */
    tls?: { caFile: string; certFile: string; keyFile: string };
    access: 'tunnel';
  };
  registry: { keyPrefix: string };
  /** The spec file the cluster was made from, if any (for expected node files). */
  spec?: string;
}

export interface NodeEndpoint {
  sshHost: string;
  sshPort: number;
}

/** File names inside the stack's inventory directory. */
export const INVENTORY_FILES = {
  inventory: 'inventory.json',
  ca: 'etcd-ca.crt',
  clientCert: 'etcd-client.crt',
  clientKey: 'etcd-client.key',
  sshKey: 'ssh-key',
} as const;

export interface InventoryOptions {
  /** Directory the TLS files (and possibly the SSH key) are written to; absent: no file references. */
  dir?: string;
  /** The SSH private key's path; default `<dir>/ssh-key` when `sshKeyInDir`. */
  privateKeyFile?: string;
  sshKeyInDir?: boolean;
  specFile?: string;
}

/** Builds the inventory from the spec, each node's SSH endpoint and host key. */
export function buildInventory(spec: ResolvedSpec, endpoints: Record<string, NodeEndpoint>, hostKeys: Record<string, string>, opts: InventoryOptions = {}): InventoryFile {
  const keyFile = opts.privateKeyFile ?? (opts.dir && opts.sshKeyInDir ? path.join(opts.dir, INVENTORY_FILES.sshKey) : undefined);
  return {
    name: spec.name,
    ...(keyFile ? { ssh: { user: spec.ssh.user, privateKeyFile: keyFile } } : {}),
    nodes: spec.nodes.map((n) => {
      const ep = endpoints[n.name];
      const key = hostKeys[n.name];
      if (!ep || !key) throw new Error(`inventory: no endpoint or host key for node ${n.name}`);
      return {
        name: n.name,
        address: n.address,
        hostKey: key,
        ssh: { host: ep.sshHost, port: ep.sshPort, user: spec.ssh.user },
        role: n.role,
        etcdMember: n.etcdMember,
        metadata: { ...n.metadata },
      };
    }),
    etcd: {
      endpoints: etcdEndpoints(spec),
      clientPort: spec.etcd.clientPort,
      ...(spec.etcd.tls && opts.dir
        ? { tls: { caFile: path.join(opts.dir, INVENTORY_FILES.ca), certFile: path.join(opts.dir, INVENTORY_FILES.clientCert), keyFile: path.join(opts.dir, INVENTORY_FILES.clientKey) } }
        : {}),
      access: 'tunnel',
    },
    registry: { keyPrefix: spec.agent.keyPrefix },
    ...(opts.specFile ? { spec: opts.specFile } : {}),
  };
}
