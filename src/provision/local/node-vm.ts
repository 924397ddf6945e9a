/**
 * One node's VM on the local platform, the same for `up` and `replace`: its overlay, first-boot
 * media and QEMU description, then its start — a cold boot from the kernel (`--boot fresh`), or a
 * restore of the template for its shape (`--boot snapshot`), after which the image's clone-point
 * gives the VM the node's own identity and first-boot config (docs/local.md).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import type { RenderedNode } from '../../config/render';
import type { ResolvedSpec } from '../../config/spec';
import { nodeDir, type BootMode, type BootRecord } from '../../cluster/store';
import { sleep } from '../../util/async';
import type { ImageInfo, ProgressFn } from '../image';
import { CLONE_FW_CFG } from '../image/recipe';
import { clusterMulticast, type Accelerator, type QemuNodeDesc } from './qemu-args';
import { createOverlay, launchNode, stopNode, writeCloneFirstBoot, writeFirstBoot, type LaunchedNode } from './qemu';
import { qmpCommand } from './qmp';
import { ensureTemplate, snapshotUnsupported, templateKey, templateMachine, TEMPLATE_MACS, type TemplateInfo, type TemplateShape } from './template';

export const NODE_DESC_FILE = 'qemu.json';

/** Files of a node that belong to one VM's life (qemu.log is kept: the node's history). */
export const PER_VM_FILES = ['disk.qcow2', 'seed.iso', 'seed', 'clone.conf', 'config.ign', 'console.log', 'qemu.pid', 'qmp.sock', 'rendered.user-data', 'rendered.ign', 'rendered.network-config'];

export interface NodeVmSpec {
  cluster: string;
  node: Pick<ResolvedSpec['nodes'][number], 'name' | 'cpus' | 'memoryMiB' | 'primaryMac' | 'clusterMac'>;
  sshPort: number;
  rendered: RenderedNode;
  image: ImageInfo;
  accel: Accelerator;
  /** vCPUs per VM; default: the node's `cpus`, at most 2. */
  cpus?: number;
  /** Memory per VM; default: the node's `memoryMiB`. */
  memoryMiB?: number;
  /** Extra kernel command-line words. */
  extraCmdline?: string[];
}

/** The VM a node runs in: what its template (if any) is keyed by. */
export function nodeShape(s: NodeVmSpec): TemplateShape {
  return {
    accel: s.accel,
    cpus: s.cpus ?? Math.min(2, s.node.cpus),
    memoryMiB: s.memoryMiB ?? s.node.memoryMiB,
    // Ignition nodes: cloud-init must not run (it would find no seed, fall back to its None
    // datasource and replace the host key Ignition wrote).
    cmdline: [s.image.cmdline, ...(s.rendered.format === 'ignition' ? ['cloud-init=disabled'] : []), ...(s.extraCmdline ?? [])].join(' '),
  };
}

function shapeId(shape: TemplateShape): string {
  return templateKey('', shape, '');
}

/** What a clone's clone-point reads from fw_cfg (opt/flotilla/clone): its MACs, machine ID and an RNG seed. */
export function cloneData(node: NodeVmSpec['node']): string {
  return [
    `link ${TEMPLATE_MACS.primary} ${node.primaryMac}`,
    `link ${TEMPLATE_MACS.cluster} ${node.clusterMac}`,
    `machine-id ${randomBytes(16).toString('hex')}`,
    `seed ${randomBytes(32).toString('hex')}`,
    '',
  ].join('\n');
}

export interface BootPlan {
  record: BootRecord;
  /** The template for each node shape (snapshot boot). */
  templateFor(s: NodeVmSpec): TemplateInfo | undefined;
}

/**
 * Snapshot boot when asked for and possible: every node shape gets its template (built now if
 * not cached). A template that cannot be made turns the whole launch into a fresh boot, and
 * `fallback` says why.
 */
