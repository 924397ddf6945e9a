/**
 * The stack program on AWS under Pulumi's mock runtime (no engine, no AWS): the exact resources,
 * names, parents and key inputs; security-group rules; tags; the AMI lookup; user-data decoded
 * and parsed (gunzipped when gzip); the S3 stub and IAM policy of an oversized Ignition config;
 * secrets marked secret. This proves what the program asks Pulumi for, not that AWS accepts it.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { EC2_USER_DATA_LIMIT } from '../../src/config/userdata';
import { cloudInitSchema, ignitionValidate } from '../../src/config/validators';
import { AMI_FAMILIES, checkAddressesInSubnet } from '../../src/provision/pulumi/aws';
import { buildAgentArtifacts } from '../../src/provision/pulumi/agent-archive';
import { clusterPkiProvider } from '../../src/provision/pulumi/cluster-pki';
import { hostKeysProvider } from '../../src/provision/pulumi/host-keys';
import { resolveStackSpec } from '../../src/provision/pulumi/plan';
import { program } from '../../src/provision/pulumi/program';
import { generateKeyPair } from '../../src/ssh/keys';
import { PROJECT_ROOT } from '../../src/provision/pulumi/dynamic';
import { resolveInventory } from '../../src/cluster/inventory';
import { pyYamlLoad } from '../helpers/pyyaml';
import { isSecret, keyPairText, promiseOf, startMocks, type MockRecorder, type Registered } from './pulumi-mocks';

const AMI = 'ami-0123456789abcdef0';
const KEY = keyPairText(generateKeyPair('admin@example'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-pulumi-aws-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const keyFile = path.join(tmp, 'id_ed25519');
fs.writeFileSync(keyFile, KEY.private, { mode: 0o600 });

/** Computed outputs a real provider would return. */
async function outputs(type: string, name: string, inputs: Record<string, unknown>): Promise<Record<string, unknown>> {
  switch (type) {
    case 'aws:ec2/instance:Instance':
      return { publicIp: `198.51.100.${Number(String(inputs.privateIp).split('.')[3])}`, privateIp: inputs.privateIp, arn: `arn:aws:ec2:eu-west-1:123456789012:instance/${name}` };
    case 'aws:ec2/keyPair:KeyPair':
      return { keyName: `${String(inputs.keyNamePrefix)}20260101` };
    case 'aws:s3/bucket:Bucket': {
      const bucket = `${String(inputs.bucketPrefix)}mock01`;
      return { bucket, arn: `arn:aws:s3:::${bucket}`, region: 'eu-west-1', bucketRegionalDomainName: `${bucket}.s3.eu-west-1.amazonaws.com` };
    }
    case 'aws:iam/role:Role':
    case 'aws:iam/instanceProfile:InstanceProfile':
      return { name: `${name}-0001`, arn: `arn:aws:iam::123456789012:role/${name}-0001` };
    case 'pulumi-nodejs:dynamic/flotilla:HostKeys':
      // The real provider: key generation is what the stack would store.
      return (await hostKeysProvider.create!(inputs as never)).outs as Record<string, unknown>;
    case 'pulumi-nodejs:dynamic/flotilla:ClusterPki':
      // The real provider (openssl): delivery inputs are then the real per-node files.
      return (await clusterPkiProvider.create!(inputs as never)).outs as Record<string, unknown>;
    default:
      return {};
  }
}

function call(token: string, args: Record<string, unknown>): Record<string, unknown> {
  if (token === 'aws:ec2/getAmi:getAmi') return { id: AMI, imageId: AMI, name: 'mock-ami', architecture: 'x86_64' };
  if (token === 'aws:ec2/getSubnet:getSubnet') return { id: args.id, cidrBlock: '10.99.0.0/24', vpcId: 'vpc-existing' };
  throw new Error(`unexpected invoke ${token}`);
}

interface Run {
  rec: MockRecorder;
  out: Awaited<ReturnType<typeof program>>;
  inventory: Awaited<ReturnType<typeof promiseOf<unknown>>>;
}

async function run(config: Record<string, string>): Promise<Run> {
  const rec = await startMocks({
    stack: 'demo',
    config: { 'flotilla:platform': 'aws', 'flotilla:sshKey': KEY.public, 'flotilla:adminCidr': '203.0.113.7/32', 'flotilla:region': 'eu-west-1', ...config },
    secretKeys: ['flotilla:sshKey'],
    call,
    outputs,
  });
  const out = await program();
  const inventory = await promiseOf(out.inventory);
  await rec.settle();
  return { rec, out, inventory };
}

const INSTANCE = 'aws:ec2/instance:Instance';

/** The EC2 instance of a node (its role and instance profile share its name). */
function instance(rec: MockRecorder, node: string): Registered {
  return rec.byName(`demo-${node}`, INSTANCE);
}

function userData(r: Registered): Buffer {
  return Buffer.from(String(r.inputs.userDataBase64), 'base64');
}

