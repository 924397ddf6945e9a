/**
 * The libvirt half of the Cluster component: one LibvirtDomain (dynamic resource, Flotilla's own
 * driver) per node, booting Flotilla's node image from its rendered first-boot documents.
 * SSH is forwarded from 127.0.0.1:(sshPortBase + node index); the cluster L2 is the unicast
 * UDP star of src/provision/libvirt/domain-xml.ts. Etcd members ignore changes to their
 * first-boot documents and image (as on AWS); workers are replaced.
 */
import * as path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { FlotillaError } from '../../errors';
import type { ResolvedSpec } from '../../config/spec';
import { clusterLinks, defaultPorts } from '../libvirt/domain-xml';
import { firstBootDocs, type NodeImage } from '../libvirt/driver';
import { DEFAULT_URI } from '../libvirt/virsh';
import { stateDir as defaultStateDir } from '../../cluster/state';
import type { NodeEndpoint } from './inventory';
import { LibvirtDomain } from './libvirt-domain';
import type { PlacedNode } from './plan';

export interface LibvirtClusterArgs {
  /** The node image (from `ensureImage`: Flotilla's cached Debian image with the agent). */
  image: pulumi.Input<NodeImage>;
  /** 'kvm' when KVM really works here (`probeAccelerator`), else 'tcg'. */
  accel: pulumi.Input<'kvm' | 'tcg'>;
  /** libvirt connection (default qemu:///system). Plain: changing it replaces every node. */
  uri?: string;
  /** Flotilla's state directory (default FLOTILLA_STATE_DIR or /var/lib/flotilla). */
  stateDir?: string;
  /** First 127.0.0.1 port for SSH forwards (default derived from the cluster name, 40000-59999). */
  sshPortBase?: number;
  /** First UDP port of the cluster L2 links (default right after the SSH ports). */
  linkPortBase?: number;
  /** vCPUs per VM (default: the node's cpus, at most 2). */
  cpus?: pulumi.Input<number>;
  /** Memory per VM (default: the node's memoryMiB). */
  memoryMiB?: pulumi.Input<number>;
}

export interface LibvirtNodesResult {
  endpoints: pulumi.Output<Record<string, NodeEndpoint>>;
  domains: LibvirtDomain[];
}

export function libvirtPorts(spec: ResolvedSpec, args: Pick<LibvirtClusterArgs, 'sshPortBase' | 'linkPortBase'>): { sshPortBase: number; linkPortBase: number } {
  const d = defaultPorts(spec.name);
  const sshPortBase = args.sshPortBase ?? d.sshPortBase;
  const linkPortBase = args.linkPortBase ?? (args.sshPortBase !== undefined ? sshPortBase + spec.nodes.length : d.linkPortBase);
  for (const [what, lo, hi] of [
    ['sshPortBase', sshPortBase, sshPortBase + spec.nodes.length - 1],
    ['linkPortBase', linkPortBase, linkPortBase + 2 * spec.nodes.length],
  ] as const) {
    if (!Number.isInteger(lo) || lo < 1024 || hi > 65535) throw new FlotillaError('invalid-input', `libvirt ${what}: ports ${lo}-${hi} are not all in 1024-65535`);
  }
  return { sshPortBase, linkPortBase };
}

export function createLibvirtNodes(self: pulumi.ComponentResource, name: string, spec: ResolvedSpec, args: LibvirtClusterArgs, placed: pulumi.Output<PlacedNode[]>): LibvirtNodesResult {
  const { sshPortBase, linkPortBase } = libvirtPorts(spec, args);
  const links = clusterLinks(spec.nodes.length, linkPortBase);
  const state = path.resolve(args.stateDir ?? defaultStateDir());
  const domains: LibvirtDomain[] = [];
  const endpoints: Array<pulumi.Output<[string, NodeEndpoint]>> = [];
  spec.nodes.forEach((n, i) => {
    const firstBoot = pulumi.secret(
      placed.apply((p) => {
        const x = p[i];
        if (!x || x.rendered.node !== n.name) throw new FlotillaError('internal', `rendered documents out of order at ${n.name}`);
        return firstBootDocs(x.rendered);
      }),
    );
    const domain = new LibvirtDomain(
      `${name}-${n.name}`,
      {
        cluster: spec.name,
        node: n.name,
        uri: args.uri ?? DEFAULT_URI,
        stateDir: state,
        image: args.image,
        accel: args.accel,
        cpus: args.cpus ?? Math.min(2, n.cpus),
        memoryMiB: args.memoryMiB ?? n.memoryMiB,
        firstBoot,
        sshPort: sshPortBase + i,
        primaryMac: n.primaryMac,
        cluster0: { mac: n.clusterMac, ...links[i]! },
      },
      { parent: self, ...(n.etcdMember ? { ignoreChanges: ['firstBoot', 'image'] } : {}) },
    );
    domains.push(domain);
    // The port is fixed by the spec's node order; resolving through the domain's id ties the inventory to the domain existing.
    endpoints.push(domain.id.apply(() => [n.name, { sshHost: '127.0.0.1', sshPort: sshPortBase + i }] as [string, NodeEndpoint]));
  });
  return { endpoints: pulumi.all(endpoints).apply((e) => Object.fromEntries(e)), domains };
}
