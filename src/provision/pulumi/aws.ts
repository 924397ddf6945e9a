/**
 * The AWS half of the Cluster component: network (or an existing VPC and subnet), one security
 * group, a key pair, the AMI by lookup, optional Ignition objects in S3 with per-node IAM, and
 * one instance per node at the spec's cluster address.
 *
 * Security group `<name>-nodes`: SSH (22/tcp) only from the admin CIDR; etcd client (2379/tcp)
 * and peer (2380/tcp) only from members of the same group. fleetd listens on no port (it is an
 * etcd client), so nothing else is open. All egress is allowed (Ignition fetches from S3).
 *
 * A stock AMI family gets etcd and the agent at first boot (aws-bootstrap.ts): the agent
 * archive is one S3 object `<cluster>/flotilla-agent.tar.gz` in the cluster's private bucket,
 * which every node's role may read (and, with Ignition, its own config object, nothing else).
 *
 * User-data goes in `userDataBase64` always (gzip output is binary; one field, one encoding).
 * Etcd members ignore changes to user-data and AMI (replacing them together would lose quorum,
 * as Typhoon's controllers do) except the members named in `replaceMembers`, which are
 * replaced with the new user-data and join the running cluster; workers are replaced when their
 * user-data changes (`userDataReplaceOnChange`). See docs/pulumi.md for the rolling procedure.
 */
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { FlotillaError } from '../../errors';
import { ipv4ToInt, parseIPv4Cidr } from '../../config/net';
import type { ResolvedSpec } from '../../config/spec';
import type { AgentArtifacts } from './agent-archive';
import { setupSnippets, type NodeSetup, type SetupImages, type SetupSnippet } from './aws-bootstrap';
import type { NodeEndpoint } from './inventory';
import { agentObjectKey, ignitionObjectKey, type PlacedNode, type StackRenderExtra } from './plan';

/** AMI families Flotilla knows how to look up, with the owner accounts and name filters used. */
export const AMI_FAMILIES = {
  /** Flatcar Container Linux, stable channel (Kinvolk/Microsoft's account). Ignition; etcd and the agent in docker. */
  flatcar: { format: 'ignition', setup: 'docker', owners: ['075585003325'], filters: [{ name: 'name', values: ['Flatcar-stable-*-hvm'] }] },
  /** Fedora CoreOS, stable stream (the Fedora project's account). Ignition; etcd and the agent in podman. */
  'fedora-coreos': { format: 'ignition', setup: 'podman', owners: ['125523088429'], filters: [{ name: 'name', values: ['fedora-coreos-*-x86_64'] }, { name: 'description', values: ['Fedora CoreOS stable *'] }] },
  /** Debian 12 (bookworm), the Debian cloud team's account. cloud-init; etcd and Node.js from Debian's packages. */
  'debian-12': { format: 'cloud-config', setup: 'debian-packages', owners: ['136693071363'], filters: [{ name: 'name', values: ['debian-12-amd64-*'] }] },
} as const;
export type AmiFamily = keyof typeof AMI_FAMILIES;

/** How nodes from this image get etcd and the agent: an `ami-...` is taken to be a Flotilla node image. */
export function nodeSetupFor(family: AmiFamily | undefined): NodeSetup {
  return family === undefined ? 'preinstalled' : AMI_FAMILIES[family].setup;
}

/** Filters every lookup adds: 64-bit x86, HVM, EBS root. */
const COMMON_AMI_FILTERS = [
  { name: 'architecture', values: ['x86_64'] },
  { name: 'virtualization-type', values: ['hvm'] },
  { name: 'root-device-type', values: ['ebs'] },
];

export function amiLookupArgs(family: AmiFamily): aws.ec2.GetAmiArgs {
  const f = AMI_FAMILIES[family];
  return { owners: [...f.owners], mostRecent: true, filters: [...f.filters.map((x) => ({ name: x.name, values: [...x.values] })), ...COMMON_AMI_FILTERS] };
}