const TAGGABLE = new Set([
  'aws:ec2/vpc:Vpc', 'aws:ec2/internetGateway:InternetGateway', 'aws:ec2/subnet:Subnet', 'aws:ec2/routeTable:RouteTable',
  'aws:ec2/securityGroup:SecurityGroup', 'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule', 'aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule',
  'aws:ec2/keyPair:KeyPair', 'aws:ec2/instance:Instance', 'aws:s3/bucket:Bucket', 'aws:s3/bucketObjectv2:BucketObjectv2', 'aws:iam/role:Role', 'aws:iam/instanceProfile:InstanceProfile',
]);

describe('aws stack, cloud-config, 4 nodes (mock runtime)', () => {
  let rec: MockRecorder;
  let out: Run['out'];
  let inventory: Run['inventory'];
  before(async () => {
    ({ rec, out, inventory } = await run({ 'flotilla:nodeCount': '4', 'flotilla:sshPrivateKeyFile': keyFile }));
  });
  const nodes = ['node1', 'node2', 'node3', 'node4'];

  it('declares exactly these resources, all children of the Cluster component', () => {
    assert.deepEqual(rec.summary(), [
      'aws:ec2/instance:Instance demo-node1 <- demo',
      'aws:ec2/instance:Instance demo-node2 <- demo',
      'aws:ec2/instance:Instance demo-node3 <- demo',
      'aws:ec2/instance:Instance demo-node4 <- demo',
      'aws:ec2/internetGateway:InternetGateway demo-igw <- demo',
      'aws:ec2/keyPair:KeyPair demo-key <- demo',
      'aws:ec2/routeTable:RouteTable demo-rt <- demo',
      'aws:ec2/routeTableAssociation:RouteTableAssociation demo-rta <- demo',
      'aws:ec2/securityGroup:SecurityGroup demo-nodes <- demo',
      'aws:ec2/subnet:Subnet demo-subnet <- demo',
      'aws:ec2/vpc:Vpc demo-vpc <- demo',
      'aws:iam/instanceProfile:InstanceProfile demo-node1 <- demo',
      'aws:iam/instanceProfile:InstanceProfile demo-node2 <- demo',
      'aws:iam/instanceProfile:InstanceProfile demo-node3 <- demo',
      'aws:iam/instanceProfile:InstanceProfile demo-node4 <- demo',
      'aws:iam/role:Role demo-node1 <- demo',
      'aws:iam/role:Role demo-node2 <- demo',
      'aws:iam/role:Role demo-node3 <- demo',
      'aws:iam/role:Role demo-node4 <- demo',
      'aws:iam/rolePolicy:RolePolicy demo-node1-read <- demo',
      'aws:iam/rolePolicy:RolePolicy demo-node2-read <- demo',
      'aws:iam/rolePolicy:RolePolicy demo-node3-read <- demo',
      'aws:iam/rolePolicy:RolePolicy demo-node4-read <- demo',
      'aws:s3/bucket:Bucket demo-boot <- demo',
      'aws:s3/bucketObjectv2:BucketObjectv2 demo-agent <- demo',
      'aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock demo-boot <- demo',
      'aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule demo-egress <- demo',
      'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule demo-etcd-client <- demo',
      'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule demo-etcd-peer <- demo',
      'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule demo-ssh <- demo',
      'flotilla:index:Cluster demo <- (root)',
      'pulumi-nodejs:dynamic/flotilla:ClusterPki demo-pki <- demo',
      'pulumi-nodejs:dynamic/flotilla:HostKeys demo-host-keys <- demo',
      'pulumi-nodejs:dynamic/flotilla:LocalInventory demo-inventory <- demo',
      'pulumi-nodejs:dynamic/flotilla:NodeSecrets demo-node1-secrets <- demo',
      'pulumi-nodejs:dynamic/flotilla:NodeSecrets demo-node2-secrets <- demo',
      'pulumi-nodejs:dynamic/flotilla:NodeSecrets demo-node3-secrets <- demo',
      'pulumi-nodejs:dynamic/flotilla:NodeSecrets demo-node4-secrets <- demo',
      'pulumi:providers:aws demo-aws <- demo',
    ]);
    const cluster = rec.byName('demo');
    assert.equal(cluster.parent, '');
    assert.deepEqual(cluster.inputs, { platform: 'aws', nodeCount: 4 }, 'the component records its shape, never the keys');
  });

  it('sends every AWS resource and the AMI lookup through the region provider', () => {
    const provider = rec.byName('demo-aws');
    assert.equal(provider.inputs.region, 'eu-west-1');
    for (const r of rec.resources.filter((x) => x.type.startsWith('aws:'))) {
      assert.ok(r.provider.startsWith(`${provider.urn}::`), `${r.name} uses ${r.provider}`);
    }
  });

  it('opens SSH only to the admin CIDR and etcd only inside the security group', () => {
    const sg = rec.byName('demo-nodes');
    assert.equal(sg.inputs.vpcId, 'demo-vpc-id');
    assert.equal(sg.inputs.ingress, undefined, 'no inline rules');
    const rules = rec.ofType('aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule').map((r) => ({ name: r.name, ...r.inputs, tags: undefined, description: undefined }));
    assert.deepEqual(rules.sort((a, b) => (a.name < b.name ? -1 : 1)), [
      { name: 'demo-etcd-client', securityGroupId: 'demo-nodes-id', ipProtocol: 'tcp', fromPort: 2379, toPort: 2379, referencedSecurityGroupId: 'demo-nodes-id', tags: undefined, description: undefined },
      { name: 'demo-etcd-peer', securityGroupId: 'demo-nodes-id', ipProtocol: 'tcp', fromPort: 2380, toPort: 2380, referencedSecurityGroupId: 'demo-nodes-id', tags: undefined, description: undefined },
      { name: 'demo-ssh', securityGroupId: 'demo-nodes-id', ipProtocol: 'tcp', fromPort: 22, toPort: 22, cidrIpv4: '203.0.113.7/32', tags: undefined, description: undefined },
    ]);
    const egress = rec.byName('demo-egress').inputs;
    assert.deepEqual([egress.securityGroupId, egress.ipProtocol, egress.cidrIpv4], ['demo-nodes-id', '-1', '0.0.0.0/0']);
  });

  it('builds a public subnet on the cluster network', () => {
    assert.equal(rec.byName('demo-vpc').inputs.cidrBlock, '10.99.0.0/24');
    const subnet = rec.byName('demo-subnet').inputs;
    assert.deepEqual([subnet.vpcId, subnet.cidrBlock, subnet.mapPublicIpOnLaunch], ['demo-vpc-id', '10.99.0.0/24', true]);
    assert.deepEqual(rec.byName('demo-rt').inputs.routes, [{ cidrBlock: '0.0.0.0/0', gatewayId: 'demo-igw-id' }]);
    assert.deepEqual([rec.byName('demo-rta').inputs.subnetId, rec.byName('demo-rta').inputs.routeTableId], ['demo-subnet-id', 'demo-rt-id']);
  });

  it('tags every taggable resource with the cluster', () => {
    for (const r of rec.resources.filter((x) => TAGGABLE.has(x.type))) {
      assert.equal((r.inputs.tags as Record<string, string>)?.['flotilla:cluster'], 'demo', r.name);
    }
    assert.deepEqual(instance(rec, 'node4').inputs.tags, { 'flotilla:cluster': 'demo', Name: 'demo-node4', 'flotilla:node': 'node4', 'flotilla:role': 'worker' });
  });

  it('looks the AMI up with Debian 12 owner and filters for cloud-config', () => {
    assert.deepEqual(rec.calls, [
      {
        token: 'aws:ec2/getAmi:getAmi',
        args: {
          owners: ['136693071363'],
          mostRecent: true,
          filters: [
            { name: 'name', values: ['debian-12-amd64-*'] },
            { name: 'architecture', values: ['x86_64'] },
            { name: 'virtualization-type', values: ['hvm'] },
            { name: 'root-device-type', values: ['ebs'] },
          ],
        },
      },
    ]);
    for (const n of nodes) assert.equal(instance(rec, n).inputs.ami, AMI);
  });

  it('places each instance at its spec address with the key pair, IMDSv2 and an encrypted root volume', () => {
    nodes.forEach((n, i) => {
      const inst = instance(rec, n).inputs;
      assert.equal(inst.privateIp, `10.99.0.${11 + i}`);
      assert.equal(inst.subnetId, 'demo-subnet-id');
      assert.deepEqual(inst.vpcSecurityGroupIds, ['demo-nodes-id']);
      assert.equal(inst.keyName, 'flotilla-demo-20260101');
      assert.equal(inst.instanceType, 't3.small');
      assert.equal(inst.associatePublicIpAddress, true);
      assert.deepEqual(inst.metadataOptions, { httpEndpoint: 'enabled', httpTokens: 'required' });
      assert.deepEqual(inst.rootBlockDevice, { volumeSize: 20, volumeType: 'gp3', encrypted: true });
      assert.equal(inst.iamInstanceProfile, `demo-${n}-0001`);
    });
    const kp = rec.byName('demo-key');
    assert.equal(kp.inputs.publicKey, KEY.public.trim());
  });

  it('uploads the agent archive once, and lets each node read exactly that object', async () => {
    const artifacts = await buildAgentArtifacts(PROJECT_ROOT);
    const agent = rec.byName('demo-agent');
    assert.deepEqual(
      { ...agent.inputs, contentBase64: undefined, tags: undefined },
      { bucket: 'demo-boot-id', key: 'demo/flotilla-agent.tar.gz', contentType: 'application/gzip', serverSideEncryption: 'AES256', contentBase64: undefined, tags: undefined },
    );
    const archive = Buffer.from(String(agent.inputs.contentBase64), 'base64');
    assert.deepEqual(archive, artifacts.archive.data, 'the object is the archive whose digest user-data carries');
    assert.deepEqual(agent.secretInputs, [], 'the agent is not a secret');
    const bucketArn = 'arn:aws:s3:::flotilla-demo-mock01';
    for (const n of nodes) {
      const policy = rec.byName(`demo-${n}-read`);
      assert.equal(policy.inputs.role, `demo-${n}-id`);
      assert.deepEqual(JSON.parse(String(policy.inputs.policy)), { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`${bucketArn}/demo/flotilla-agent.tar.gz`] }] });
      assert.equal(rec.byName(`demo-${n}`, 'aws:iam/instanceProfile:InstanceProfile').inputs.role, `demo-${n}-0001`);
      const inst = instance(rec, n);
      assert.ok(inst.dependencies.includes(policy.urn) && inst.dependencies.includes(agent.urn), 'the instance boots after its policy and the object exist');
    }
    assert.deepEqual(rec.ofType('aws:s3/bucketObjectv2:BucketObjectv2').map((r) => r.name), ['demo-agent'], 'no config objects for cloud-config');
  });

  it("installs etcd and Node.js from Debian's packages and fetches the agent with the instance role", async () => {
    const artifacts = await buildAgentArtifacts(PROJECT_ROOT);
    for (const n of nodes) {
      const doc = pyYamlLoad(userData(instance(rec, n)).toString('utf8')) as { packages: string[]; package_update: boolean; write_files: Array<{ path: string; content: string }> };
      assert.deepEqual([doc.package_update, doc.packages], [true, ['etcd-server', 'etcd-client', 'nodejs']]);
      const file = (p: string) => doc.write_files.find((f) => f.path === p)?.content;
      assert.equal(file('/etc/systemd/system/etcd.service'), '', "Debian's own etcd unit is masked");
      assert.equal(file('/usr/local/lib/flotilla-install/fetch-agent.js'), artifacts.fetcher);
      assert.deepEqual(JSON.parse(file('/etc/flotilla/agent-source.json')!), {
        endpoint: 'https://flotilla-demo-mock01.s3.eu-west-1.amazonaws.com',
        key: 'demo/flotilla-agent.tar.gz',
        region: 'eu-west-1',
        sha512: artifacts.archive.sha512,
        dest: '/usr/local',
      });
      assert.match(file('/etc/systemd/system/flotilla-fleetd.service.d/10-agent-install.conf')!, /^Requires=flotilla-agent-install\.service$/m);
      assert.ok(!doc.write_files.some((f) => /PRIVATE KEY|pki\/.*\.key/.test(f.path)), 'no TLS key in user-data');
      assert.doesNotMatch(JSON.stringify(doc.write_files), /BEGIN (EC )?PRIVATE KEY/, 'etcd keys are delivered over SSH, never in user-data');
    }
  });

  it('delivers the etcd TLS files over SSH after boot, pinned to each host key, not through user-data', async () => {
    const keys = await promiseOf(out.hostPublicKeys);
    const secrets = rec.ofType('pulumi-nodejs:dynamic/flotilla:NodeSecrets');
    assert.deepEqual(secrets.map((s) => s.name).sort(), nodes.map((n) => `demo-${n}-secrets`));
    nodes.forEach((n, i) => {
      const s = rec.byName(`demo-${n}-secrets`);
      assert.deepEqual([s.inputs.host, s.inputs.port, s.inputs.user, s.inputs.hostPublicKey], [`198.51.100.${11 + i}`, 22, 'core', keys[n]]);
      assert.ok(s.dependencies.includes(instance(rec, n).urn));
      assert.deepEqual(s.secretInputs, ['files', 'privateKey']);
      const paths = (s.inputs.files as Array<{ path: string; mode: number }>).map((f) => [f.path, f.mode]);
      assert.deepEqual(paths.filter(([p]) => String(p).endsWith('.key')).map(([, m]) => m), i < 3 ? [0o600, 0o600, 0o600] : [0o600]);
    });
  });

  it('protects etcd members from user-data and AMI replacement; replaces workers on new user-data', () => {
    for (const n of ['node1', 'node2', 'node3']) {
      const r = instance(rec, n);
      assert.deepEqual([...r.ignoreChanges].sort(), ['ami', 'userData', 'userDataBase64']);
      assert.equal(r.inputs.userDataReplaceOnChange, false);
      assert.equal(r.deleteBeforeReplace, true);
    }
    const w = instance(rec, 'node4');
    assert.deepEqual(w.ignoreChanges, []);
    assert.equal(w.inputs.userDataReplaceOnChange, true);
    assert.equal(w.deleteBeforeReplace, true);
  });

  it('puts each node its own cloud-config: pinned host key, admin key, etcd for members only', async () => {
    const keys = await promiseOf(out.hostPublicKeys);
    nodes.forEach((n, i) => {
      const ud = userData(instance(rec, n));
      assert.ok(ud.length <= EC2_USER_DATA_LIMIT);
      const text = ud.toString('utf8');
      assert.ok(text.startsWith('#cloud-config\n'));
      if (i === 0) assert.equal(cloudInitSchema(text).ok, true, 'cloud-init schema accepts it');
      const doc = pyYamlLoad(text) as { hostname: string; ssh_keys: Record<string, string>; users: Array<{ name: string; ssh_authorized_keys?: string[] }>; write_files: Array<{ path: string; content: string }> };
      assert.equal(doc.hostname, n);
      assert.equal(doc.ssh_keys.ed25519_public, keys[n]);
      assert.match(doc.ssh_keys.ed25519_private, /BEGIN OPENSSH PRIVATE KEY/);
      assert.deepEqual(doc.users.find((u) => u.name === 'core')?.ssh_authorized_keys, [KEY.public.trim()]);
      const paths = doc.write_files.map((f) => f.path);
      assert.equal(paths.includes('/etc/flotilla/etcd.env'), i < 3, `${n} etcd.env`);
      const fleetd = JSON.parse(doc.write_files.find((f) => f.path === '/etc/flotilla/fleetd.json')!.content) as { address: string; endpoints: string[] };
      assert.equal(fleetd.address, `10.99.0.${11 + i}`);
      assert.deepEqual(fleetd.endpoints, ['https://10.99.0.11:2379', 'https://10.99.0.12:2379', 'https://10.99.0.13:2379']);
      assert.ok(!paths.some((p) => p.includes('network')), 'no network-config on AWS: the VPC assigns addresses');
    });
  });

  it('marks every private key secret, and nothing the verifier needs', async () => {
    for (const n of nodes) assert.deepEqual(instance(rec, n).secretInputs, ['userDataBase64']);
    assert.deepEqual(rec.byName('demo-host-keys').additionalSecretOutputs, ['privateKeys']);
    assert.deepEqual(rec.byName('demo-pki').additionalSecretOutputs, ['caKey', 'clientKey', 'memberKeys']);
    assert.deepEqual(rec.byName('demo-key').secretInputs, ['publicKey'], 'a key set with --secret stays secret');
    assert.deepEqual(rec.byName('demo-inventory').secretInputs, ['files']);
    assert.equal(await isSecret(out.inventory), false);
    assert.equal(await isSecret(out.hostPublicKeys), false);
    assert.equal(await isSecret(out.etcdEndpoints), false);
    assert.doesNotMatch(JSON.stringify(inventory), /PRIVATE KEY/);
  });

  it('exports an inventory that flotilla verify accepts: SSH endpoints, pinned keys, roles, etcd through a tunnel', async () => {
    const keys = await promiseOf(out.hostPublicKeys);
    const dir = path.join(PROJECT_ROOT, '.flotilla/pulumi/demo');
    assert.deepEqual(inventory, {
      name: 'demo',
      ssh: { user: 'core', privateKeyFile: keyFile },
      nodes: nodes.map((n, i) => ({
        name: n,
        address: `10.99.0.${11 + i}`,
        hostKey: keys[n],
        ssh: { host: `198.51.100.${11 + i}`, port: 22, user: 'core' },
        role: i < 3 ? 'controller' : 'worker',
        etcdMember: i < 3,
        metadata: {},
      })),
      etcd: {
        endpoints: ['https://10.99.0.11:2379', 'https://10.99.0.12:2379', 'https://10.99.0.13:2379'],
        clientPort: 2379,
        tls: { caFile: `${dir}/etcd-ca.crt`, certFile: `${dir}/etcd-client.crt`, keyFile: `${dir}/etcd-client.key` },
        access: 'tunnel',
      },
      registry: { keyPrefix: '/flotilla/demo/' },
    });
    assert.deepEqual(await promiseOf(out.addresses), { node1: '10.99.0.11', node2: '10.99.0.12', node3: '10.99.0.13', node4: '10.99.0.14' });
    assert.deepEqual(await promiseOf(out.etcdEndpoints), ['https://10.99.0.11:2379', 'https://10.99.0.12:2379', 'https://10.99.0.13:2379']);
    assert.deepEqual(await promiseOf(out.sshEndpoints), Object.fromEntries(nodes.map((n, i) => [n, { sshHost: `198.51.100.${11 + i}`, sshPort: 22 }])));
    assert.match(String(await promiseOf(out.caCert)), /^-----BEGIN CERTIFICATE-----/);
    // verify's own loader, with the SSH key the user adds (flotilla:sshPrivateKeyFile) and the files LocalInventory writes.
    const local = rec.byName('demo-inventory');
    assert.equal(local.inputs.dir, dir);
    assert.deepEqual(local.inputs.inventory, inventory);
    assert.deepEqual((local.inputs.files as Array<{ name: string; mode: number }>).map((f) => [f.name, f.mode]), [['etcd-ca.crt', 0o644], ['etcd-client.crt', 0o644], ['etcd-client.key', 0o600]]);
    const resolved = resolveInventory(inventory, { baseDir: '/', readFile: (f) => fs.readFileSync(f, 'utf8') });
    assert.deepEqual(resolved.nodes.map((n) => [n.name, n.ssh.host, n.hostKey, n.etcdMember]), nodes.map((n, i) => [n, `198.51.100.${11 + i}`, keys[n], i < 3]));
    assert.equal(resolved.etcd.access, 'tunnel');
  });
});

