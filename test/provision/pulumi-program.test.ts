/**
 * The stack program as a whole: it type-checks on its own (and a wrong use of the component does
 * not); configuration errors name their keys (pulumi.RunError, all problems at once); the example
 * stack files are valid for it; Pulumi.yaml runs it through tsx; there is one @pulumi/pulumi;
 * and every dynamic provider, serialised as Pulumi serialises it, runs in a plain `node` without
 * this project's loader — the way Pulumi's dynamic-provider host runs it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import * as pulumi from '@pulumi/pulumi';
import { parse as parseYaml } from 'yaml';
import { clusterPkiProvider } from '../../src/provision/pulumi/cluster-pki';
import { generateKeyPair } from '../../src/ssh/keys';
import { PROJECT_ROOT } from '../../src/provision/pulumi/dynamic';
import { hostKeysProvider } from '../../src/provision/pulumi/host-keys';
import { libvirtDomainProvider } from '../../src/provision/pulumi/libvirt-domain';
import { localInventoryProvider, type LocalInventoryOutputs } from '../../src/provision/pulumi/local-inventory';
import { nodeSecretsProvider } from '../../src/provision/pulumi/node-secrets';
import { program, type ProgramDeps } from '../../src/provision/pulumi/program';
import { keyPairText, pulumiCopies, promiseOf, startMocks } from './pulumi-mocks';

const KEY = keyPairText(generateKeyPair('admin@example'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-pulumi-program-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const deps: ProgramDeps = {
  resolveImage: async () => ({ disk: '/img/disk.qcow2', kernel: '/img/vmlinux', initrd: '/img/initrd.img', cmdline: 'root=/dev/vda', virtualBytes: 1 << 30 }),
  probeAccel: async () => 'tcg',
};

async function outputs(type: string, _name: string, inputs: Record<string, unknown>): Promise<Record<string, unknown>> {
  if (type === 'pulumi-nodejs:dynamic/flotilla:HostKeys') return (await hostKeysProvider.create!(inputs as never)).outs as Record<string, unknown>;
  if (type === 'aws:ec2/instance:Instance') return { publicIp: '198.51.100.1', privateIp: inputs.privateIp };
  if (type === 'pulumi-nodejs:dynamic/flotilla:ClusterPki') return { caCert: 'CA', clientCert: 'C', memberCerts: {}, caKey: 'K', clientKey: 'K', memberKeys: {} };
  if (type === 'aws:s3/bucket:Bucket') return { bucket: 'b', arn: 'arn:aws:s3:::b', region: 'eu-west-1', bucketRegionalDomainName: 'b.s3.eu-west-1.amazonaws.com' };
  return {};
}

function call(token: string): Record<string, unknown> {
  if (token === 'aws:ec2/getAmi:getAmi') return { id: 'ami-0123456789abcdef0' };
  throw new Error(token);
}

/** Runs the program with this configuration; resolves with the error it threw, or undefined. */
async function runWith(config: Record<string, string>, stack = 'demo'): Promise<Error | undefined> {
  const rec = await startMocks({ stack, config, call, outputs });
  try {
    const out = await program(deps);
    await promiseOf(out.inventory);
    return undefined;
  } catch (err) {
    return err as Error;
  } finally {
    await rec.settle();
  }
}

const BASE_AWS = { 'flotilla:platform': 'aws', 'flotilla:sshKey': KEY.public, 'flotilla:adminCidr': '203.0.113.7/32', 'flotilla:nodeCount': '1' };

/** Asserts a RunError whose message lists exactly these `flotilla:key: ...` problems (by prefix match). */
function assertConfigError(err: Error | undefined, problems: RegExp[]): void {
  assert.ok(err, 'the program must refuse this configuration');
  assert.ok(pulumi.RunError.isInstance(err), `a RunError (printed without a stack trace), got ${err.name}: ${err.message}`);
  const lines = err.message.split('\n');
  assert.equal(lines[0], `invalid stack configuration: ${problems.length} problem${problems.length === 1 ? '' : 's'}`);
  assert.equal(lines.length - 1, problems.length, err.message);
  problems.forEach((p, i) => assert.match(lines[i + 1]!, p));
}

