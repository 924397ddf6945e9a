/**
 * The cluster store: the only code that knows the layout of `<state>/clusters/<name>/`.
 *
 *   cluster.json          the record: platform, nodes, ports, pinned host keys, timeline
 *   spec.json             the exact spec the nodes were rendered from (TCG raises and format included)
 *   secrets.json          host keys and tokens (0600), reused when a node is rendered again
 *   pki.json              the cluster's etcd CA and certificates when TLS is on (0600)
 *   pki/                  the CA and client certificate as files, for tools on the host (verify)
 *   ssh/id_ed25519{,.pub} the client key Flotilla generated (authorized on every node)
 *   ssh/known_hosts       the pinned host keys, for OpenSSH (`flotilla ssh`)
 *   <node>/               the node's VM files (the platform's; see nodeDir)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ConfigFormat, ResolvedSpec } from '../config/spec';
import { FlotillaError } from '../errors';
import { knownHostsText } from '../ssh/openssh';
import { generateKeyPair } from '../ssh/keys';
import type { SshTarget } from '../ssh/transport';
import { writeFileAtomic } from '../util/fs';
import { clustersDir } from './state';

/** The phases of bringing a cluster up, in order; a record's timeline is measured in them. */
export const PHASES = ['image', 'render', 'launch', 'kernel', 'ssh', 'first-boot', 'secrets', 'etcd', 'agents'] as const;
export type Phase = (typeof PHASES)[number];

export interface NodeRecord {
  name: string;
  address: string;
  role: string;
  etcdMember: boolean;
  metadata: Record<string, string>;
  sshPort: number;
  hostPublicKey: string;
  /** QEMU's pidfile: Flotilla's (local), or libvirt's for the domain. */
  pidFile: string;
  /** libvirt platform: the node's domain (its QEMU is libvirt's child, not ours). */
  domain?: string;
  consoleLog: string;
  /** From the registry once the agent registered. */
  machineId?: string;
}

/** How nodes start: restored from a snapshot template of the image, or booted from the kernel. */
export const BOOT_MODES = ['snapshot', 'fresh'] as const;
export type BootMode = (typeof BOOT_MODES)[number];

export interface BootRecord {
  mode: BootMode;
  /** The template keys the nodes were cloned from (snapshot). */
  templates?: string[];
  /** Why snapshot boot was asked for but the nodes booted fresh. */
  fallback?: string;
}

export interface ClusterRecord {
  version: 1;
  name: string;
  platform: 'local' | 'libvirt';
  format: ConfigFormat;
  /** Namespace the SSH forwards live in (local); absent: this host's 127.0.0.1 (libvirt). */
  netns?: string;
  createdAt: string;
  user: string;
  /** Client key Flotilla generated for this cluster (authorized on every node). */
  sshKeyFile: string;
  knownHostsFile: string;
  tls: boolean;
  keyPrefix: string;
  clientPort: number;
  /** Cluster-network endpoints (reachable from the nodes, or through a tunnel). */
  etcdEndpoints: string[];
  /** The accelerator the VMs run under (absent in records written before it was kept). */
  accelerator?: 'kvm' | 'tcg';
  /** How the nodes started: restored from a snapshot template, or booted from the kernel (absent: fresh, older records). */
  boot?: BootRecord;
  nodes: NodeRecord[];
  /** Seconds after each node's launch at which it reached each milestone. */
  timeline: Record<string, Partial<Record<Phase, number>>>;
  phases: Array<{ phase: Phase; seconds: number }>;
  /** QEMU CPU-seconds per node when the cluster was ready. */
  cpuSeconds: Record<string, number>;
}

/** The cluster's directory. */
export function clusterDir(name: string): string {
  return path.join(clustersDir(), name);
}

/** A node's own directory (its VM's files). */
export function nodeDir(cluster: string, node: string): string {
  return path.join(clusterDir(cluster), node);
}