describe('aws stack, oversized cloud-config (mock runtime)', () => {
  let rec: MockRecorder;
  const big = Array.from({ length: 1500 }, (_, i) => `# filler line ${i} for a large unit file`).join('\n');
  const specFile = path.join(tmp, 'big-cc.yaml');
  fs.writeFileSync(specFile, `name: demo\nnodes: [{ name: n1 }]\nunits:\n  - name: big.service\n    contents: |\n${`[Unit]\nDescription=big\n${big}\n[Service]\nExecStart=/bin/true\n`.split('\n').map((l) => `      ${l}`).join('\n')}\n`);
  before(async () => {
    ({ rec } = await run({ 'flotilla:spec': specFile }));
  });

  it('gzips user-data over 16 KiB; cloud-init reads the gunzipped document', () => {
    const ud = userData(instance(rec, 'n1'));
    assert.ok(ud.length <= EC2_USER_DATA_LIMIT, `${ud.length} bytes`);
    assert.deepEqual([...ud.subarray(0, 2)], [0x1f, 0x8b], 'gzip magic');
    const text = gunzipSync(ud).toString('utf8');
    assert.ok(text.length > EC2_USER_DATA_LIMIT, 'the document itself is over the limit');
    const doc = pyYamlLoad(text) as { write_files: Array<{ path: string; content: string }> };
    assert.match(doc.write_files.find((f) => f.path === '/etc/flotilla/units/big.service')!.content, /filler line 1499/);
  });
});

