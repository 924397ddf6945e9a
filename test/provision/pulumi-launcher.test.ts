/**
 * The stack program as Pulumi's Node.js runtime starts it for Pulumi.yaml: `node --import tsx`
 * (the project's `nodeargs`) running the SDK's own launcher (@pulumi/pulumi/cmd/run) on `main`,
 * connected to a resource monitor. The Pulumi CLI (the engine) cannot be installed here, so the
 * monitor is a small gRPC server in this test that speaks the SDK's ResourceMonitor protocol:
 * it records registrations, answers the AMI lookup, and — as the engine's dynamic-provider host
 * would — runs the serialised providers of HostKeys, ClusterPki and LocalInventory (check, create)
 * in a plain `node` process. NodeSecrets is only recorded: its provider would SSH to the nodes.
 * This is not a `pulumi up`: no engine, no AWS provider plugin, nothing is created in AWS.
 * The inventory LocalInventory writes is then loaded by `flotilla verify`'s own loader.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { generateKeyPair } from '../../src/ssh/keys';
import { PROJECT_ROOT } from '../../src/provision/pulumi/dynamic';
import { loadInventoryFile } from '../../src/cluster/inventory';
import { pyYamlLoad } from '../helpers/pyyaml';
import { keyPairText, unwrapSecrets } from './pulumi-mocks';

const PULUMI_DIR = path.join(PROJECT_ROOT, 'node_modules/@pulumi/pulumi');
const SIG_KEY = '4dabf18193072939515e22adb298388d';
const SECRET_SIG = '1b47061264138c4ac30d75fd1eb44270';
/* eslint-disable @typescript-eslint/no-require-imports */
const grpc = require(require.resolve('@grpc/grpc-js', { paths: [PULUMI_DIR] })) as typeof import('@grpc/grpc-js');
const { ResourceMonitorService } = require(path.join(PULUMI_DIR, 'proto/resource_grpc_pb.js')) as { ResourceMonitorService: Record<string, unknown> };
const resproto = require(path.join(PULUMI_DIR, 'proto/resource_pb.js')) as Record<string, new () => Record<string, (v?: unknown) => unknown>>;
const provproto = require(path.join(PULUMI_DIR, 'proto/provider_pb.js')) as Record<string, new () => Record<string, (v?: unknown) => unknown>>;
const structpb = require(require.resolve('google-protobuf/google/protobuf/struct_pb.js', { paths: [PULUMI_DIR] })) as { Struct: { fromJavaScript(v: unknown): unknown } };
const emptypb = require(require.resolve('google-protobuf/google/protobuf/empty_pb.js', { paths: [PULUMI_DIR] })) as { Empty: new () => unknown };

interface Req {
  getType(): string;
  getName(): string;
  getParent(): string;
  getCustom(): boolean;
  getObject(): { toJavaScript(): Record<string, unknown> } | undefined;
  getAdditionalsecretoutputsList(): string[];
}