describe('stack configuration errors', () => {
  it('names a missing sshKey and says how to set it', async () => {
    const { 'flotilla:sshKey': _omit, ...rest } = BASE_AWS;
    assertConfigError(await runWith(rest), [/^ {2}flotilla:sshKey: is required: the OpenSSH public key .*pulumi config set flotilla:sshKey "\$\(cat ~\/\.ssh\/id_ed25519\.pub\)"/]);
  });

  it('names a bad admin CIDR, whatever is wrong with it', async () => {
    for (const bad of ['203.0.113.7', '10.0.0.1/24', '10.0.0.0/33', 'anywhere']) {
      assertConfigError(await runWith({ ...BASE_AWS, 'flotilla:adminCidr': bad }), [new RegExp(`flotilla:adminCidr: "${bad.replace(/[./]/g, '\\$&')}" is not an IPv4 CIDR with its host bits zero \\(e\\.g\\. 203\\.0\\.113\\.7/32\\)`)]);
    }
    const { 'flotilla:adminCidr': _omit, ...rest } = BASE_AWS;
    assertConfigError(await runWith(rest), [/flotilla:adminCidr: is required on aws/]);
    assertConfigError(await runWith({ ...BASE_AWS, 'flotilla:adminCidr': '0.0.0.0/0' }), [/flotilla:adminCidr: "0\.0\.0\.0\/0" would open SSH to the whole Internet; give your own address/]);
  });

  it('names a malformed replaceMembers list', async () => {
    assertConfigError(await runWith({ ...BASE_AWS, 'flotilla:replaceMembers': 'node1, Node_2' }), [/flotilla:replaceMembers: must be etcd member names separated by commas \(e\.g\. node2\), got "node1, Node_2"/]);
  });

  it('names a node count of 0 (or not a number)', async () => {
    assertConfigError(await runWith({ ...BASE_AWS, 'flotilla:nodeCount': '0' }), [/flotilla:nodeCount: must be a whole number from 1 to 64, got "0"/]);
    assertConfigError(await runWith({ ...BASE_AWS, 'flotilla:nodeCount': 'three' }), [/flotilla:nodeCount: must be a whole number from 1 to 64, got "three"/]);
  });

  it('reports every problem at once, including a private key given as sshKey and a mistyped key', async () => {
    const err = await runWith({ 'flotilla:platform': 'gcp', 'flotilla:sshKey': KEY.private, 'flotilla:nodeCount': '-1', 'flotilla:instancetype': 't3.micro' });
    assertConfigError(err, [
      /flotilla:platform: must be one of aws, libvirt, got "gcp"/,
      /flotilla:nodeCount: must be a whole number/,
      /flotilla:sshKey: this is a private key; give the public key/,
      /flotilla:instancetype: unknown key \(did you mean flotilla:instanceType\?\)/,
    ]);
  });

  it('requires a DNS-label cluster name when the stack name is not one', async () => {
    const err = await runWith(BASE_AWS, 'Dev_Stack');
    assert.ok(err && pulumi.RunError.isInstance(err));
    assert.match(err.message, /flotilla:clusterName: is required because the stack name "Dev_Stack" is not a DNS label/);
    assert.equal(await runWith({ ...BASE_AWS, 'flotilla:clusterName': 'dev' }, 'Dev_Stack'), undefined);
  });

  it('checks libvirt keys too', async () => {
    const err = await runWith({ 'flotilla:platform': 'libvirt', 'flotilla:sshKey': KEY.public, 'flotilla:accel': 'hvf', 'flotilla:image': 'latest', 'flotilla:sshPortBase': '22' });
    assertConfigError(err, [/flotilla:image: on libvirt: a Flotilla node image id/, /flotilla:accel: must be one of auto, kvm, tcg, got "hvf"/, /flotilla:sshPortBase: must be a whole number from 1024/]);
  });
});