export interface AwsClusterArgs {
  /** AWS region; a provider `<name>-aws` is made for it. Default: the stack's aws:region / default provider. */
  region?: pulumi.Input<string>;
  /** EC2 instance type (default t3.small). */
  instanceType?: pulumi.Input<string>;
  /**
   * `ami-...` to use as is, or a family to look up: flatcar or fedora-coreos (Ignition),
   * debian-12 (cloud-config). Default: flatcar for Ignition, debian-12 for cloud-config.
   * Plain: it decides whether a lookup happens.
   */
  image?: string;
  /** The only CIDR SSH (22/tcp) is open to, e.g. your address as 203.0.113.7/32. */
  adminCidr: pulumi.Input<string>;
  /** An existing VPC and subnet (give both or neither); the subnet must contain the spec's node addresses. */
  vpcId?: pulumi.Input<string>;
  subnetId?: pulumi.Input<string>;
  availabilityZone?: pulumi.Input<string>;
  /** Root volume size (default 20 GiB, gp3, encrypted). */
  rootVolumeGiB?: pulumi.Input<number>;
  /** Extra tags on every taggable resource. */
  tags?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /**
   * etcd members to replace in this update (one at a time, after `etcdctl member remove` and
   * `member add`, docs/pulumi.md): they take changed user-data and AMI and join the running
   * cluster; every other member ignores such changes. Plain: it decides resource options.
   */
  replaceMembers?: string[];
  /** Container images for Flatcar / Fedora CoreOS (default CONTAINER_IMAGES, pinned tags). Plain. */
  containerImages?: Partial<SetupImages>;
  /**
   * The agent archive and fetcher (default: built from this checkout when a stock AMI family is
   * used). Not an Input: Outputs lift objects deeply and would turn the archive's Buffer into a
   * plain object.
   */
  agentArtifacts?: AgentArtifacts | Promise<AgentArtifacts>;
}

export interface AwsNodesResult {
  endpoints: pulumi.Output<Record<string, NodeEndpoint>>;
  instances: aws.ec2.Instance[];
  securityGroup: aws.ec2.SecurityGroup;
  bucket?: aws.s3.Bucket;
  setup: NodeSetup;
}

/** Why `cidr` cannot be the admin CIDR, or undefined: an IPv4 CIDR with its host bits zero, not the whole Internet. */
export function adminCidrProblem(cidr: string): string | undefined {
  const net = parseIPv4Cidr(cidr);
  if (!net) return `${JSON.stringify(cidr)} is not an IPv4 CIDR with its host bits zero (e.g. 203.0.113.7/32)`;
  if (net.prefixLength === 0) return `${JSON.stringify(cidr)} would open SSH to the whole Internet; give your own address, e.g. 203.0.113.7/32`;
  return undefined;
}

export function checkAdminCidr(cidr: string, where = 'adminCidr'): string {
  const problem = adminCidrProblem(cidr);
  if (problem) throw new FlotillaError('invalid-input', `${where}: ${problem}`, [{ path: where, message: problem }]);
  return cidr;
}

/** The members named in replaceMembers, checked against the spec. */
export function checkReplaceMembers(spec: ResolvedSpec, names: readonly string[]): string[] {
  const members = spec.nodes.filter((n) => n.etcdMember).map((n) => n.name);
  for (const n of names) {
    if (!members.includes(n)) {
      throw new FlotillaError('invalid-input', `replaceMembers: ${JSON.stringify(n)} is not an etcd member of cluster ${spec.name} (members: ${members.join(', ')})`, [{ path: 'replaceMembers', message: 'not an etcd member' }]);
    }
  }
  if (new Set(names).size !== names.length) throw new FlotillaError('invalid-input', 'replaceMembers: a member is named twice', [{ path: 'replaceMembers', message: 'duplicate' }]);
  // A cluster of N members survives floor((N-1)/2) missing ones; replacements happen in parallel.
  const tolerated = Math.floor((members.length - 1) / 2);
  if (names.length > tolerated) {
    throw new FlotillaError(
      'invalid-input',
      `replaceMembers: replacing ${names.length} of ${members.length} etcd members at once would lose quorum (at most ${tolerated}); replace them one at a time${members.length === 1 ? ' (a one-member cluster cannot: make a new stack)' : ''}`,
      [{ path: 'replaceMembers', message: 'would lose quorum' }],
    );
  }
  return [...names];
}

/** Every node address must be a usable address of the subnet (AWS reserves the first four and the last). */
export function checkAddressesInSubnet(spec: ResolvedSpec, subnetCidr: string): void {
  const net = parseIPv4Cidr(subnetCidr);
  if (!net) throw new FlotillaError('invalid-input', `subnet CIDR ${JSON.stringify(subnetCidr)} is not IPv4`);
  for (const n of spec.nodes) {
    const ip = ipv4ToInt(n.address)!;
    if ((ip & net.mask) >>> 0 !== net.network || ip < net.network + 4 || ip === net.broadcast) {
      throw new FlotillaError('invalid-input', `node ${n.name}: address ${n.address} is not a usable address of subnet ${subnetCidr} (set the spec's network.cidr to the subnet, or give addresses inside it)`);
    }
  }
}