describe('aws stack, Ignition with one oversized config (mock runtime)', () => {
  let rec: MockRecorder;
  const filler = createHash('sha512').update('seed').digest('base64').repeat(300);
  const specFile = path.join(tmp, 'big-ign.yaml');
  fs.writeFileSync(
    specFile,
    `name: demo\nformat: ignition\nnodes: [{ name: n1 }, { name: n2 }, { name: n3 }]\nsnippets:\n  - format: ignition\n    nodes: [n1]\n    contents: '${JSON.stringify({ storage: { files: [{ path: '/etc/flotilla/big.txt', mode: 420, contents: { source: `data:,${encodeURIComponent(filler)}` } }] } })}'\n`,
  );
  before(async () => {
    ({ rec } = await run({ 'flotilla:spec': specFile }));
  });
  const bucket = 'flotilla-demo-mock01';

  it('looks up Flatcar for Ignition', () => {
    assert.deepEqual(rec.calls.map((c) => [c.token, c.args.owners, c.args.filters]), [
      ['aws:ec2/getAmi:getAmi', [...AMI_FAMILIES.flatcar.owners], [
        { name: 'name', values: ['Flatcar-stable-*-hvm'] },
        { name: 'architecture', values: ['x86_64'] },
        { name: 'virtualization-type', values: ['hvm'] },
        { name: 'root-device-type', values: ['ebs'] },
      ]],
    ]);
  });

  it('makes a private bucket with the agent and one config object per node, and a role per node that reads exactly those two', () => {
    const b = rec.byName('demo-boot', 'aws:s3/bucket:Bucket');
    assert.equal(b.inputs.bucketPrefix, 'flotilla-demo-');
    const pab = rec.ofType('aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock');
    assert.equal(pab.length, 1);
    assert.deepEqual(pab[0]!.inputs, { bucket: 'demo-boot-id', blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true });
    for (const n of ['n1', 'n2', 'n3']) {
      const obj = rec.byName(`demo-${n}-ignition`, 'aws:s3/bucketObjectv2:BucketObjectv2');
      assert.equal(obj.inputs.key, `demo/${n}.ign`);
      assert.equal(obj.inputs.serverSideEncryption, 'AES256');
      assert.deepEqual(obj.secretInputs, ['content']);
      const policy = rec.byName(`demo-${n}-read`);
      assert.equal(policy.inputs.role, `demo-${n}-id`);
      assert.deepEqual(JSON.parse(String(policy.inputs.policy)), {
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`arn:aws:s3:::${bucket}/demo/flotilla-agent.tar.gz`, `arn:aws:s3:::${bucket}/demo/${n}.ign`] }],
      });
      const role = rec.ofType('aws:iam/role:Role').find((r) => r.name === `demo-${n}`)!;
      assert.deepEqual(JSON.parse(String(role.inputs.assumeRolePolicy)).Statement[0].Principal, { Service: 'ec2.amazonaws.com' });
      const profile = rec.ofType('aws:iam/instanceProfile:InstanceProfile').find((r) => r.name === `demo-${n}`)!;
      assert.equal(profile.inputs.role, `demo-${n}-0001`);
      const inst = instance(rec, n);
      assert.equal(inst.inputs.iamInstanceProfile, `demo-${n}-0001`);
      assert.ok(inst.dependencies.includes(policy.urn), 'the instance waits for its policy');
    }
  });

  it('boots the oversized node from a stub that fetches its object by sha512; the others carry their config', async () => {
    const artifacts = await buildAgentArtifacts(PROJECT_ROOT);
    for (const n of ['n1', 'n2', 'n3']) {
      const full = String(rec.byName(`demo-${n}-ignition`, 'aws:s3/bucketObjectv2:BucketObjectv2').inputs.content);
      const config = JSON.parse(full) as { ignition: { version: string }; storage?: { files?: Array<{ path: string }> } };
      assert.equal(config.ignition.version, '3.3.0');
      const ud = userData(instance(rec, n));
      assert.ok(ud.length <= EC2_USER_DATA_LIMIT);
      const doc = JSON.parse(ud.toString('utf8')) as { ignition: { version: string; config?: { replace: { source: string; verification: { hash: string } } } } };
      assert.deepEqual(ignitionValidate(full), { ok: true, tool: 'ignition-validate', messages: [] }, `${n} full config`);
      const agentFile = (config as unknown as { storage: { files: Array<{ path: string; contents: { source: string; verification?: { hash: string } } }> } }).storage.files.find((f) => f.path === '/opt/flotilla/agent.tar.gz');
      assert.deepEqual(agentFile?.contents, { source: `s3://${bucket}/demo/flotilla-agent.tar.gz`, verification: { hash: `sha512-${artifacts.archive.sha512}` } }, 'Ignition fetches the agent with the instance role');
      const units = (config as unknown as { systemd: { units: Array<{ name: string; dropins?: Array<{ contents: string }> }> } }).systemd.units;
      assert.match(units.find((u) => u.name === 'flotilla-etcd.service')!.dropins![0]!.contents, /^ExecStart=\/usr\/bin\/docker run .* quay\.io\/coreos\/etcd:v3\.5\.15 \/usr\/local\/bin\/etcd$/m);
      assert.equal(ignitionValidate(ud.toString('utf8')).ok, true, `${n} user-data`);
      if (n === 'n1') {
        assert.ok(Buffer.byteLength(full) > EC2_USER_DATA_LIMIT);
        assert.ok(config.storage?.files?.some((f) => f.path === '/etc/flotilla/big.txt'));
        assert.deepEqual(doc, {
          ignition: { version: '3.3.0', config: { replace: { source: `s3://${bucket}/demo/n1.ign`, verification: { hash: `sha512-${createHash('sha512').update(full).digest('hex')}` } } } },
        });
      } else {
        assert.equal(ud.toString('utf8'), full, `${n} fits: its full config is the user-data`);
      }
    }
  });
});