describe('the example stack files', () => {
  for (const file of ['Pulumi.aws.yaml', 'Pulumi.libvirt.yaml']) {
    it(`${file} configures the program (with a real key in place of the placeholder)`, async () => {
      const doc = parseYaml(fs.readFileSync(path.join(PROJECT_ROOT, file), 'utf8')) as { config: Record<string, string | number> };
      const config = Object.fromEntries(Object.entries(doc.config).map(([k, v]) => [k, String(v)]));
      assertConfigError(await runWith(config), [/flotilla:sshKey: /]);
      assert.equal(await runWith({ ...config, 'flotilla:sshKey': KEY.public }), undefined);
    });
  }
});

describe('Pulumi.yaml and the SDK', () => {
  it('runs the TypeScript entry point through tsx on the nodejs runtime', () => {
    const doc = parseYaml(fs.readFileSync(path.join(PROJECT_ROOT, 'Pulumi.yaml'), 'utf8')) as { name: string; runtime: { name: string; options: Record<string, unknown> }; main: string };
    assert.equal(doc.name, 'flotilla');
    assert.deepEqual(doc.runtime, { name: 'nodejs', options: { typescript: false, nodeargs: '--import tsx', packagemanager: 'npm' } });
    assert.equal(doc.main, 'src/provision/pulumi/index.ts');
    // What the runtime does with `nodeargs` and `main`: node --import tsx ... require(main); a function is the program.
    const r = spawnSync('node', ['--import', 'tsx', '-e', `const m = require(${JSON.stringify(path.join(PROJECT_ROOT, doc.main))}); process.stdout.write(typeof m + ' ' + m.name)`], { cwd: path.join(PROJECT_ROOT, path.dirname(doc.main)), encoding: 'utf8' });
    assert.equal(r.stdout, 'function program', r.stderr);
  });

  it('has exactly one copy of @pulumi/pulumi (two copies silently bypass the mocks)', () => {
    assert.deepEqual(pulumiCopies(PROJECT_ROOT), [path.join(PROJECT_ROOT, 'node_modules/@pulumi/pulumi')]);
  });

  it('type-checks the stack program on its own, and rejects a wrong use of the component', () => {
    // One tsc run over the entry point (and everything it imports) plus a file that misuses the
    // component: the only errors must be that file's.
    const wrong = path.join(tmp, 'wrong.ts');
    fs.writeFileSync(wrong, `import { Cluster } from ${JSON.stringify(path.join(PROJECT_ROOT, 'src/provision/pulumi/cluster'))};\nnew Cluster('x', { platform: 'gcp', sshKey: 'k' });\n`);
    const cfg = path.join(tmp, 'tsconfig.json');
    fs.writeFileSync(cfg, JSON.stringify({
      extends: path.join(PROJECT_ROOT, 'tsconfig.json'),
      compilerOptions: { noEmit: true, rootDir: '/', typeRoots: [path.join(PROJECT_ROOT, 'node_modules/@types')] },
      include: [],
      files: [path.join(PROJECT_ROOT, 'src/provision/pulumi/index.ts'), wrong],
    }));
    const r = spawnSync(path.join(PROJECT_ROOT, 'node_modules/.bin/tsc'), ['-p', cfg], { encoding: 'utf8' });
    const errors = (r.stdout + r.stderr).split('\n').filter((l) => /error TS\d+/.test(l));
    assert.notEqual(r.status, 0);
    assert.deepEqual(errors.map((l) => path.resolve(process.cwd(), l.replace(/\(\d+,\d+\).*/, ''))), [wrong], errors.join('\n'));
    assert.match(errors[0]!, /error TS2322: Type '"gcp"' is not assignable to type 'StackPlatform'/);
  });
});

