/**
 * A local cluster of QEMU nodes from rendered first-boot configs: one network namespace per
 * cluster (flotilla-<name>) holding every QEMU process, so SSH forwards and the cluster's
 * multicast L2 never touch the root namespace. Per node, under <state>/clusters/<name>/<node>/:
 * disk.qcow2 (overlay), seed.iso or config.ign (a snapshot clone: seed/ and clone.conf),
 * console.log, qemu.log, qemu.pid, qemu.json (how to start it again). One node's VM: node-vm.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import type { RenderedNode } from '../../config/render';
import type { ResolvedSpec } from '../../config/spec';
import type { ImageInfo } from '../image';
import { ConsoleWatch, readConsole, type ConsoleMarker } from '../console';
import { clusterNamespace, type Accelerator, type QemuNodeDesc } from './qemu-args';
import { cpuSeconds, createNamespace, deleteNamespace, launchNode, namespaceExists, runningPid, stopNode, type LaunchedNode } from './qemu';
import { clusterDir, nodeDir, type BootMode, type BootRecord } from '../../cluster/store';
import type { ProgressFn } from '../image';
import { NODE_DESC_FILE, planBoot, prepareNodeVm, startNodeVm, type NodeVmSpec } from './node-vm';
import { waitForSsh, type SshTarget } from '../../ssh';

/** Guest SSH is forwarded from 127.0.0.1:(SSH_PORT_BASE + node index) inside the cluster's namespace. */
export const SSH_PORT_BASE = 2201;

export interface LocalNode {
  name: string;
  dir: string;
  sshPort: number;
  /** Cluster L2 address. */
  address: string;
  hostPublicKey: string;
  pid: number;
  launchedAt: number;
  pidFile: string;
  consoleLog: string;
  desc: QemuNodeDesc;
  exited: Promise<number | string>;
}

export interface LocalCluster {
  name: string;
  netns: string;
  dir: string;
  nodes: LocalNode[];
  boot: BootRecord;
}

export interface StartClusterOptions {
  spec: ResolvedSpec;
  rendered: RenderedNode[];
  image: ImageInfo;
  accel: Accelerator;
  /** vCPUs per VM; default: the node's `cpus`, at most 2. */
  cpus?: number;
  /** Memory per VM; default: the node's `memoryMiB`. */
  memoryMiB?: number;
  /** Extra kernel command-line words. */
  extraCmdline?: string[];
  /** Restore nodes from a snapshot template (default) or boot each from the kernel. */
  boot?: BootMode;
  /** Template builds report here. */
  progress?: ProgressFn;
}

/** Creates the namespace, overlays and first-boot media, and starts every node's QEMU. */
export async function startCluster(opts: StartClusterOptions): Promise<LocalCluster> {
  const { spec, image } = opts;
  const netns = clusterNamespace(spec.name);
  const dir = clusterDir(spec.name);
  const running = opts.rendered.filter((r) => runningPid(path.join(dir, r.node, 'qemu.pid')) !== undefined);
  if (running.length > 0) throw new FlotillaError('conflict', `cluster ${spec.name}: nodes already running: ${running.map((r) => r.node).join(', ')}`);
  const vms: NodeVmSpec[] = opts.rendered.map((r) => {
    const idx = spec.nodes.findIndex((n) => n.name === r.node);
    const n = spec.nodes[idx];
    if (!n) throw new FlotillaError('not-found', `rendered node ${r.node} is not in cluster ${spec.name}`);
    return {
      cluster: spec.name,
      node: n,
      sshPort: SSH_PORT_BASE + idx,
      rendered: r,
      image,
      accel: opts.accel,
      ...(opts.cpus !== undefined ? { cpus: opts.cpus } : {}),
      ...(opts.memoryMiB !== undefined ? { memoryMiB: opts.memoryMiB } : {}),
      ...(opts.extraCmdline ? { extraCmdline: opts.extraCmdline } : {}),
    };
  });
  const plan = await planBoot(opts.boot ?? 'snapshot', vms, opts.progress);
  await createNamespace(netns);
  const cluster: LocalCluster = { name: spec.name, netns, dir, nodes: [], boot: plan.record };
  try {
    const prepared: Array<{ desc: QemuNodeDesc; node: Omit<LocalNode, 'pid' | 'launchedAt' | 'exited' | 'desc'> }> = [];
    for (const v of vms) {
      const desc = await prepareNodeVm(v, plan.templateFor(v));
      prepared.push({ desc, node: { name: v.node.name, dir: path.dirname(desc.pidFile), sshPort: v.sshPort, address: spec.nodes.find((n) => n.name === v.node.name)!.address, hostPublicKey: v.rendered.hostPublicKey, pidFile: desc.pidFile, consoleLog: desc.consoleLog } });
    }
    // Started last, together, so that the nodes' clocks start together.
    const launched = await Promise.all(prepared.map((p) => startNodeVm(p.desc, netns)));
    prepared.forEach((p, i) => cluster.nodes.push({ ...p.node, desc: p.desc, pid: launched[i]!.pid, launchedAt: launched[i]!.launchedAt, exited: launched[i]!.exited }));
    return cluster;
  } catch (err) {
    await destroyCluster(spec.name).catch(() => undefined);
    throw err;
  }
}