/**
 * Creates the AWS resources for every node. `docs(extra)` renders and places every node's
 * user-data with the setup snippets and, with Ignition, the bucket prefix that oversized
 * configs are fetched from through a stub.
 */
export function createAwsNodes(
  self: pulumi.ComponentResource,
  name: string,
  spec: ResolvedSpec,
  args: AwsClusterArgs,
  sshKey: pulumi.Input<string>,
  docs: (extra: pulumi.Input<StackRenderExtra>) => pulumi.Output<PlacedNode[]>,
  defaultArtifacts: () => Promise<AgentArtifacts>,
): AwsNodesResult {
  if ((args.vpcId === undefined) !== (args.subnetId === undefined)) {
    throw new FlotillaError('invalid-input', 'aws: give both vpcId and subnetId (an existing network), or neither (Flotilla creates one)');
  }
  const family: AmiFamily | undefined = args.image === undefined ? (spec.format === 'ignition' ? 'flatcar' : 'debian-12') : args.image in AMI_FAMILIES ? (args.image as AmiFamily) : undefined;
  if (family === undefined && !/^ami-[0-9a-f]{8,17}$/.test(args.image ?? '')) {
    throw new FlotillaError('invalid-input', `image: ${JSON.stringify(args.image)} is neither an AMI id (ami-...) nor one of ${Object.keys(AMI_FAMILIES).join(', ')}`);
  }
  if (family !== undefined && AMI_FAMILIES[family].format !== spec.format) {
    throw new FlotillaError('invalid-input', `image: ${family} boots from ${AMI_FAMILIES[family].format}, but the cluster's format is ${spec.format}`);
  }
  const setup = nodeSetupFor(family);
  const replacing = checkReplaceMembers(spec, args.replaceMembers ?? []);
  const provider = args.region !== undefined ? new aws.Provider(`${name}-aws`, { region: args.region as pulumi.Input<aws.Region> }, { parent: self }) : undefined;
  const o: pulumi.CustomResourceOptions = { parent: self, ...(provider ? { provider } : {}) };
  const tags = (extra: Record<string, string>): pulumi.Output<Record<string, string>> =>
    pulumi.output(args.tags ?? {}).apply((t): Record<string, string> => ({ ...(t as Record<string, string>), 'flotilla:cluster': spec.name, ...extra }));

  // Network.
  let vpcId: pulumi.Input<string>;
  let subnetId: pulumi.Input<string>;
  if (args.vpcId !== undefined && args.subnetId !== undefined) {
    vpcId = args.vpcId;
    const subnet = aws.ec2.getSubnetOutput({ id: args.subnetId }, { parent: self, ...(provider ? { provider } : {}) });
    subnetId = pulumi.all([subnet.cidrBlock, subnet.id]).apply(([cidr, id]) => {
      checkAddressesInSubnet(spec, cidr);
      return id;
    });
  } else {
    const cidr = spec.network.cidr;
    if (spec.network.prefixLength < 16 || spec.network.prefixLength > 28) {
      throw new FlotillaError('invalid-input', `network.cidr ${cidr}: an AWS VPC needs a prefix from /16 to /28`);
    }
    const vpc = new aws.ec2.Vpc(`${name}-vpc`, { cidrBlock: cidr, enableDnsHostnames: true, enableDnsSupport: true, tags: tags({ Name: `${spec.name}` }) }, o);
    const igw = new aws.ec2.InternetGateway(`${name}-igw`, { vpcId: vpc.id, tags: tags({ Name: `${spec.name}` }) }, o);
    const subnet = new aws.ec2.Subnet(
      `${name}-subnet`,
      { vpcId: vpc.id, cidrBlock: cidr, mapPublicIpOnLaunch: true, ...(args.availabilityZone !== undefined ? { availabilityZone: args.availabilityZone } : {}), tags: tags({ Name: `${spec.name}-public` }) },
      o,
    );
    const rt = new aws.ec2.RouteTable(`${name}-rt`, { vpcId: vpc.id, routes: [{ cidrBlock: '0.0.0.0/0', gatewayId: igw.id }], tags: tags({ Name: `${spec.name}-public` }) }, o);
    new aws.ec2.RouteTableAssociation(`${name}-rta`, { subnetId: subnet.id, routeTableId: rt.id }, o);
    checkAddressesInSubnet(spec, cidr);
    vpcId = vpc.id;
    subnetId = subnet.id;
  }

  // Firewall.
  const sg = new aws.ec2.SecurityGroup(`${name}-nodes`, { vpcId, description: `Flotilla cluster ${spec.name} nodes`, tags: tags({ Name: `${spec.name}-nodes` }) }, o);
  new aws.vpc.SecurityGroupIngressRule(
    `${name}-ssh`,
    { securityGroupId: sg.id, description: 'SSH from the admin CIDR', ipProtocol: 'tcp', fromPort: 22, toPort: 22, cidrIpv4: pulumi.output(args.adminCidr).apply((c) => checkAdminCidr(c)), tags: tags({}) },
    o,
  );
  new aws.vpc.SecurityGroupIngressRule(
    `${name}-etcd-client`,
    { securityGroupId: sg.id, description: 'etcd clients (fleetd, etcdctl) inside the cluster', ipProtocol: 'tcp', fromPort: spec.etcd.clientPort, toPort: spec.etcd.clientPort, referencedSecurityGroupId: sg.id, tags: tags({}) },
    o,
  );
  new aws.vpc.SecurityGroupIngressRule(
    `${name}-etcd-peer`,
    { securityGroupId: sg.id, description: 'etcd peers inside the cluster', ipProtocol: 'tcp', fromPort: spec.etcd.peerPort, toPort: spec.etcd.peerPort, referencedSecurityGroupId: sg.id, tags: tags({}) },
    o,
  );
  new aws.vpc.SecurityGroupEgressRule(`${name}-egress`, { securityGroupId: sg.id, description: 'all outbound', ipProtocol: '-1', cidrIpv4: '0.0.0.0/0', tags: tags({}) }, o);

  const keyPair = new aws.ec2.KeyPair(`${name}-key`, { keyNamePrefix: `flotilla-${spec.name}-`, publicKey: sshKey, tags: tags({}) }, o);

  const ami: pulumi.Input<string> =
    family !== undefined ? aws.ec2.getAmiOutput(amiLookupArgs(family), { parent: self, ...(provider ? { provider } : {}) }).id : (args.image as string);

  // The cluster's private bucket: the agent archive (stock AMIs) and every Ignition node's full
  // config (only oversized ones are fetched, through a stub).
  let bucket: aws.s3.Bucket | undefined;
  let agentObject: aws.s3.BucketObjectv2 | undefined;
  let extra: pulumi.Output<StackRenderExtra>;
  if (spec.format === 'ignition' || setup !== 'preinstalled') {
    bucket = new aws.s3.Bucket(`${name}-boot`, { bucketPrefix: `flotilla-${spec.name}-`, forceDestroy: true, tags: tags({}) }, { ...o, aliases: [{ name: `${name}-ignition` }] });
    new aws.s3.BucketPublicAccessBlock(`${name}-boot`, { bucket: bucket.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true }, o);
    const b = bucket;
    let snippets: pulumi.Output<SetupSnippet[]>;
    if (setup !== 'preinstalled') {
      // Strings only inside the Output (see agentArtifacts).
      const artifacts = pulumi.output(
        Promise.resolve(args.agentArtifacts ?? defaultArtifacts()).then((a) => ({ base64: a.archive.data.toString('base64'), sha512: a.archive.sha512, fetcher: a.fetcher })),
      );
      agentObject = new aws.s3.BucketObjectv2(
        `${name}-agent`,
        { bucket: b.id, key: agentObjectKey(spec.name), contentBase64: artifacts.apply((a) => a.base64), contentType: 'application/gzip', serverSideEncryption: 'AES256', tags: tags({}) },
        o,
      );
      snippets = pulumi.all([b.bucket, b.region, b.bucketRegionalDomainName, agentObject.key, artifacts]).apply(([bucketName, region, domain, key, a]) =>
        setupSnippets(spec, {
          setup,
          agent: { bucket: bucketName, key, region, regionalDomainName: domain, sha512: a.sha512 },
          fetcher: a.fetcher,
          ...(args.containerImages ? { images: args.containerImages } : {}),
          createSudoGroup: family === 'fedora-coreos',
        }),
      );
    } else {
      snippets = pulumi.output(setupSnippets(spec, { setup }));
    }
    extra = pulumi.all([b.bucket, snippets]).apply(([bucketName, sn]) => ({
      ...(spec.format === 'ignition' ? { largeConfigUrl: `s3://${bucketName}/${spec.name}/` } : {}),
      snippets: sn,
      joining: replacing,
    }));
  } else {
    extra = pulumi.output({ snippets: setupSnippets(spec, { setup }), joining: replacing });
  }
  const placed = docs(extra);

  const protectedMember = (node: string, member: boolean): boolean => member && !replacing.includes(node);
  const instances: aws.ec2.Instance[] = [];
  const endpoints: Array<pulumi.Output<[string, NodeEndpoint]>> = [];
  spec.nodes.forEach((n, i) => {
    const mine = placed.apply((p) => {
      const x = p[i];
      if (!x || x.rendered.node !== n.name) throw new FlotillaError('internal', `rendered documents out of order at ${n.name}`);
      return x;
    });
    let profile: aws.iam.InstanceProfile | undefined;
    let policy: aws.iam.RolePolicy | undefined;
    if (bucket) {
      // Exactly the objects this node reads at first boot: the agent archive, its own Ignition config.
      const readable: pulumi.Output<string>[] = [];
      if (agentObject) readable.push(agentObject.key);
      if (spec.format === 'ignition') {
        const object = new aws.s3.BucketObjectv2(
          `${name}-${n.name}-ignition`,
          { bucket: bucket.id, key: ignitionObjectKey(spec.name, n.name), content: pulumi.secret(mine.apply((x) => x.rendered.userData)), contentType: 'application/json', serverSideEncryption: 'AES256', tags: tags({}) },
          o,
        );
        readable.push(object.key);
      }
      const role = new aws.iam.Role(
        `${name}-${n.name}`,
        {
          description: `Flotilla ${spec.name}/${n.name}: read its first-boot objects`,
          assumeRolePolicy: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }] }),
          tags: tags({}),
        },
        o,
      );
      policy = new aws.iam.RolePolicy(
        `${name}-${n.name}-read`,
        {
          role: role.id,
          policy: pulumi.all([bucket.arn, ...readable]).apply(([arn, ...keys]) =>
            JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['s3:GetObject'], Resource: keys.map((k) => `${arn}/${k}`) }] }),
          ),
        },
        { ...o, aliases: [{ name: `${name}-${n.name}-ignition` }] },
      );
      profile = new aws.iam.InstanceProfile(`${name}-${n.name}`, { role: role.name, tags: tags({}) }, o);
    }
    const instance = new aws.ec2.Instance(
      `${name}-${n.name}`,
      {
        ami,
        instanceType: args.instanceType ?? 't3.small',
        subnetId,
        privateIp: n.address,
        associatePublicIpAddress: true,
        vpcSecurityGroupIds: [sg.id],
        keyName: keyPair.keyName,
        userDataBase64: pulumi.secret(mine.apply((x) => x.placed.userData.toString('base64'))),
        userDataReplaceOnChange: !protectedMember(n.name, n.etcdMember),
        ...(profile ? { iamInstanceProfile: profile.name } : {}),
        metadataOptions: { httpEndpoint: 'enabled', httpTokens: 'required' },
        rootBlockDevice: { volumeSize: args.rootVolumeGiB ?? 20, volumeType: 'gp3', encrypted: true },
        tags: tags({ Name: `${spec.name}-${n.name}`, 'flotilla:node': n.name, 'flotilla:role': n.role }),
      },
      {
        ...o,
        // Fixed private IP: the old instance must go before its replacement can take the address.
        deleteBeforeReplace: true,
        ...(protectedMember(n.name, n.etcdMember) ? { ignoreChanges: ['userData', 'userDataBase64', 'ami'] } : {}),
        ...(policy ? { dependsOn: [policy, ...(agentObject ? [agentObject] : [])] } : {}),
      },
    );
    instances.push(instance);
    endpoints.push(instance.publicIp.apply((pub) => [n.name, { sshHost: pub, sshPort: 22 }] as [string, NodeEndpoint]));
  });
  return {
    endpoints: pulumi.all(endpoints).apply((e) => Object.fromEntries(e)),
    instances,
    securityGroup: sg,
    ...(bucket ? { bucket } : {}),
    setup,
  };
}