describe('aws stack on Fedora CoreOS (mock runtime)', () => {
  let rec: MockRecorder;
  before(async () => {
    ({ rec } = await run({ 'flotilla:nodeCount': '3', 'flotilla:format': 'ignition', 'flotilla:image': 'fedora-coreos' }));
  });

  it('looks up the Fedora CoreOS stable AMI and runs etcd and the agent in podman, with a sudo group', () => {
    assert.deepEqual(rec.calls.map((c) => [c.args.owners, c.args.filters]), [[['125523088429'], [
      { name: 'name', values: ['fedora-coreos-*-x86_64'] },
      { name: 'description', values: ['Fedora CoreOS stable *'] },
      { name: 'architecture', values: ['x86_64'] },
      { name: 'virtualization-type', values: ['hvm'] },
      { name: 'root-device-type', values: ['ebs'] },
    ]]]);
    for (const n of ['node1', 'node2', 'node3']) {
      const text = userData(instance(rec, n)).toString('utf8');
      assert.deepEqual(ignitionValidate(text), { ok: true, tool: 'ignition-validate', messages: [] }, n);
      const doc = JSON.parse(text) as { passwd: { groups?: Array<{ name: string }> }; systemd: { units: Array<{ name: string; dropins?: Array<{ contents: string }> }> } };
      assert.deepEqual(doc.passwd.groups, [{ name: 'sudo' }]);
      for (const u of ['flotilla-etcd.service', 'flotilla-fleetd.service']) {
        assert.match(doc.systemd.units.find((x) => x.name === u)!.dropins![0]!.contents, /^ExecStart=\/usr\/bin\/podman run /m, `${n} ${u}`);
      }
    }
  });
});