/** Every file of the cluster's own (not its nodes'). */
export function clusterFiles(name: string): { dir: string; record: string; spec: string; secrets: string; pki: string; hostPki: string; key: string; knownHosts: string } {
  const dir = clusterDir(name);
  return {
    dir,
    record: path.join(dir, 'cluster.json'),
    spec: path.join(dir, 'spec.json'),
    secrets: path.join(dir, 'secrets.json'),
    pki: path.join(dir, 'pki.json'),
    hostPki: path.join(dir, 'pki'),
    key: path.join(dir, 'ssh', 'id_ed25519'),
    knownHosts: path.join(dir, 'ssh', 'known_hosts'),
  };
}

function readJson<T>(file: string, what: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FlotillaError('invalid-input', `${file}: unreadable ${what}: ${(err as Error).message}`);
  }
}

export function readRecord(name: string): ClusterRecord | undefined {
  return readJson<ClusterRecord>(clusterFiles(name).record, 'cluster record');
}

/** Writes the record (with whatever else a caller keeps in it, e.g. replacement history). */
export function writeRecord(record: ClusterRecord): void {
  const f = clusterFiles(record.name);
  fs.mkdirSync(f.dir, { recursive: true, mode: 0o700 });
  writeFileAtomic(f.record, `${JSON.stringify(record, null, 2)}\n`, 0o644);
}

/** The spec `up` (or the last replacement) rendered the cluster's nodes from, if it was saved. */
export function readSavedSpec(name: string): ResolvedSpec | undefined {
  return readJson<ResolvedSpec>(clusterFiles(name).spec, 'saved spec');
}

/** Saves the exact spec the nodes get (0600: snippets may hold secrets). */
export function writeSavedSpec(name: string, spec: ResolvedSpec): void {
  writeFileAtomic(clusterFiles(name).spec, `${JSON.stringify(spec, null, 2)}\n`, 0o600);
}

/** Names of the clusters with a record. */
export function listClusters(): string[] {
  const dir = clustersDir();
  try {
    return fs.readdirSync(dir).filter((n) => fs.existsSync(path.join(dir, n, 'cluster.json'))).sort();
  } catch {
    return [];
  }
}

/** `--name` default: the one local cluster, if there is exactly one. */
export function resolveClusterName(name: string | undefined): string {
  if (name) return name;
  const all = listClusters();
  if (all.length === 1) return all[0]!;
  throw new FlotillaError('usage', all.length === 0 ? 'no local cluster; run flotilla up' : `several local clusters (${all.join(', ')}); pass --name`);
}

/** The cluster's client key pair, generated on first use. */
export function ensureClientKey(name: string): { privateKey: string; publicKey: string; file: string } {
  const file = clusterFiles(name).key;
  if (!fs.existsSync(file)) {
    const k = generateKeyPair('flotilla-cluster-key');
    writeFileAtomic(file, k.privateKey, 0o600);
    writeFileAtomic(`${file}.pub`, `${k.publicKey}\n`, 0o644);
  }
  return { privateKey: fs.readFileSync(file, 'utf8'), publicKey: fs.readFileSync(`${file}.pub`, 'utf8').trim(), file };
}

/** The client key's public half, as authorized on every node of the cluster. */
export function clientPublicKey(record: Pick<ClusterRecord, 'sshKeyFile'>): string {
  return fs.readFileSync(`${record.sshKeyFile}.pub`, 'utf8').trim();
}

/** Writes ssh/known_hosts for OpenSSH: every node's pinned key at its forward. */
export function writeKnownHosts(record: ClusterRecord): void {
  writeFileAtomic(record.knownHostsFile, knownHostsText(record.nodes.map((n) => ({ host: '127.0.0.1', port: n.sshPort, hostKey: n.hostPublicKey }))), 0o644);
}

/** How to reach a node over SSH: its forward on 127.0.0.1 (in the cluster's namespace, if any), its pinned key, the cluster's client key. */
export function nodeSshTarget(record: ClusterRecord, node: NodeRecord, privateKey: string | Buffer = fs.readFileSync(record.sshKeyFile)): SshTarget {
  return {
    node: node.name,
    host: '127.0.0.1',
    port: node.sshPort,
    user: record.user,
    hostKey: node.hostPublicKey,
    privateKey,
    privateKeyFile: record.sshKeyFile,
    ...(record.netns ? { netns: record.netns } : {}),
  };
}
