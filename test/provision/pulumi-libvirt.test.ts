/**
 * The stack program on libvirt under Pulumi's mock runtime: one LibvirtDomain dynamic resource
 * per node with exactly the driver inputs (image, accelerator, ports, MACs, cluster links,
 * first-boot documents as a secret), etcd members protected from first-boot changes, and
 * NodeSecrets delivering each node's TLS files. The driver itself is tested against a real
 * libvirtd in libvirt-driver.test.ts.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';
import { PKI } from '../../src/config/node-files';
import { stateDir } from '../../src/cluster/state';
import { clusterLinks, defaultPorts } from '../../src/provision/libvirt/domain-xml';
import { generateKeyPair } from '../../src/ssh/keys';
import { PROJECT_ROOT } from '../../src/provision/pulumi/dynamic';
import { hostKeysProvider } from '../../src/provision/pulumi/host-keys';
import { resolveInventory } from '../../src/cluster/inventory';
import { program, type ProgramDeps } from '../../src/provision/pulumi/program';
import { stackStructure } from '../../src/provision/pulumi/plan';
import { pyYamlLoad } from '../helpers/pyyaml';
import { isSecret, promiseOf, startMocks, type MockRecorder } from './pulumi-mocks';

// Checked pair: ssh2's raw generator emits a malformed ed25519 key ~1 in 200 times.
const KEY = generateKeyPair('admin@example');
const IMAGE = { disk: '/var/lib/flotilla/images/abc/disk.qcow2', kernel: '/var/lib/flotilla/images/abc/vmlinux', initrd: '/var/lib/flotilla/images/abc/initrd.img', cmdline: 'root=/dev/vda rw console=ttyS0', virtualBytes: 4 * 1024 ** 3 };
const DOMAIN_TYPE = 'pulumi-nodejs:dynamic/flotilla:LibvirtDomain';
const SECRETS_TYPE = 'pulumi-nodejs:dynamic/flotilla:NodeSecrets';

const deps: ProgramDeps & { imageIds: Array<string | undefined>; probed: number } = {
  imageIds: [],
  probed: 0,
  async resolveImage(id) {
    this.imageIds.push(id);
    return IMAGE;
  },
  async probeAccel() {
    this.probed++;
    return 'tcg';
  },
};

async function outputs(type: string, _name: string, inputs: Record<string, unknown>): Promise<Record<string, unknown>> {
  if (type === 'pulumi-nodejs:dynamic/flotilla:HostKeys') return (await hostKeysProvider.create!(inputs as never)).outs as Record<string, unknown>;
  if (type === 'pulumi-nodejs:dynamic/flotilla:ClusterPki') {
    const members = inputs.members as Array<{ name: string }>;
    return {
      caCert: 'CA-CERT',
      caKey: 'CA-KEY',
      clientCert: 'CLIENT-CERT',
      clientKey: 'CLIENT-KEY',
      memberCerts: Object.fromEntries(members.map((m) => [m.name, { server: `${m.name}-server-cert`, peer: `${m.name}-peer-cert` }])),
      memberKeys: Object.fromEntries(members.map((m) => [m.name, { server: `${m.name}-server-key`, peer: `${m.name}-peer-key` }])),
    };
  }
  return {};
}

describe('libvirt stack, 4 nodes with secret delivery (mock runtime)', () => {
  let rec: MockRecorder;
  let out: Awaited<ReturnType<typeof program>>;
  const structure = stackStructure({ name: 'demo', platform: 'libvirt', nodeCount: 4 });
  const ports = defaultPorts('demo');
  const links = clusterLinks(4, ports.linkPortBase);
  const nodes = ['node1', 'node2', 'node3', 'node4'];

  before(async () => {
    rec = await startMocks({
      stack: 'demo',
      config: {
        'flotilla:platform': 'libvirt',
        'flotilla:nodeCount': '4',
        'flotilla:sshKey': KEY.publicKey,
        'flotilla:sshPrivateKey': KEY.privateKey,
        'flotilla:accel': 'auto',
      },
      secretKeys: ['flotilla:sshPrivateKey'],
      outputs,
    });
    out = await program(deps);
    await promiseOf(out.inventory);
    await rec.settle();
  });

  it('declares the host keys, the PKI, one domain and one delivery per node, all children of the component', () => {
    assert.deepEqual(rec.summary(), [
      'flotilla:index:Cluster demo <- (root)',
      'pulumi-nodejs:dynamic/flotilla:ClusterPki demo-pki <- demo',
      'pulumi-nodejs:dynamic/flotilla:HostKeys demo-host-keys <- demo',
      ...nodes.map((n) => `${DOMAIN_TYPE} demo-${n} <- demo`),
      ...nodes.map((n) => `${SECRETS_TYPE} demo-${n}-secrets <- demo`),
      'pulumi-nodejs:dynamic/flotilla:LocalInventory demo-inventory <- demo',
    ].sort());
    assert.deepEqual([deps.imageIds, deps.probed], [[undefined], 1], 'the image is resolved and the accelerator probed once, at the entry point');
    for (const r of rec.resources.filter((x) => x.type.startsWith('pulumi-nodejs:dynamic/'))) {
      assert.equal(typeof r.inputs.__provider, 'string', `${r.name} carries its serialised provider`);
    }
  });

  it('gives each domain the driver inputs: image, accelerator, ports, MACs and its place in the cluster L2 star', () => {
    nodes.forEach((n, i) => {
      const d = rec.byName(`demo-${n}`, DOMAIN_TYPE);
      const { firstBoot, __provider, ...rest } = d.inputs;
      assert.deepEqual(rest, {
        cluster: 'demo',
        node: n,
        uri: 'qemu:///system',
        stateDir: stateDir(),
        image: IMAGE,
        accel: 'tcg',
        cpus: 1,
        memoryMiB: 1024,
        sshPort: ports.sshPortBase + i,
        primaryMac: structure.nodes[i]!.primaryMac,
        cluster0: { mac: structure.nodes[i]!.clusterMac, ...links[i]! },
      });
      assert.equal((firstBoot as { node: string }).node, n);
    });
  });

  it('renders each node its cloud-config and network-config, passed as a secret', async () => {
    const keys = await promiseOf(out.hostPublicKeys);
    nodes.forEach((n, i) => {
      const d = rec.byName(`demo-${n}`, DOMAIN_TYPE);
      assert.deepEqual(d.secretInputs, ['firstBoot']);
      assert.deepEqual(d.additionalSecretOutputs, ['firstBoot']);
      const fb = d.inputs.firstBoot as { format: string; userData: string; metaData: string; networkConfig: string };
      assert.equal(fb.format, 'cloud-config');
      const doc = pyYamlLoad(fb.userData) as { hostname: string; ssh_keys: Record<string, string> };
      assert.equal(doc.hostname, n);
      assert.equal(doc.ssh_keys.ed25519_public, keys[n]);
      const net = pyYamlLoad(fb.networkConfig) as { ethernets: Record<string, { match: { macaddress: string }; addresses?: string[] }> };
      assert.equal(net.ethernets.primary!.match.macaddress, structure.nodes[i]!.primaryMac);
      assert.deepEqual(net.ethernets.cluster!.addresses, [`10.99.0.${11 + i}/24`]);
      assert.equal((pyYamlLoad(fb.metaData) as Record<string, string>)['instance-id'], `demo-${n}`);
    });
  });

  it('keeps etcd members from being replaced by new first-boot documents or images; workers are replaced', () => {
    for (const n of ['node1', 'node2', 'node3']) assert.deepEqual(rec.byName(`demo-${n}`, DOMAIN_TYPE).ignoreChanges.sort(), ['firstBoot', 'image']);
    assert.deepEqual(rec.byName('demo-node4', DOMAIN_TYPE).ignoreChanges, []);
  });

  it('delivers each node its TLS files over SSH with its pinned key, after its domain exists', async () => {
    const keys = await promiseOf(out.hostPublicKeys);
    nodes.forEach((n, i) => {
      const s = rec.byName(`demo-${n}-secrets`, SECRETS_TYPE);
      const domain = rec.byName(`demo-${n}`, DOMAIN_TYPE);
      assert.ok(s.dependencies.includes(domain.urn));
      assert.deepEqual(s.secretInputs, ['files', 'privateKey']);
      assert.equal(s.inputs.privateKey, KEY.privateKey);
      assert.deepEqual([s.inputs.host, s.inputs.port, s.inputs.user, s.inputs.hostPublicKey, s.inputs.timeoutMs], ['127.0.0.1', ports.sshPortBase + i, 'core', keys[n], 15 * 60_000]);
      const files = s.inputs.files as Array<{ path: string; contents: string; mode: number }>;
      const expected = i < 3
        ? [PKI.ca, PKI.clientCert, PKI.clientKey, PKI.etcdServerCert, PKI.etcdServerKey, PKI.etcdPeerCert, PKI.etcdPeerKey]
        : [PKI.ca, PKI.clientCert, PKI.clientKey];
      assert.deepEqual(files.map((f) => f.path), expected);
      if (i < 3) assert.equal(files.find((f) => f.path === PKI.etcdServerKey)!.contents, `${n}-server-key`);
      assert.equal(files.find((f) => f.path === PKI.clientKey)!.mode, 0o600);
    });
  });

  it('exports the inventory with 127.0.0.1 endpoints, not secret', async () => {
    const inv = await promiseOf(out.inventory);
    assert.deepEqual(inv.nodes.map((n) => [n.name, n.ssh.host, n.ssh.port, n.address, n.role]), nodes.map((n, i) => [n, '127.0.0.1', ports.sshPortBase + i, `10.99.0.${11 + i}`, i < 3 ? 'controller' : 'worker']));
    assert.equal(inv.etcd.access, 'tunnel');
    // The SSH key was given inline (flotilla:sshPrivateKey): LocalInventory writes it next to the inventory, 0600.
    assert.equal(inv.ssh?.privateKeyFile, path.join(PROJECT_ROOT, '.flotilla/pulumi/demo/ssh-key'));
    const local = rec.byName('demo-inventory');
    const files = local.inputs.files as Array<{ name: string; contents: string; mode: number }>;
    assert.deepEqual(files.map((f) => [f.name, f.mode]), [['etcd-ca.crt', 0o644], ['etcd-client.crt', 0o644], ['etcd-client.key', 0o600], ['ssh-key', 0o600]]);
    assert.equal(files.find((f) => f.name === 'ssh-key')!.contents.trim(), KEY.privateKey.trim());
    assert.deepEqual(local.secretInputs, ['files']);
    const resolved = resolveInventory(inv, { baseDir: '/', readFile: () => KEY.privateKey });
    assert.deepEqual(resolved.nodes.map((n) => n.ssh.port), nodes.map((_, i) => ports.sshPortBase + i));
    assert.equal(await isSecret(out.inventory), false);
    assert.deepEqual(rec.byName('demo-pki').additionalSecretOutputs, ['caKey', 'clientKey', 'memberKeys']);
  });
});