describe('aws stack replacing one etcd member (mock runtime)', () => {
  let rec: MockRecorder;
  before(async () => {
    ({ rec } = await run({ 'flotilla:nodeCount': '3', 'flotilla:replaceMembers': 'node2' }));
  });

  it('lifts the protection of that member only, which then joins the running cluster', () => {
    for (const n of ['node1', 'node2', 'node3']) {
      const r = instance(rec, n);
      const doc = pyYamlLoad(userData(r).toString('utf8')) as { write_files: Array<{ path: string; content: string }> };
      const env = doc.write_files.find((f) => f.path === '/etc/flotilla/etcd.env')!.content;
      assert.match(env, new RegExp(`^ETCD_INITIAL_CLUSTER_STATE=${n === 'node2' ? 'existing' : 'new'}$`, 'm'));
      if (n === 'node2') {
        assert.deepEqual(r.ignoreChanges, []);
        assert.equal(r.inputs.userDataReplaceOnChange, true);
      } else {
        assert.deepEqual([...r.ignoreChanges].sort(), ['ami', 'userData', 'userDataBase64']);
        assert.equal(r.inputs.userDataReplaceOnChange, false);
      }
      assert.equal(r.deleteBeforeReplace, true);
    }
  });

  it('refuses to replace members at once beyond what quorum tolerates, or a node that is not a member', async () => {
    const cases: Array<[string, RegExp]> = [
      ['node1,node3', /replaceMembers: replacing 2 of 3 etcd members at once would lose quorum \(at most 1\); replace them one at a time/],
      ['node4', /replaceMembers: "node4" is not an etcd member of cluster demo \(members: node1, node2, node3\)/],
    ];
    for (const [value, message] of cases) {
      const r = await startMocks({ stack: 'demo', config: { 'flotilla:platform': 'aws', 'flotilla:sshKey': KEY.public, 'flotilla:adminCidr': '203.0.113.7/32', 'flotilla:nodeCount': '4', 'flotilla:replaceMembers': value }, call, outputs });
      await assert.rejects(program(), message);
      // Children declared before the refusal finish registering against this mock monitor.
      await r.settle();
    }
  });
});