interface Registration {
  type: string;
  name: string;
  urn: string;
  parent: string;
  inputs: Record<string, unknown>;
  state: Record<string, unknown>;
  outputs?: Record<string, unknown>;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-launcher-'));
/** Dynamic resources whose providers the test monitor runs (the rest would reach out to nodes). */
const RUN_PROVIDERS = new Set(['pulumi-nodejs:dynamic/flotilla:HostKeys', 'pulumi-nodejs:dynamic/flotilla:ClusterPki', 'pulumi-nodejs:dynamic/flotilla:LocalInventory']);

/** What the engine's dynamic-provider host does with `__provider`: load it in plain node, check, create. */
function runDynamicProvider(provider: string, inputs: Record<string, unknown>): { id: string; outs: Record<string, unknown> } {
  const file = path.join(tmp, `provider-${Math.random().toString(36).slice(2)}.js`);
  fs.writeFileSync(file, provider);
  const script = `const p = require(${JSON.stringify(file)}).handler(); let s = ''; process.stdin.on('data', (d) => (s += d)).on('end', async () => {
    try { const inputs = JSON.parse(s); const c = await p.check({}, inputs); if (c.failures && c.failures.length) throw new Error(JSON.stringify(c.failures));
      const r = await p.create(c.inputs); process.stdout.write(JSON.stringify(r)); } catch (e) { console.error(e); process.exit(1); } });`;
  const r = spawnSync('node', ['-e', script], { input: JSON.stringify(inputs), cwd: tmp, encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  if (r.status !== 0) throw new Error(`dynamic provider failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { id: string; outs: Record<string, unknown> };
}

class TestMonitor {
  readonly registrations: Registration[] = [];
  readonly invokes: Array<{ token: string; args: Record<string, unknown> }> = [];
  readonly unimplemented = new Set<string>();
  server = new grpc.Server();
  port = 0;

  private urn(parent: string, type: string, name: string): string {
    const parentType = parent ? parent.split('::')[2]! : '';
    return `urn:pulumi:demo::flotilla::${parentType ? `${parentType}$` : ''}${type}::${name}`;
  }

  registerResource(req: Req): { urn: string; id: string; state: Record<string, unknown> } {
    const type = req.getType();
    const name = req.getName();
    const inputs = req.getObject()?.toJavaScript() ?? {};
    let state: Record<string, unknown> = { ...inputs };
    let id = req.getCustom() ? `${name}-id` : '';
    if (RUN_PROVIDERS.has(type)) {
      const { __provider, ...props } = unwrapSecrets(inputs).value as Record<string, unknown>;
      const r = runDynamicProvider(String(__provider), props);
      id = r.id;
      state = { ...r.outs, __provider };
    } else if (type === 'aws:ec2/instance:Instance') {
      state.publicIp = '198.51.100.7';
    } else if (type === 'aws:ec2/keyPair:KeyPair') {
      state.keyName = 'flotilla-demo-1';
    }
    for (const k of req.getAdditionalsecretoutputsList()) {
      if (state[k] !== undefined && (state[k] as Record<string, unknown>)?.[SIG_KEY] !== SECRET_SIG) state[k] = { [SIG_KEY]: SECRET_SIG, value: state[k] };
    }
    const urn = this.urn(req.getParent(), type, name);
    this.registrations.push({ type, name, urn, parent: req.getParent(), inputs, state });
    return { urn, id, state };
  }

  async start(): Promise<void> {
    const impl: Record<string, (call: { request: unknown }, cb: (err: unknown, res?: unknown) => void) => void> = {};
    for (const method of Object.keys(ResourceMonitorService)) {
      impl[method] = (call, cb) => {
        try {
          const req = call.request as Record<string, () => unknown>;
          switch (method) {
            case 'supportsFeature': {
              const r = new resproto.SupportsFeatureResponse!();
              // As the mock runtime: everything but output values.
              r.setHassupport!(req.getId!() !== 'outputValues');
              return cb(null, r);
            }
            case 'registerResource': {
              const { urn, id, state } = this.registerResource(call.request as Req);
              const r = new resproto.RegisterResourceResponse!();
              r.setUrn!(urn);
              r.setId!(id);
              r.setObject!(structpb.Struct.fromJavaScript(state));
              return cb(null, r);
            }
            case 'registerResourceOutputs': {
              const urn = req.getUrn!() as string;
              const reg = this.registrations.find((x) => x.urn === urn);
              if (reg) reg.outputs = (req.getOutputs!() as { toJavaScript(): Record<string, unknown> } | undefined)?.toJavaScript() ?? {};
              return cb(null, new emptypb.Empty());
            }
            case 'invoke': {
              const token = req.getTok!() as string;
              const args = unwrapSecrets((req.getArgs!() as { toJavaScript(): unknown }).toJavaScript()).value as Record<string, unknown>;
              this.invokes.push({ token, args });
              const r = new provproto.InvokeResponse!();
              if (token !== 'aws:ec2/getAmi:getAmi') throw new Error(`unexpected invoke ${token}`);
              r.setReturn!(structpb.Struct.fromJavaScript({ id: 'ami-0123456789abcdef0', name: 'debian-12-amd64-mock' }));
              return cb(null, r);
            }
            case 'registerPackage': {
              const r = new resproto.RegisterPackageResponse!();
              r.setRef!('test-package-ref');
              return cb(null, r);
            }
            case 'signalAndWaitForShutdown':
              return cb(null, new emptypb.Empty());
            default:
              this.unimplemented.add(method);
              return cb({ code: grpc.status.UNIMPLEMENTED, message: `${method}: not implemented by the test monitor` });
          }
        } catch (err) {
          return cb({ code: grpc.status.INTERNAL, message: (err as Error).message });
        }
      };
    }
    this.server.addService(ResourceMonitorService as never, impl as never);
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

describe("the stack program under the SDK's launcher, as Pulumi.yaml runs it (test monitor, no engine)", { timeout: 5 * 60_000 }, () => {
  const monitor = new TestMonitor();
  const key = keyPairText(generateKeyPair('admin@example'));
  const keyFile = path.join(tmp, 'id_ed25519');
  const invDir = path.join(tmp, 'inventory');
  let exitCode: number | null = null;
  let output = '';

  before(async () => {
    await monitor.start();
    const project = parseYaml(fs.readFileSync(path.join(PROJECT_ROOT, 'Pulumi.yaml'), 'utf8')) as { name: string; main: string; runtime: { options: { nodeargs: string } } };
    const programDir = path.join(PROJECT_ROOT, path.dirname(project.main));
    // The language host passes configuration as JSON in PULUMI_CONFIG (keys as <namespace>:config:<key>).
    fs.writeFileSync(keyFile, key.private, { mode: 0o600 });
    const config = {
      'flotilla:config:sshPrivateKeyFile': keyFile,
      'flotilla:config:inventoryDir': invDir,
      'flotilla:config:platform': 'aws',
      'flotilla:config:nodeCount': '1',
      'flotilla:config:sshKey': key.public,
      'flotilla:config:adminCidr': '203.0.113.7/32',
      'flotilla:config:region': 'eu-west-1',
    };
    const child = spawn(
      'node',
      [...project.runtime.options.nodeargs.split(' '), path.join(PULUMI_DIR, 'cmd/run'), `--monitor=127.0.0.1:${monitor.port}`, `--project=${project.name}`, '--stack=demo', `--pwd=${programDir}`, `--root-directory=${PROJECT_ROOT}`, '--parallel=4', path.basename(project.main)],
      { cwd: programDir, env: { ...process.env, PULUMI_CONFIG: JSON.stringify(config), PULUMI_CONFIG_SECRET_KEYS: JSON.stringify(['flotilla:config:sshKey']) }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    exitCode = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  });

  after(() => {
    monitor.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('runs to completion under `node --import tsx .../cmd/run` with the project main', () => {
    assert.equal(exitCode, 0, output);
  });

  it('registers the stack, the Cluster component under it, and its children', () => {
    const stack = monitor.registrations.find((r) => r.type === 'pulumi:pulumi:Stack')!;
    assert.equal(stack.name, 'flotilla-demo');
    const cluster = monitor.registrations.find((r) => r.type === 'flotilla:index:Cluster')!;
    assert.equal(cluster.name, 'demo');
    assert.equal(cluster.parent, stack.urn);
    const children = monitor.registrations.filter((r) => r.parent === cluster.urn).map((r) => `${r.type} ${r.name}`).sort();
    assert.deepEqual(children, [
      'aws:ec2/instance:Instance demo-node1',
      'aws:ec2/internetGateway:InternetGateway demo-igw',
      'aws:ec2/keyPair:KeyPair demo-key',
      'aws:ec2/routeTable:RouteTable demo-rt',
      'aws:ec2/routeTableAssociation:RouteTableAssociation demo-rta',
      'aws:ec2/securityGroup:SecurityGroup demo-nodes',
      'aws:ec2/subnet:Subnet demo-subnet',
      'aws:ec2/vpc:Vpc demo-vpc',
      'aws:iam/instanceProfile:InstanceProfile demo-node1',
      'aws:iam/role:Role demo-node1',
      'aws:iam/rolePolicy:RolePolicy demo-node1-read',
      'aws:s3/bucket:Bucket demo-boot',
      'aws:s3/bucketObjectv2:BucketObjectv2 demo-agent',
      'aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock demo-boot',
      'aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule demo-egress',
      'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule demo-etcd-client',
      'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule demo-etcd-peer',
      'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule demo-ssh',
      'pulumi-nodejs:dynamic/flotilla:ClusterPki demo-pki',
      'pulumi-nodejs:dynamic/flotilla:HostKeys demo-host-keys',
      'pulumi-nodejs:dynamic/flotilla:LocalInventory demo-inventory',
      'pulumi-nodejs:dynamic/flotilla:NodeSecrets demo-node1-secrets',
      'pulumi:providers:aws demo-aws',
    ]);
    assert.deepEqual(monitor.invokes.map((i) => i.token), ['aws:ec2/getAmi:getAmi']);
  });

  it("exports the program function's result as stack outputs: an inventory whose pinned key is in the node's user-data", () => {
    const stack = monitor.registrations.find((r) => r.type === 'pulumi:pulumi:Stack')!;
    const outputs = unwrapSecrets(stack.outputs).value as Record<string, unknown>;
    assert.deepEqual(Object.keys(outputs).sort(), ['addresses', 'caCert', 'etcdEndpoints', 'hostPublicKeys', 'inventory', 'inventoryFile', 'sshEndpoints']);
    assert.equal(outputs.inventoryFile, path.join(invDir, 'inventory.json'));
    const inv = outputs.inventory as { nodes: Array<{ name: string; ssh: { host: string }; hostKey: string }> };
    assert.deepEqual(inv.nodes.map((n) => [n.name, n.ssh.host]), [['node1', '198.51.100.7']]);
    // Made by the serialised provider in plain node: a real key pair.
    assert.match(inv.nodes[0]!.hostKey, /^ssh-ed25519 \S+ node1\.demo$/);
    assert.match(String(outputs.caCert), /^-----BEGIN CERTIFICATE-----/, 'a real openssl CA, from the serialised ClusterPki provider');
    const instance = monitor.registrations.find((r) => r.type === 'aws:ec2/instance:Instance')!;
    const ud = unwrapSecrets(instance.inputs.userDataBase64);
    assert.equal(ud.secret, true);
    const doc = pyYamlLoad(Buffer.from(String(ud.value), 'base64').toString('utf8')) as { ssh_keys: Record<string, string> };
    assert.equal(doc.ssh_keys.ed25519_public, inv.nodes[0]!.hostKey);
  });

  it("writes inventory.json and its files, which flotilla verify's loader accepts as they are", () => {
    assert.equal(fs.statSync(invDir).mode & 0o777, 0o700);
    assert.deepEqual(fs.readdirSync(invDir).sort(), ['etcd-ca.crt', 'etcd-client.crt', 'etcd-client.key', 'inventory.json']);
    assert.equal(fs.statSync(path.join(invDir, 'etcd-client.key')).mode & 0o777, 0o600);
    assert.match(fs.readFileSync(path.join(invDir, 'etcd-client.key'), 'utf8'), /PRIVATE KEY/);
    const inv = loadInventoryFile(path.join(invDir, 'inventory.json'));
    assert.equal(inv.name, 'demo');
    assert.equal(inv.ssh.privateKeyFile, keyFile);
    assert.deepEqual(inv.nodes.map((n) => [n.name, n.address, n.ssh.host, n.ssh.port, n.ssh.user, n.etcdMember]), [['node1', '10.99.0.11', '198.51.100.7', 22, 'core', true]]);
    assert.deepEqual(inv.etcd.tls, { caFile: path.join(invDir, 'etcd-ca.crt'), certFile: path.join(invDir, 'etcd-client.crt'), keyFile: path.join(invDir, 'etcd-client.key') });
    for (const f of Object.values(inv.etcd.tls!)) assert.ok(fs.existsSync(f), f);
    assert.equal(inv.etcd.access, 'tunnel');
    assert.equal(inv.keyPrefix, '/flotilla/demo/');
  });

  it('keeps private keys secret in the resource state', () => {
    const hk = monitor.registrations.find((r) => r.type === 'pulumi-nodejs:dynamic/flotilla:HostKeys')!;
    assert.equal((hk.state.privateKeys as Record<string, unknown>)[SIG_KEY], SECRET_SIG);
    const pki = monitor.registrations.find((r) => r.type === 'pulumi-nodejs:dynamic/flotilla:ClusterPki')!;
    for (const k of ['caKey', 'clientKey', 'memberKeys']) assert.equal((pki.state[k] as Record<string, unknown>)[SIG_KEY], SECRET_SIG, k);
    assert.equal(typeof pki.state.caCert, 'string', 'certificates stay readable');
  });
});
