/**
 * The local platform's part of `flotilla replace`: stop one node's QEMU and delete its disk and
 * first-boot media, then boot a fresh VM for it — a new overlay on the chosen image, the newly
 * rendered first-boot config, the same SSH port, MACs and cluster L2 — inside the cluster's
 * existing network namespace. Everything else (etcd membership, drain, checks) is in
 * src/provision/replace.ts and does not depend on the platform.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import type { NodeMachinery } from '../replace';
import { nodeDir } from '../../cluster/store';
import { readNodeDesc } from './cluster';
import { getImage } from '../image';
import { clusterMulticast, clusterNamespace, type QemuNodeDesc } from './qemu-args';
import { createOverlay, launchNode, namespaceExists, stopNode, writeFirstBoot } from './qemu';

/** Files of a node that belong to one VM's life; qemu.log is kept (appended to) as the node's history. */
const PER_VM_FILES = ['disk.qcow2', 'seed.iso', 'config.ign', 'console.log', 'qemu.pid', 'qmp.sock', 'rendered.user-data', 'rendered.ign', 'rendered.network-config'];

export const localMachinery: NodeMachinery = {
  platform: 'local',

  currentImage(record, node) {
    const desc = readNodeDesc(record.name, node.name);
    return desc ? getImage(path.basename(path.dirname(desc.kernel))) : undefined;
  },

  async destroy(record, node) {
    const stopped = await stopNode(node.pidFile, { graceMs: 3000 });
    const dir = nodeDir(record.name, node.name);
    for (const f of PER_VM_FILES) fs.rmSync(path.join(dir, f), { force: true });
    return { stopped };
  },

  async launch({ record, node, spec, rendered, image, accel }) {
    const netns = record.netns ?? clusterNamespace(record.name);
    if (!namespaceExists(netns)) throw new FlotillaError('not-found', `cluster ${record.name}: network namespace ${netns} is gone; the other nodes cannot be running (run 'flotilla status --name ${record.name}')`);
    const n = spec.nodes.find((x) => x.name === node.name);
    if (!n) throw new FlotillaError('internal', `node ${node.name} is not in the spec`);
    const dir = nodeDir(record.name, node.name);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const disk = path.join(dir, 'disk.qcow2');
    await createOverlay(image.disk, disk);
    const firstBoot = await writeFirstBoot(dir, rendered);
    // What startCluster would give this node, with the address and ports the cluster knows it by.
    const desc: QemuNodeDesc = {
      name: `${record.name}-${n.name}`,
      accel,
      cpus: Math.min(2, n.cpus),
      memoryMiB: n.memoryMiB,
      kernel: image.kernel,
      initrd: image.initrd,
      cmdline: [image.cmdline, ...(rendered.format === 'ignition' ? ['cloud-init=disabled'] : [])].join(' '),
      disk,
      firstBoot,
      network: { primaryMac: n.primaryMac, sshPort: node.sshPort, cluster: { mac: n.clusterMac, ...clusterMulticast(record.name) } },
      consoleLog: node.consoleLog,
      pidFile: node.pidFile,
      qmpSocket: path.join(dir, 'qmp.sock'),
    };
    fs.writeFileSync(path.join(dir, 'qemu.json'), `${JSON.stringify(desc, null, 2)}\n`, { mode: 0o600 });
    writeRendered(dir, rendered);
    const l = await launchNode(desc, { netns, logFile: path.join(dir, 'qemu.log') });
    return { launchedAt: l.launchedAt, pidFile: desc.pidFile, consoleLog: desc.consoleLog };
  },
};

/** As `up` does: the rendered documents stay beside the node (0600: they hold its host key). */
function writeRendered(dir: string, r: { format: string; userData: string; networkConfig?: string }): void {
  fs.writeFileSync(path.join(dir, r.format === 'ignition' ? 'rendered.ign' : 'rendered.user-data'), r.userData, { mode: 0o600 });
  if (r.networkConfig) fs.writeFileSync(path.join(dir, 'rendered.network-config'), r.networkConfig, { mode: 0o600 });
}
