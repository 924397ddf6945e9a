/**
 * The stack program: reads the stack configuration — here and nowhere else — and declares one
 * `flotilla:index:Cluster`. index.ts (Pulumi.yaml's `main`) exports it as a function, which
 * Pulumi's Node.js runtime calls and whose result becomes the stack outputs; tests call it
 * under the mock runtime with stand-ins for the libvirt image and accelerator probe.
 */
import * as pulumi from '@pulumi/pulumi';
import type { NodeImage } from '../libvirt/driver';
import { Cluster, type ClusterArgs } from './cluster';
import { readStackConfig } from './config';
import { PROJECT_ROOT } from './dynamic';

/** Generated clusters get this many nodes unless flotilla:nodeCount says otherwise. */
export const DEFAULT_NODE_COUNT = 3;

export interface ProgramDeps {
  /** The libvirt node image: the cached one with this id, or the current recipe's (built if missing). */
  resolveImage(imageId: string | undefined): Promise<NodeImage>;
  /** 'kvm' if KVM works for this image here, else 'tcg'. */
  probeAccel(image: NodeImage): Promise<'kvm' | 'tcg'>;
}

const realDeps: ProgramDeps = {
  async resolveImage(imageId) {
    const { ensureImage, getImage } = await import('../image');
    const img = imageId !== undefined ? getImage(imageId) : await ensureImage({}, (p) => void pulumi.log.info(`node image: ${p.step} ${p.phase}${p.seconds !== undefined ? ` ${p.seconds}s` : ''}`));
    if (!img) throw new pulumi.RunError(`flotilla:image: no cached node image ${imageId}; unset it to use (and build) the current one`);
    const { nodeImageOf } = await import('../libvirt/driver');
    return nodeImageOf(img);
  },
  async probeAccel(image) {
    const { probeAccelerator } = await import('../local/accel');
    const probe = await probeAccelerator(image);
    pulumi.log.info(`accelerator: ${probe.accel} (${probe.reason})`);
    return probe.accel;
  },
};

export interface StackOutputs {
  inventory: Cluster['inventory'];
  addresses: Cluster['addresses'];
  sshEndpoints: Cluster['sshEndpoints'];
  hostPublicKeys: Cluster['hostPublicKeys'];
  etcdEndpoints: Cluster['etcdEndpoints'];
  caCert: Cluster['caCert'];
  inventoryFile: Cluster['inventoryFile'];
}

export async function program(deps: ProgramDeps = realDeps): Promise<StackOutputs> {
  const config = readStackConfig(undefined, PROJECT_ROOT);
  const args: ClusterArgs = {
    platform: config.platform,
    sshKey: config.sshKey,
    ...(config.clusterName !== undefined ? { clusterName: config.clusterName } : {}),
    ...(config.specFile !== undefined ? { specFile: config.specFile } : { nodeCount: config.nodeCount ?? DEFAULT_NODE_COUNT }),
    ...(config.format !== undefined ? { format: config.format } : {}),
    ...(config.cidr !== undefined ? { cidr: config.cidr } : {}),
    ...(config.sshPrivateKey !== undefined ? { sshPrivateKey: config.sshPrivateKey } : {}),
    ...(config.sshPrivateKeyFile !== undefined ? { sshPrivateKeyFile: config.sshPrivateKeyFile } : {}),
    ...(config.inventoryDir !== undefined ? { inventoryDir: config.inventoryDir } : {}),
  };
  if (config.aws) args.aws = { ...config.aws };
  if (config.libvirt) {
    const l = config.libvirt;
    const image = deps.resolveImage(l.imageId);
    args.libvirt = {
      image: pulumi.output(image),
      accel: l.accel === 'auto' ? pulumi.output(image.then((i) => deps.probeAccel(i))) : l.accel,
      ...(l.uri !== undefined ? { uri: l.uri } : {}),
      ...(l.sshPortBase !== undefined ? { sshPortBase: l.sshPortBase } : {}),
      ...(l.cpus !== undefined ? { cpus: l.cpus } : {}),
      ...(l.memoryMiB !== undefined ? { memoryMiB: l.memoryMiB } : {}),
    };
  }
  // The component's name prefixes every resource: the cluster name if set, else the stack's
  // name. A generated spec takes it as the cluster name too (a spec file has its own).
  const name = config.clusterName ?? pulumi.getStack();
  if (config.clusterName === undefined && config.specFile === undefined && !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) {
    throw new pulumi.RunError(`invalid stack configuration: 1 problem\n  flotilla:clusterName: is required because the stack name ${JSON.stringify(name)} is not a DNS label (lowercase letters, digits and "-")`);
  }
  const cluster = new Cluster(name, args);
  return {
    inventory: cluster.inventory,
    addresses: cluster.addresses,
    sshEndpoints: cluster.sshEndpoints,
    hostPublicKeys: cluster.hostPublicKeys,
    etcdEndpoints: cluster.etcdEndpoints,
    caCert: cluster.caCert,
    inventoryFile: cluster.inventoryFile,
  };
}