describe('dynamic providers, serialised, in a plain node process', () => {
  /** Serialises `provider` as Pulumi does, then runs `script` against it in `node` without tsx, outside the repository. */
  async function runSerialised(provider: pulumi.dynamic.ResourceProvider, script: string): Promise<unknown> {
    const sf = await pulumi.runtime.serializeFunction(() => provider);
    const file = path.join(tmp, `provider-${Math.random().toString(36).slice(2)}.js`);
    fs.writeFileSync(file, sf.text);
    const r = spawnSync('node', ['-e', `const p = require(${JSON.stringify(file)}).handler(); (async () => { const out = await (${script})(p); process.stdout.write(JSON.stringify(out)); })().catch((e) => { console.error(e); process.exit(1); });`], {
      cwd: tmp,
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(sf.text.length < 200_000, `serialised provider is ${sf.text.length} bytes`);
    return JSON.parse(r.stdout);
  }

  it('HostKeys creates keys (loading Flotilla sources through tsx by itself)', async () => {
    const out = (await runSerialised(hostKeysProvider, `async (p) => (await p.create({ cluster: 'c', nodes: ['a', 'b'] })).outs`)) as { publicKeys: Record<string, string>; privateKeys: Record<string, string> };
    assert.match(out.publicKeys.a!, /^ssh-ed25519 \S+ a\.c$/);
    assert.match(out.privateKeys.b!, /BEGIN OPENSSH PRIVATE KEY/);
  });

  it('LibvirtDomain, ClusterPki and NodeSecrets check and diff', async () => {
    const lv = (await runSerialised(libvirtDomainProvider, `async (p) => (await p.check({}, { cluster: 'Bad', node: 'n', cpus: 0 })).failures.map((f) => f.property)`)) as string[];
    assert.ok(lv.includes('cluster') && lv.includes('cpus') && lv.includes('image'), lv.join());
    const pkiDiff = await runSerialised(clusterPkiProvider, `async (p) => p.diff('id', { cluster: 'c', members: [{ name: 'a', address: '10.0.0.1' }] }, { cluster: 'c', members: [{ name: 'a', address: '10.0.0.2' }] })`);
    assert.deepEqual(pkiDiff, { changes: true, replaces: ['members'], deleteBeforeReplace: false });
    const files = [{ path: '/etc/x', contents: 'x', mode: 384 }];
    const same = await runSerialised(nodeSecretsProvider, `async (p) => p.diff('id', { node: 'n', host: 'h', port: 22, user: 'core', hostPublicKey: 'k', filesDigest: 'nope' }, { node: 'n', host: 'h', port: 22, user: 'core', hostPublicKey: 'k', files: ${JSON.stringify(files)} })`);
    assert.deepEqual(same, { changes: true, replaces: [], deleteBeforeReplace: false });
  });
});

describe('LocalInventory provider', () => {
  it('writes, rewrites (dropping files no longer listed) and removes the inventory directory', async () => {
    const dir = path.join(tmp, 'inv', 'demo');
    const first = { dir, inventory: { name: 'demo' }, files: [{ name: 'etcd-client.key', contents: 'KEY', mode: 0o600 }, { name: 'ssh-key', contents: 'SSH', mode: 0o600 }] };
    assert.deepEqual((await localInventoryProvider.check!({}, first)).failures, []);
    assert.deepEqual((await localInventoryProvider.check!({}, { ...first, files: [{ name: '../escape', contents: '', mode: 0o600 }] })).failures?.map((f) => f.property), ['files']);
    const created = (await localInventoryProvider.create!(first)).outs as LocalInventoryOutputs;
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(dir, 'ssh-key')).mode & 0o777, 0o600);
    assert.deepEqual(JSON.parse(fs.readFileSync(created.inventoryFile, 'utf8')), { name: 'demo' });
    assert.equal((await localInventoryProvider.diff!('id', created, first)).changes, false);
    const second = { ...first, inventory: { name: 'demo', nodes: [] }, files: [first.files[0]!] };
    assert.deepEqual(await localInventoryProvider.diff!('id', created, second), { changes: true, replaces: [], deleteBeforeReplace: true });
    const updated = (await localInventoryProvider.update!('id', created, second)).outs as LocalInventoryOutputs;
    assert.deepEqual(fs.readdirSync(dir).sort(), ['etcd-client.key', 'inventory.json']);
    assert.deepEqual((await localInventoryProvider.diff!('id', updated, { ...second, dir: `${dir}2` })).replaces, ['dir']);
    await localInventoryProvider.delete!('id', updated);
    assert.equal(fs.existsSync(dir), false);
  });
});
