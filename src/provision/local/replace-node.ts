/**
 * The local platform's part of `flotilla replace`: stop one node's QEMU and delete its disk and
 * first-boot media, then start a new VM for it (node-vm.ts: from the kernel, or restored from the
 * snapshot template) — a new overlay, the newly rendered first-boot config, the same SSH port, MACs and cluster L2 — inside the cluster's
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
import { clusterNamespace } from './qemu-args';
import { namespaceExists, stopNode } from './qemu';
import { PER_VM_FILES, planBoot, prepareNodeVm, startNodeVm, type NodeVmSpec } from './node-vm';

export const localMachinery: NodeMachinery = {
  platform: 'local',

  currentImage(record, node) {
    const desc = readNodeDesc(record.name, node.name);
    return desc ? getImage(path.basename(path.dirname(desc.kernel))) : undefined;
  },

  async destroy(record, node) {
    const stopped = await stopNode(node.pidFile, { graceMs: 3000 });
    const dir = nodeDir(record.name, node.name);
    for (const f of PER_VM_FILES) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
    return { stopped };
  },

  async launch({ record, node, spec, rendered, image, accel, boot, info }) {
    const netns = record.netns ?? clusterNamespace(record.name);
    if (!namespaceExists(netns)) throw new FlotillaError('not-found', `cluster ${record.name}: network namespace ${netns} is gone; the other nodes cannot be running (run 'flotilla status --name ${record.name}')`);
    const n = spec.nodes.find((x) => x.name === node.name);
    if (!n) throw new FlotillaError('internal', `node ${node.name} is not in the spec`);
    // What startCluster would give this node, with the SSH port the cluster knows it by.
    const vm: NodeVmSpec = { cluster: record.name, node: n, sshPort: node.sshPort, rendered, image, accel };
    const plan = await planBoot(boot ?? record.boot?.mode ?? 'fresh', [vm], (b) => info(`${b.step} ${b.phase}${b.detail ? `: ${b.detail}` : ''}`));
    if (plan.record.fallback) info(`snapshot boot not possible, booting fresh: ${plan.record.fallback}`);
    const desc = await prepareNodeVm(vm, plan.templateFor(vm));
    writeRendered(path.dirname(desc.pidFile), rendered);
    const l = await startNodeVm(desc, netns);
    return { launchedAt: l.launchedAt, pidFile: desc.pidFile, consoleLog: desc.consoleLog };
  },
};

/** As `up` does: the rendered documents stay beside the node (0600: they hold its host key). */
function writeRendered(dir: string, r: { format: string; userData: string; networkConfig?: string }): void {
  fs.writeFileSync(path.join(dir, r.format === 'ignition' ? 'rendered.ign' : 'rendered.user-data'), r.userData, { mode: 0o600 });
  if (r.networkConfig) fs.writeFileSync(path.join(dir, 'rendered.network-config'), r.networkConfig, { mode: 0o600 });
}
