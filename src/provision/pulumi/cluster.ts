/**
 * `flotilla:index:Cluster`: a Flotilla cluster as one Pulumi component. The class is thin: the
 * cluster's spec, rendering and placement are the pure functions in plan.ts (shared with the
 * CLI), the platform children are in aws.ts and libvirt.ts, and the keys the stack must keep
 * (SSH host keys, etcd TLS) are dynamic resources whose private halves are secrets.
 *
 * Children, all named `<name>-...` with this component as parent:
 *   <name>-host-keys                 HostKeys (dynamic)
 *   <name>-pki                       ClusterPki (dynamic; when etcd TLS is on, the default)
 *   aws: <name>-aws (provider, with region), -vpc, -igw, -subnet, -rt, -rta, -nodes (SG),
 *        -ssh/-etcd-client/-etcd-peer (ingress), -egress, -key, -boot (bucket + public
 *        access block; for a stock AMI family or Ignition), -agent (the agent archive object;
 *        stock AMI families), per node <name>-<node> (instance; with the bucket also
 *        <name>-<node> role and instance profile, <name>-<node>-read role policy, and for
 *        Ignition <name>-<node>-ignition object)
 *   libvirt: per node <name>-<node> (LibvirtDomain, dynamic)
 *   <name>-<node>-secrets            NodeSecrets (dynamic; when sshPrivateKey is given)
 *   <name>-inventory                 LocalInventory (dynamic; when inventoryDir is given)
 */
import * as pulumi from '@pulumi/pulumi';
import { FlotillaError } from '../../errors';
import type { ClusterSpec, ConfigFormat, ResolvedSpec } from '../../config/spec';
import type { HostKeyPair } from '../../ssh/keys';
import { nodePkiFiles } from '../../cluster/pki';
import { buildAgentArtifacts } from './agent-archive';
import { createAwsNodes, type AwsClusterArgs } from './aws';
import { ClusterPki, nodePkiFilesFrom } from './cluster-pki';
import { PROJECT_ROOT } from './dynamic';
import { HostKeys } from './host-keys';
import { buildInventory, INVENTORY_FILES, type InventoryFile, type NodeEndpoint } from './inventory';
import { createLibvirtNodes, type LibvirtClusterArgs } from './libvirt';
import { LocalInventory, type LocalFile } from './local-inventory';
import { NodeSecrets } from './node-secrets';
import { checkStackKey, renderStack, resolveStackSpec, stackEtcdEndpoints, stackStructure, STACK_PLATFORMS, type PlacedNode, type StackPlatform, type StackRenderExtra, type StackSpecInput } from './plan';

export const CLUSTER_TYPE = 'flotilla:index:Cluster';

export interface ClusterArgs {
  /** Where the nodes run. Plain (not an Input): it decides which resources exist. */
  platform: StackPlatform;
  /** Cluster name, a DNS label (default: the spec's name, else the component's name). Plain. */
  clusterName?: string;
  /** Nodes node1..nodeN when no spec is given; the first 1, 3 or 5 are etcd members. Plain. */
  nodeCount?: number;
  /** A cluster spec YAML file (see docs/config.md); its platform is replaced by `platform`. Plain. */
  specFile?: string;
  /** Or a spec object. Plain. */
  spec?: ClusterSpec;
  /** Overrides the spec's format. Plain: Ignition on AWS adds S3 and IAM resources. */
  format?: ConfigFormat;
  /** Cluster network of a generated spec (default 10.99.0.0/24); on AWS also the VPC and subnet CIDR. Plain. */
  cidr?: string;
  /** OpenSSH public key allowed to log in as the spec's user (added to the spec's keys); on AWS also the key pair. */
  sshKey: pulumi.Input<string>;
  /**
   * The matching OpenSSH private key (pass it as a secret). When given, every node gets the
   * etcd TLS files after boot over SSH with its pinned host key (NodeSecrets); without it,
   * etcd and fleetd wait for them (docs/pulumi.md).
   */
  sshPrivateKey?: pulumi.Input<string>;
  /** How long secret delivery waits for a node's SSH (default 15 minutes). */
  sshTimeoutMs?: number;
  /**
   * Where the SSH private key is on this machine: the inventory names it. Without it, a given
   * `sshPrivateKey` is written into `inventoryDir` (0600) and named instead. Plain.
   */
  sshPrivateKeyFile?: string;
  /**
   * A directory on this machine for inventory.json and the files it names (etcd CA, client
   * certificate and key), written by a LocalInventory resource and removed on destroy. Plain.
   */
  inventoryDir?: string;
  /** Required when platform is aws. */
  aws?: AwsClusterArgs;
  /** Required when platform is libvirt. */
  libvirt?: LibvirtClusterArgs;
}

