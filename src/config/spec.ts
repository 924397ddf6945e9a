/**
 * The cluster spec: the typed description every renderer, provisioner and verifier reads.
 * Loaded from YAML (src/config/load.ts) or built in TypeScript, then checked by
 * validateSpec (src/config/validate.ts), which also fills in defaults (resolveSpec).
 */

export type ConfigFormat = 'cloud-config' | 'ignition';
export const CONFIG_FORMATS: readonly ConfigFormat[] = ['cloud-config', 'ignition'];

export type Platform = 'local' | 'libvirt' | 'aws';
export const PLATFORMS: readonly Platform[] = ['local', 'libvirt', 'aws'];

/** controller: runs an etcd member (and fleetd); worker: fleetd only, an etcd client. */
export type NodeRole = 'controller' | 'worker';
export const NODE_ROLES: readonly NodeRole[] = ['controller', 'worker'];

export type RunnerKind = 'auto' | 'systemd' | 'process';
export const RUNNER_KINDS: readonly RunnerKind[] = ['auto', 'systemd', 'process'];

export interface NodeSpec {
  /** DNS label: lowercase letters, digits, '-'; also the hostname. */
  name: string;
  /** Default: the first 1, 3 or 5 nodes are controllers (an odd etcd member count), the rest workers. */
  role?: NodeRole;
  /** Machine metadata for scheduling ([X-Fleet] MachineMetadata), e.g. `{ region: eu, disk: ssd }`. */
  metadata?: Record<string, string>;
  /** Fixed IPv4 address on the cluster network (must lie inside `network.cidr`). */
  address?: string;
  /** Advertised capacity for resource-aware placement. Defaults come from the platform. */
  cpus?: number;
  memoryMiB?: number;
}

export interface SshSpec {
  /** Login user created on every node (CoreOS's `core`). */
  user?: string;
  /** OpenSSH public keys allowed to log in as `user`. */
  authorizedKeys: string[];
}

export interface NetworkSpec {
  /** IPv4 CIDR of the cluster L2 network; nodes without `address` get one from it in order. */
  cidr?: string;
}

export interface EtcdSpec {
  /** Node names that run etcd members. Default: every controller. */
  members?: string[];
  clientPort?: number;
  peerPort?: number;
  /** Client and peer TLS with per-cluster certificates. On by default. */
  tls?: boolean;
  heartbeatIntervalMs?: number;
  electionTimeoutMs?: number;
}

export interface AgentSpec {
  /** Machine lease TTL in seconds; an agent that cannot renew for this long fences itself. */
  ttlSeconds?: number;
  /** Engine's periodic reconcile sweep, in milliseconds. */
  reconcileIntervalMs?: number;
  runner?: RunnerKind;
  /** etcd key prefix for this cluster's registry. Default `/flotilla/<cluster name>/`. */
  keyPrefix?: string;
}

/** A unit submitted to the scheduler when the cluster first starts. */
export interface PreloadUnit {
  /** Unit name, e.g. `hello.service` or `web@1.service`. Default: the file's base name. */
  name?: string;
  /** Path to a unit file (relative to the spec file); or give `contents`. */
  file?: string;
  contents?: string;
  /** Desired state after submit. Default `launched`. */
  state?: 'inactive' | 'loaded' | 'launched';
}

/** Extra first-boot config merged into every node's (or the named nodes') output. */
export interface Snippet {
  format: ConfigFormat;
  /** Path to a YAML (cloud-config) or JSON (Ignition) fragment, or give `contents`. */
  file?: string;
  contents?: string;
  /** Only these nodes; default all. */
  nodes?: string[];
}

export interface AwsSpec {
  region?: string;
  /** Where an Ignition config too large for user-data is uploaded; `<node>.ign` is appended. s3:// or https://. */
  largeConfigUrl?: string;
}

export interface ClusterSpec {
  /** DNS label; names the cluster's state, etcd prefix and resources. */
  name: string;
  format?: ConfigFormat;
  platform?: Platform;
  nodes: NodeSpec[];
  ssh: SshSpec;
  network?: NetworkSpec;
  etcd?: EtcdSpec;
  agent?: AgentSpec;
  units?: PreloadUnit[];
  snippets?: Snippet[];
  aws?: AwsSpec;
  /** Directory of Handlebars templates that override the built-in ones (relative to the spec file). */
  templates?: string;
}

/** A spec with every default filled in and every cross-reference checked. */
export interface ResolvedNode {
  name: string;
  role: NodeRole;
  metadata: Record<string, string>;
  address: string;
  /** Stable MACs, derived from cluster and node names: the cluster L2 NIC and the primary (uplink) NIC. */
  clusterMac: string;
  primaryMac: string;
  cpus: number;
  memoryMiB: number;
  etcdMember: boolean;
  /**
   * Set only by `flotilla replace` for a node that takes a removed member's place in a running
   * cluster: its etcd joins that cluster (initial-cluster-state `existing`) instead of
   * bootstrapping a new one. Absent for new clusters, whose rendering does not change.
   */
  etcdJoin?: EtcdJoin;
}

/** The membership a joining etcd member starts with: every current member, itself included (as `etcdctl member add` reports it). */
export interface EtcdJoin {
  state: 'existing';
  members: Array<{ name: string; peerUrl: string }>;
}

export interface ResolvedSpec {
  name: string;
  format: ConfigFormat;
  platform: Platform;
  nodes: ResolvedNode[];
  ssh: { user: string; authorizedKeys: string[] };
  network: { cidr: string; prefixLength: number };
  etcd: {
    members: string[];
    clientPort: number;
    peerPort: number;
    tls: boolean;
    heartbeatIntervalMs: number;
    electionTimeoutMs: number;
  };
  agent: { ttlSeconds: number; reconcileIntervalMs: number; runner: RunnerKind; keyPrefix: string };
  units: Array<{ name: string; contents: string; state: 'inactive' | 'loaded' | 'launched' }>;
  /** `source`: the file named, or `snippets[i].contents`; `field`: the spec field it came from (`snippets[i].file` or `.contents`). */
  snippets: Array<{ format: ConfigFormat; contents: string; source: string; nodes: string[] | undefined; field?: string }>;
  aws: { region: string; largeConfigUrl: string | undefined };
  /** Absolute directory of user templates, if any. */
  templatesDir: string | undefined;
  /** Directory that relative paths in the spec are resolved against. */
  baseDir: string;
}

export const DEFAULTS = {
  sshUser: 'core',
  cidr: '10.99.0.0/24',
  clientPort: 2379,
  peerPort: 2380,
  heartbeatIntervalMs: 250,
  electionTimeoutMs: 2500,
  /** Short enough that failover lands within ~5 s (see docs/scheduling.md). */
  agentTtlSeconds: 4,
  reconcileIntervalMs: 2000,
  cpus: 1,
  memoryMiB: 1024,
  region: 'us-east-1',
} as const;