describe('aws stack in an existing VPC and subnet (mock runtime)', () => {
  let rec: MockRecorder;
  before(async () => {
    ({ rec } = await run({ 'flotilla:nodeCount': '1', 'flotilla:vpcId': 'vpc-existing', 'flotilla:subnetId': 'subnet-0abc', 'flotilla:image': 'ami-0fedcba9876543210' }));
  });

  it('creates no network, checks the subnet, and uses the AMI given', () => {
    for (const t of ['aws:ec2/vpc:Vpc', 'aws:ec2/subnet:Subnet', 'aws:ec2/internetGateway:InternetGateway', 'aws:ec2/routeTable:RouteTable']) assert.deepEqual(rec.ofType(t), []);
    assert.deepEqual(rec.calls.map((c) => [c.token, c.args.id]), [['aws:ec2/getSubnet:getSubnet', 'subnet-0abc']]);
    assert.equal(rec.byName('demo-nodes').inputs.vpcId, 'vpc-existing');
    const inst = instance(rec, 'node1').inputs;
    assert.deepEqual([inst.subnetId, inst.ami], ['subnet-0abc', 'ami-0fedcba9876543210']);
  });

  it('takes an AMI id for a Flotilla node image: no bucket, no role, nothing installed at boot', () => {
    for (const t of ['aws:s3/bucket:Bucket', 'aws:s3/bucketObjectv2:BucketObjectv2', 'aws:iam/role:Role', 'aws:iam/rolePolicy:RolePolicy', 'aws:iam/instanceProfile:InstanceProfile']) assert.deepEqual(rec.ofType(t), [], t);
    assert.equal(instance(rec, 'node1').inputs.iamInstanceProfile, undefined);
    const doc = pyYamlLoad(userData(instance(rec, 'node1')).toString('utf8')) as Record<string, unknown> & { write_files: Array<{ path: string }> };
    assert.equal(doc.packages, undefined);
    assert.ok(!doc.write_files.some((f) => f.path.includes('flotilla-install') || f.path.endsWith('agent-source.json')));
  });

  it('refuses node addresses the subnet cannot give', () => {
    const spec = resolveStackSpec({ name: 'demo', platform: 'aws', nodeCount: 2 }, [KEY.public]);
    assert.doesNotThrow(() => checkAddressesInSubnet(spec, '10.99.0.0/24'));
    assert.throws(() => checkAddressesInSubnet(spec, '10.0.0.0/24'), /node node1: address 10\.99\.0\.11 is not a usable address of subnet 10\.0\.0\.0\/24/);
    const fixed = resolveStackSpec({ name: 'demo', platform: 'aws', spec: { name: 'demo', nodes: [{ name: 'a', address: '10.99.0.3' }], ssh: { authorizedKeys: [] } } }, [KEY.public]);
    assert.throws(() => checkAddressesInSubnet(fixed, '10.99.0.0/24'), /10\.99\.0\.3 is not a usable address/, 'AWS reserves the first four');
  });
});

describe('aws stack argument errors (mock runtime)', () => {
  it('refuses an AMI family that does not read the cluster format', async () => {
    await startMocks({
      stack: 'demo',
      config: { 'flotilla:platform': 'aws', 'flotilla:sshKey': KEY.public, 'flotilla:adminCidr': '203.0.113.7/32', 'flotilla:format': 'ignition', 'flotilla:image': 'debian-12' },
      call,
      outputs,
    });
    await assert.rejects(program(), /image: debian-12 boots from cloud-config, but the cluster's format is ignition/);
  });
});