function fail(message: string, self: pulumi.Resource): never {
  throw new pulumi.ResourceError(message, self, true);
}

export class Cluster extends pulumi.ComponentResource {
  /** What `flotilla verify --inventory` reads (no secrets; files are named by path). */
  readonly inventory: pulumi.Output<InventoryFile>;
  /** inventory.json in `inventoryDir`, when one is given. */
  readonly inventoryFile: pulumi.Output<string | undefined>;
  /** Cluster address per node (etcd and agent traffic). */
  readonly addresses: pulumi.Output<Record<string, string>>;
  /** Where each node's SSH answers. */
  readonly sshEndpoints: pulumi.Output<Record<string, NodeEndpoint>>;
  /** The pinned SSH host public key per node. */
  readonly hostPublicKeys: pulumi.Output<Record<string, string>>;
  readonly etcdEndpoints: pulumi.Output<string[]>;
  /** The etcd CA certificate (PEM), when TLS is on. */
  readonly caCert: pulumi.Output<string | undefined>;
  /** The cluster's structure: nodes, roles, addresses (resolved when the component is declared). */
  readonly spec: ResolvedSpec;
  readonly hostKeys: HostKeys;
  readonly pki: ClusterPki | undefined;
  readonly nodeSecrets: NodeSecrets[] = [];