/** The QEMU description a node was launched with (written by startCluster), if any. */
export function readNodeDesc(cluster: string, node: string): QemuNodeDesc | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(nodeDir(cluster, node), NODE_DESC_FILE), 'utf8')) as QemuNodeDesc;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FlotillaError('invalid-input', `cluster ${cluster} node ${node}: unreadable ${NODE_DESC_FILE}: ${(err as Error).message}`);
  }
}

/**
 * Starts a stopped node again with the disk and arguments it was first launched with (its
 * overlay keeps its state: machine ID, etcd data), inside the cluster's namespace.
 */
export async function relaunchNode(cluster: string, node: string): Promise<LaunchedNode> {
  const desc = readNodeDesc(cluster, node);
  if (!desc) throw new FlotillaError('not-found', `cluster ${cluster} node ${node}: no ${NODE_DESC_FILE} (launched by an older flotilla); cannot relaunch it`);
  if (runningPid(desc.pidFile) !== undefined) throw new FlotillaError('conflict', `cluster ${cluster} node ${node} is already running`);
  const netns = clusterNamespace(cluster);
  if (!namespaceExists(netns)) throw new FlotillaError('not-found', `cluster ${cluster}: network namespace ${netns} is gone`);
  return launchNode(desc, { netns, logFile: path.join(path.dirname(desc.pidFile), 'qemu.log') });
}

/** Stops every node of the cluster (by pidfile), deletes the namespace and the runtime files. */
export async function destroyCluster(name: string, opts: { keepFiles?: boolean } = {}): Promise<string[]> {
  const dir = clusterDir(name);
  const stopped: string[] = [];
  let entries: string[] = [];
  try {
    // Node directories only: the cluster directory also holds its record, keys and secrets.
    entries = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory() && e.name !== 'ssh').map((e) => e.name);
  } catch {
    /* nothing on disk */
  }
  await Promise.all(
    entries.map(async (e) => {
      const pidFile = path.join(dir, e, 'qemu.pid');
      if (await stopNode(pidFile, { graceMs: 3000 })) stopped.push(e);
    }),
  );
  await deleteNamespace(clusterNamespace(name));
  if (!opts.keepFiles) fs.rmSync(dir, { recursive: true, force: true });
  return stopped;
}

/** Who logs in to a node, with which key. */
export interface LoginKey {
  user: string;
  privateKey: string | Buffer;
}

/** How to reach a node of a started cluster over SSH (its forward in the cluster's namespace, its pinned key). */
export function localNodeTarget(cluster: Pick<LocalCluster, 'netns'>, node: Pick<LocalNode, 'name' | 'sshPort' | 'hostPublicKey'>, login: LoginKey): SshTarget {
  return { node: node.name, host: '127.0.0.1', port: node.sshPort, user: login.user, hostKey: node.hostPublicKey, privateKey: login.privateKey, netns: cluster.netns };
}

/** Waits for one node's SSH (pinned host key, a real command) and returns seconds since its launch. */
export async function waitNodeSsh(
  cluster: LocalCluster,
  node: LocalNode,
  auth: LoginKey,
  timeoutMs: number,
  onAttempt?: (attempt: number, error: string) => void,
): Promise<number> {
  const watch = new ConsoleWatch(node.name, node.consoleLog, node.launchedAt);
  await waitForSsh(localNodeTarget(cluster, node, auth), node.launchedAt + timeoutMs, {
    // The image reports on its console when sshd listens and the uplink has its address.
    readyHint: () => watch.markers().ssh !== undefined,
    ...(onAttempt ? { onAttempt } : {}),
    // ... and when first boot failed (FirstBootFailedError: node, stage, console line).
    abort: () => watch.check() ?? (runningPid(node.pidFile) === undefined ? `QEMU for ${node.name} is not running (see ${node.consoleLog})` : undefined),
  });
  return (Date.now() - node.launchedAt) / 1000;
}

/**
 * The progress markers a node has written to its serial console so far, each with the guest's
 * uptime when it was written: `ssh` (sshd listens, uplink configured) and `first-boot` (cloud-init's
 * final stage or the Ignition unit finished). Failures: readConsole / ConsoleWatch (console.ts).
 */
export function consoleMarkers(consoleLog: string): Partial<Record<ConsoleMarker, number>> {
  return readConsole(consoleLog).markers;
}

export function nodeCpuSeconds(node: LocalNode): number | undefined {
  return cpuSeconds(node.pid);
}