export async function planBoot(mode: BootMode, nodes: NodeVmSpec[], progress: ProgressFn = () => undefined): Promise<BootPlan> {
  const fresh = (fallback?: string): BootPlan => ({ record: { mode: 'fresh', ...(fallback ? { fallback } : {}) }, templateFor: () => undefined });
  if (mode === 'fresh' || nodes.length === 0) return fresh();
  const why = await snapshotUnsupported();
  if (why) return fresh(why);
  const templates = new Map<string, TemplateInfo>();
  for (const s of nodes) {
    const shape = nodeShape(s);
    const id = shapeId(shape);
    if (templates.has(id)) continue;
    try {
      templates.set(id, await ensureTemplate(s.image, shape, progress));
    } catch (err) {
      return fresh(`no snapshot template for ${shape.cpus} vCPU / ${shape.memoryMiB} MiB: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return {
    record: { mode: 'snapshot', templates: [...new Set([...templates.values()].map((t) => t.key.slice(0, 16)))] },
    templateFor: (s) => templates.get(shapeId(nodeShape(s))),
  };
}

/** Creates the node's disk and first-boot media and returns its QEMU description (nothing started). */
export async function prepareNodeVm(s: NodeVmSpec, template: TemplateInfo | undefined): Promise<QemuNodeDesc> {
  const ndir = nodeDir(s.cluster, s.node.name);
  fs.mkdirSync(ndir, { recursive: true, mode: 0o700 });
  const disk = path.join(ndir, 'disk.qcow2');
  const shape = nodeShape(s);
  const network: QemuNodeDesc['network'] = { primaryMac: s.node.primaryMac, sshPort: s.sshPort, cluster: { mac: s.node.clusterMac, ...clusterMulticast(s.cluster) } };
  let desc: QemuNodeDesc;
  if (!template) {
    await createOverlay(s.image.disk, disk);
    desc = {
      name: `${s.cluster}-${s.node.name}`,
      accel: shape.accel,
      cpus: shape.cpus,
      memoryMiB: shape.memoryMiB,
      kernel: s.image.kernel,
      initrd: s.image.initrd,
      cmdline: shape.cmdline,
      disk,
      firstBoot: await writeFirstBoot(ndir, s.rendered),
      network,
      consoleLog: path.join(ndir, 'console.log'),
      pidFile: path.join(ndir, 'qemu.pid'),
      qmpSocket: path.join(ndir, 'qmp.sock'),
    };
  } else {
    // The overlay continues the template's disk as it was at the save: what the restored RAM expects.
    await createOverlay(template.disk, disk);
    const cloneFile = path.join(ndir, 'clone.conf');
    fs.writeFileSync(cloneFile, cloneData(s.node), { mode: 0o600 });
    desc = {
      ...templateMachine(s.image, template.shape, { dir: ndir, disk }),
      name: `${s.cluster}-${s.node.name}`,
      firstBoot: await writeCloneFirstBoot(ndir, s.rendered),
      network,
      fwCfg: [{ name: CLONE_FW_CFG, file: cloneFile }],
      vmgenid: randomUUID(),
      incoming: template.state,
    };
  }
  fs.rmSync(desc.consoleLog, { force: true });
  // Kept so that a node powered off (chaos) can be started again: a cold boot of the same disk
  // and devices (a clone's clone-point then only hands over the same seed again).
  const { incoming: _restore, ...relaunch } = desc;
  fs.writeFileSync(path.join(ndir, NODE_DESC_FILE), `${JSON.stringify(relaunch, null, 2)}\n`, { mode: 0o600 });
  return desc;
}

/** Starts the node's QEMU inside `netns`; a clone is restored and resumed before this returns. */
export async function startNodeVm(desc: QemuNodeDesc, netns: string): Promise<LaunchedNode> {
  const logFile = path.join(path.dirname(desc.pidFile), 'qemu.log');
  const vm = await launchNode(desc, { netns, logFile });
  if (desc.incoming !== undefined) await resumeClone(desc, vm, logFile);
  return vm;
}

/** Waits until QEMU has loaded the template's state, then lets the clone run (it was saved stopped). */
async function resumeClone(desc: QemuNodeDesc, vm: LaunchedNode, logFile: string, timeoutMs = 120_000): Promise<void> {
  let exited = false;
  void vm.exited.then(() => (exited = true));
  const deadline = Date.now() + timeoutMs;
  const qmp = desc.qmpSocket!;
  for (;;) {
    if (exited) {
      const tail = fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-6).join('\n');
      throw new FlotillaError('external', `QEMU for ${desc.name} could not restore the snapshot template ${desc.incoming}; ${logFile}:\n${tail}`);
    }
    const st = (await qmpCommand(qmp, 'query-status', undefined, 5000).catch(() => undefined)) as { status?: string } | undefined;
    if (st?.status === 'running') return;
    if (st?.status !== undefined && st.status !== 'inmigrate') {
      await qmpCommand(qmp, 'cont');
      return;
    }
    if (Date.now() > deadline) {
      await stopNode(desc.pidFile, { graceMs: 1000 });
      throw new FlotillaError('timeout', `QEMU for ${desc.name} did not finish restoring ${desc.incoming} within ${timeoutMs / 1000} s`);
    }
    await sleep(20);
  }
}