  constructor(name: string, args: ClusterArgs, opts: pulumi.ComponentResourceOptions = {}) {
    // Only the shape goes into the component's recorded inputs: never the keys.
    super(CLUSTER_TYPE, name, { platform: args.platform, format: args.format, nodeCount: args.nodeCount, specFile: args.specFile }, opts);
    if (!STACK_PLATFORMS.includes(args.platform)) fail(`platform must be one of ${STACK_PLATFORMS.join(', ')}, got ${JSON.stringify(args.platform)}`, this);
    if (args.sshKey === undefined || args.sshKey === null || args.sshKey === '') fail('sshKey is required: the OpenSSH public key that may log in to the nodes', this);

    const input: StackSpecInput = {
      platform: args.platform,
      ...(args.clusterName !== undefined ? { name: args.clusterName } : args.spec === undefined && args.specFile === undefined ? { name } : {}),
      ...(args.format !== undefined ? { format: args.format } : {}),
      ...(args.nodeCount !== undefined ? { nodeCount: args.nodeCount } : {}),
      ...(args.specFile !== undefined ? { specFile: args.specFile } : {}),
      ...(args.spec !== undefined ? { spec: args.spec } : {}),
      ...(args.cidr !== undefined ? { cidr: args.cidr } : {}),
    };
    let structure: ResolvedSpec;
    try {
      structure = stackStructure(input);
    } catch (err) {
      if (FlotillaError.is(err)) fail(err.message, this);
      throw err;
    }
    this.spec = structure;
    const cluster = structure.name;
    const nodes = structure.nodes.map((n) => n.name);
    const child = { parent: this };

    this.hostKeys = new HostKeys(`${name}-host-keys`, { cluster, nodes }, child);
    const members = structure.nodes.filter((n) => n.etcdMember).map((n) => ({ name: n.name, address: n.address }));
    this.pki = structure.etcd.tls ? new ClusterPki(`${name}-pki`, { cluster, members }, child) : undefined;

    const hostKeys = this.hostKeys;
    const docs = (extra: pulumi.Input<StackRenderExtra | undefined>): pulumi.Output<PlacedNode[]> =>
      pulumi.all([args.sshKey, hostKeys.publicKeys, hostKeys.privateKeys, extra]).apply(([key, pubs, privs, ex]) => {
        const extra = (ex as StackRenderExtra | undefined) ?? {};
        const spec = resolveStackSpec(input, [checkStackKey(key, 'sshKey')], extra);
        const keys: Record<string, HostKeyPair> = {};
        for (const n of spec.nodes) {
          const publicKey = pubs[n.name];
          const privateKey = privs[n.name];
          if (!publicKey || !privateKey) throw new FlotillaError('internal', `no host key for node ${n.name} in ${name}-host-keys`);
          keys[n.name] = { type: 'ed25519', publicKey, privateKey };
        }
        return renderStack(spec, keys, extra.joining ? { joining: extra.joining } : {});
      });

    let endpoints: pulumi.Output<Record<string, NodeEndpoint>>;
    let nodeResources: pulumi.Resource[];
    try {
      if (args.platform === 'aws') {
        if (!args.aws) fail('platform aws needs the aws arguments (at least adminCidr)', this);
        const r = createAwsNodes(this, name, structure, args.aws, args.sshKey, docs, () => buildAgentArtifacts(PROJECT_ROOT));
        endpoints = r.endpoints;
        nodeResources = r.instances;
      } else {
        if (!args.libvirt) fail('platform libvirt needs the libvirt arguments (image, accel)', this);
        const r = createLibvirtNodes(this, name, structure, args.libvirt, docs(undefined));
        endpoints = r.endpoints;
        nodeResources = r.domains;
      }
    } catch (err) {
      if (FlotillaError.is(err)) fail(err.message, this);
      throw err;
    }

    const pki = this.pki;
    if (args.sshPrivateKey !== undefined && pki) {
      structure.nodes.forEach((n, i) => {
        const files = pulumi.secret(
          pulumi.all([pki.caCert, pki.caKey, pki.clientCert, pki.clientKey, pki.memberCerts, pki.memberKeys]).apply(([caCert, caKey, clientCert, clientKey, memberCerts, memberKeys]) =>
            nodePkiFilesFrom({ caCert, caKey, clientCert, clientKey, memberCerts, memberKeys }, n.name, nodePkiFiles),
          ),
        );
        const ep = endpoints.apply((e) => e[n.name]!);
        this.nodeSecrets.push(
          new NodeSecrets(
            `${name}-${n.name}-secrets`,
            {
              node: n.name,
              host: ep.apply((e) => e.sshHost),
              port: ep.apply((e) => e.sshPort),
              user: structure.ssh.user,
              hostPublicKey: hostKeys.publicKeys.apply((k) => k[n.name]!),
              privateKey: pulumi.secret(args.sshPrivateKey!),
              files,
              timeoutMs: args.sshTimeoutMs ?? 15 * 60_000,
            },
            { parent: this, dependsOn: [nodeResources[i]!] },
          ),
        );
      });
    }

    this.sshEndpoints = endpoints;
    this.addresses = pulumi.output(Object.fromEntries(structure.nodes.map((n) => [n.name, n.address])));
    this.hostPublicKeys = hostKeys.publicKeys;
    this.etcdEndpoints = pulumi.output(stackEtcdEndpoints(structure));
    this.caCert = pki ? pki.caCert : pulumi.output(undefined);
    const sshKeyInDir = args.sshPrivateKeyFile === undefined && args.sshPrivateKey !== undefined && args.inventoryDir !== undefined;
    const invOpts = {
      ...(args.inventoryDir !== undefined ? { dir: args.inventoryDir } : {}),
      ...(args.sshPrivateKeyFile !== undefined ? { privateKeyFile: args.sshPrivateKeyFile } : {}),
      sshKeyInDir,
      ...(args.specFile !== undefined ? { specFile: args.specFile } : {}),
    };
    this.inventory = pulumi.all([endpoints, hostKeys.publicKeys]).apply(([eps, keys]) => buildInventory(structure, eps, keys, invOpts));
    if (args.inventoryDir !== undefined) {
      const files: pulumi.Output<LocalFile[]> = pulumi.secret(
        pulumi.all([pki?.caCert, pki?.clientCert, pki?.clientKey, args.sshPrivateKey]).apply(([ca, cert, key, sshKey]) => [
          ...(ca && cert && key
            ? [
                { name: INVENTORY_FILES.ca, contents: ca, mode: 0o644 },
                { name: INVENTORY_FILES.clientCert, contents: cert, mode: 0o644 },
                { name: INVENTORY_FILES.clientKey, contents: key, mode: 0o600 },
              ]
            : []),
          ...(sshKeyInDir && sshKey ? [{ name: INVENTORY_FILES.sshKey, contents: sshKey.endsWith('\n') ? sshKey : `${sshKey}\n`, mode: 0o600 }] : []),
        ]),
      );
      const local = new LocalInventory(`${name}-inventory`, { dir: args.inventoryDir, inventory: this.inventory as pulumi.Output<unknown> as pulumi.Output<Record<string, unknown>>, files }, { parent: this });
      this.inventoryFile = local.inventoryFile;
    } else {
      this.inventoryFile = pulumi.output(undefined);
    }
    this.registerOutputs({
      inventory: this.inventory,
      inventoryFile: this.inventoryFile,
      addresses: this.addresses,
      sshEndpoints: this.sshEndpoints,
      hostPublicKeys: this.hostPublicKeys,
      etcdEndpoints: this.etcdEndpoints,
      caCert: this.caCert,
    });
  }
}
