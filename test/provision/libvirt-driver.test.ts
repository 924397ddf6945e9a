/**
 * Real libvirt: the LibvirtDomain dynamic-provider methods (check, create, diff, update, delete,
 * read), called directly — not through a Pulumi engine — drive Flotilla's driver against the
 * system libvirtd (qemu:///system). One small domain boots Flotilla's node image from the
 * rendered cloud-config, answers SSH with its pinned host key (a wrong pin is refused), gets
 * its etcd TLS through the NodeSecrets provider (etcd then answers), is redefined with more
 * memory and restarted, and is deleted; afterwards no domain, pool, volume, file or QEMU process
 * of it is left. libvirtd is started here if it is not running (and stopped again); libvirt's
 * `default` network is never started (the domain uses user-mode networking only).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PKI } from '../../src/config/node-files';
import { generateKeyPair, type HostKeyPair } from '../../src/ssh/keys';
import { probeAccelerator, type AccelProbe } from '../../src/provision/local/accel';
import { ensureImage, type ImageInfo } from '../../src/provision/image';
import { HostKeyMismatchError, waitForSsh, type SshTarget } from '../../src/ssh';
import { runOnce } from '../helpers/node-ssh';
import { nodePkiFiles } from '../../src/cluster/pki';
import { clusterLinks, domainName } from '../../src/provision/libvirt/domain-xml';
import { destroy, list, nodeInfo } from '../../src/provision/libvirt/driver';
import { clusterPkiProvider, nodePkiFilesFrom, type ClusterPkiOutputs } from '../../src/provision/pulumi/cluster-pki';
import { hostKeysProvider, type HostKeysOutputs } from '../../src/provision/pulumi/host-keys';
import { libvirtDomainProvider, type LibvirtDomainInputs, type LibvirtDomainOutputs } from '../../src/provision/pulumi/libvirt-domain';
import { nodeSecretsProvider, type NodeSecretsInputs } from '../../src/provision/pulumi/node-secrets';
import { buildInventory, INVENTORY_FILES } from '../../src/provision/pulumi/inventory';
import { localInventoryProvider, type LocalInventoryOutputs } from '../../src/provision/pulumi/local-inventory';
import { renderStack, resolveStackSpec } from '../../src/provision/pulumi/plan';
import type { ResolvedSpec } from '../../src/config/spec';
import { ensureLibvirtd, LIBVIRT_URI, libvirtQemuPids, stopLibvirtd, virsh } from '../fixtures/libvirtd';
import { loadInventoryFile } from '../../src/cluster/inventory';
import { runVerify } from '../../src/verify/verify';

const CLUSTER = `lv${process.pid}`;
const NODE = 'node1';
const DOMAIN = domainName(CLUSTER, NODE);
const URI = LIBVIRT_URI;
const log = (msg: string): void => void process.stderr.write(`# ${msg}\n`);

/** Last resort if the process dies before after(): the domain and pool by name, the files. */
let stateDir = '';
function emergencyCleanup(): void {
  virsh('destroy', DOMAIN);
  virsh('undefine', DOMAIN);
  for (const v of virsh('vol-list', '--pool', DOMAIN).stdout.split('\n')) {
    const name = v.trim().split(/\s+/)[0];
    if (name) virsh('vol-delete', '--pool', DOMAIN, name);
  }
  virsh('pool-destroy', DOMAIN);
  virsh('pool-undefine', DOMAIN);
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
}
process.on('exit', emergencyCleanup);

/** A 127.0.0.1 TCP port nothing listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

describe('libvirt driver through the LibvirtDomain provider (real libvirtd)', { timeout: 30 * 60_000 }, () => {
  let image: ImageInfo;
  let accel: AccelProbe;
  let auth: { user: string; privateKey: string };
  const target = (hostKeyLine: string = hostKey): SshTarget => ({ node: NODE, host: '127.0.0.1', port: sshPort, user: auth.user, hostKey: hostKeyLine, privateKey: auth.privateKey });
  let inputs: LibvirtDomainInputs;
  let outs: LibvirtDomainOutputs | undefined;
  let hostKey: string;
  let pki: ClusterPkiOutputs;
  let sshPort: number;
  let spec: ResolvedSpec;

  before(async () => {
    ensureLibvirtd();
    image = await ensureImage({}, (p) => log(`image: ${p.step} ${p.phase}${p.seconds !== undefined ? ` ${p.seconds}s` : ''}`));
    accel = await probeAccelerator(image);
    log(`image ${image.id.slice(0, 12)}, accelerator ${accel.accel} (${accel.reason})`);
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-lv-'));
    fs.chmodSync(stateDir, 0o711); // libvirt-qemu must reach the volumes and console log below it
    const key = generateKeyPair('libvirt-test@flotilla');
    auth = { user: 'core', privateKey: key.privateKey };
    spec = resolveStackSpec({ name: CLUSTER, platform: 'libvirt', nodeCount: 1 }, [key.publicKey.trim()]);
    // Host keys and PKI the way the stack makes them: the providers' create, directly.
    const hk = (await hostKeysProvider.create!({ cluster: CLUSTER, nodes: [NODE] })).outs as HostKeysOutputs;
    const keys: Record<string, HostKeyPair> = { [NODE]: { type: 'ed25519', publicKey: hk.publicKeys[NODE]!, privateKey: hk.privateKeys[NODE]! } };
    hostKey = hk.publicKeys[NODE]!;
    pki = (await clusterPkiProvider.create!({ cluster: CLUSTER, members: [{ name: NODE, address: spec.nodes[0]!.address }] })).outs as ClusterPkiOutputs;
    const [placed] = renderStack(spec, keys);
    const r = placed!.rendered;
    const n = spec.nodes[0]!;
    sshPort = await freePort();
    inputs = {
      cluster: CLUSTER,
      node: NODE,
      uri: URI,
      stateDir,
      image: { disk: image.disk, kernel: image.kernel, initrd: image.initrd, cmdline: image.cmdline, virtualBytes: image.sizes.virtualBytes },
      accel: accel.accel,
      cpus: 1,
      memoryMiB: 768,
      firstBoot: { node: r.node, format: r.format, userData: r.userData, ...(r.metaData ? { metaData: r.metaData } : {}), ...(r.networkConfig ? { networkConfig: r.networkConfig } : {}) },
      sshPort,
      primaryMac: n.primaryMac,
      cluster0: { mac: n.clusterMac, ...clusterLinks(1, 40000)[0]! /* one node: a hub with no links, no UDP port used */ },
    };
  });

  after(async () => {
    try {
      await destroy(CLUSTER, NODE, { uri: URI, stateDir });
      fs.rmSync(stateDir, { recursive: true, force: true });
    } finally {
      stopLibvirtd();
    }
  });

  it('check() accepts the inputs and names each bad property', async () => {
    const ok = await libvirtDomainProvider.check!({}, inputs);
    assert.deepEqual(ok.failures, []);
    const bad = await libvirtDomainProvider.check!({}, { ...inputs, cpus: 0, memoryMiB: 64, sshPort: 80, primaryMac: 'x', accel: 'hvf' as 'kvm', firstBoot: { ...inputs.firstBoot, node: 'other' } });
    assert.deepEqual(bad.failures?.map((f) => f.property).sort(), ['accel', 'cpus', 'firstBoot', 'memoryMiB', 'primaryMac', 'sshPort']);
  });

  it('create() makes the pool, the overlay and seed volumes and the domain, and starts it', async () => {
    const t0 = Date.now();
    const res = await libvirtDomainProvider.create!(inputs);
    outs = res.outs as LibvirtDomainOutputs;
    log(`create: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(res.id, DOMAIN);
    assert.equal(outs.sshHost, '127.0.0.1');
    assert.equal(outs.domain, DOMAIN);
    assert.equal(virsh('domstate', DOMAIN).stdout.trim(), 'running');
    assert.deepEqual(await list({ cluster: CLUSTER, uri: URI }), [{ domain: DOMAIN, cluster: CLUSTER, node: NODE, state: 'running' }]);
    const vols = virsh('vol-list', '--pool', DOMAIN).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter(Boolean).sort();
    assert.deepEqual(vols, ['disk.qcow2', 'seed.iso']);
    const backing = spawnSync('qemu-img', ['info', '--force-share', '--output=json', path.join(stateDir, 'libvirt', CLUSTER, NODE, 'volumes', 'disk.qcow2')], { encoding: 'utf8' });
    assert.equal((JSON.parse(backing.stdout) as { 'backing-filename': string })['backing-filename'], image.disk);
    const xml = virsh('dumpxml', DOMAIN).stdout;
    assert.match(xml, /<domain type='(qemu|kvm)'/);
    assert.match(xml, new RegExp(`restrict=on,hostfwd=tcp:127\\.0\\.0\\.1:${sshPort}-:22`));
    assert.doesNotMatch(xml, /<interface /, 'no libvirt-managed NIC');
    assert.equal(virsh('net-list', '--name').stdout.trim(), '', 'no libvirt network is active');
    const info = await nodeInfo(CLUSTER, NODE, { uri: URI, stateDir });
    assert.equal(info?.configHash, outs.configHash);
    assert.equal(info?.sshPort, sshPort);
  });

  it('boots from the rendered cloud-config and answers SSH with the pinned host key only', async () => {
    const started = Date.now();
    const { attempts } = await waitForSsh(target(), started + 6 * 60_000);
    const seconds = (Date.now() - started) / 1000;
    log(`SSH with the pinned key ${seconds.toFixed(1)} s after create returned (${attempts} attempts, ${accel.accel})`);
    const res = await runOnce(target(), 'hostname; ip -br -4 addr show cluster0; cat /etc/flotilla/fleetd.json');
    assert.equal(res.code, 0, res.stderr);
    const [hostname, addr] = res.stdout.split('\n');
    assert.equal(hostname, NODE);
    assert.match(addr!, /10\.99\.0\.11\/24/);
    const other = generateKeyPair('other').publicKey;
    await assert.rejects(runOnce(target(other), 'true'), HostKeyMismatchError);
  });

  it('NodeSecrets delivers the etcd TLS files and etcd starts with them', async () => {
    const files = nodePkiFilesFrom(pki, NODE, nodePkiFiles);
    const secretInputs: NodeSecretsInputs = { node: NODE, host: '127.0.0.1', port: sshPort, user: 'core', hostPublicKey: hostKey, privateKey: auth.privateKey, files, timeoutMs: 120_000 };
    assert.deepEqual((await nodeSecretsProvider.check!({}, secretInputs)).failures, []);
    const res = await nodeSecretsProvider.create!(secretInputs);
    assert.deepEqual((res.outs as { paths: string[] }).paths.sort(), files.map((f) => f.path).sort());
    const health = `for i in $(seq 60); do etcdctl --endpoints=https://10.99.0.11:2379 --cacert=${PKI.ca} --cert=${PKI.clientCert} --key=${PKI.clientKey} endpoint health 2>&1 && exit 0; sleep 1; done; exit 1`;
    const r = await runOnce(target(), `sudo -n sh -c '${health}'`, 120_000);
    assert.equal(r.code, 0, `etcd not healthy: ${r.stdout} ${r.stderr}`);
    assert.match(r.stdout, /is healthy/);
    const modes = await runOnce(target(), `sudo -n stat -c '%a %n' ${PKI.etcdServerKey} ${PKI.ca}`);
    assert.deepEqual(modes.stdout.trim().split('\n'), [`600 ${PKI.etcdServerKey}`, `644 ${PKI.ca}`]);
    const again = await nodeSecretsProvider.diff!('x', res.outs, secretInputs);
    assert.equal(again.changes, false, 'the same files are not delivered again');
  });

  it('flotilla verify (node and etcd suites) passes with the inventory the stack writes', async () => {
    const keyFile = path.join(stateDir, 'id_ed25519');
    fs.writeFileSync(keyFile, auth.privateKey, { mode: 0o600 });
    const dir = path.join(stateDir, 'inventory');
    const inventory = buildInventory(spec, { [NODE]: { sshHost: '127.0.0.1', sshPort } }, { [NODE]: hostKey }, { dir, privateKeyFile: keyFile });
    const files = [
      { name: INVENTORY_FILES.ca, contents: pki.caCert, mode: 0o644 },
      { name: INVENTORY_FILES.clientCert, contents: pki.clientCert, mode: 0o644 },
      { name: INVENTORY_FILES.clientKey, contents: pki.clientKey, mode: 0o600 },
    ];
    const written = (await localInventoryProvider.create!({ dir, inventory: inventory as unknown as Record<string, unknown>, files })).outs as LocalInventoryOutputs;
    const t0 = Date.now();
    const { report } = await runVerify({ inventory: loadInventoryFile(written.inventoryFile), suites: ['node', 'etcd'], timeoutMs: 120_000, retryTimeoutMs: 120_000 });
    log(`verify node+etcd: ${report.summary.pass} pass, ${report.summary.skip} skip, ${report.summary.fail} fail, ${report.summary.error} error in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const bad = report.results.filter((r) => r.status === 'fail' || r.status === 'error').map((r) => `${r.id}: ${r.message}`);
    assert.deepEqual(bad, []);
    assert.ok(report.ok && report.summary.pass > 0);
    await localInventoryProvider.delete!('x', written);
  });

  it('diff() tells in-place changes from replacements', async () => {
    assert.ok(outs);
    const none = await libvirtDomainProvider.diff!(DOMAIN, outs, inputs);
    assert.equal(none.changes, false);
    const mem = await libvirtDomainProvider.diff!(DOMAIN, outs, { ...inputs, memoryMiB: 1024 });
    assert.deepEqual([mem.changes, mem.replaces], [true, []]);
    const fb = await libvirtDomainProvider.diff!(DOMAIN, outs, { ...inputs, firstBoot: { ...inputs.firstBoot, userData: `${inputs.firstBoot.userData}# changed\n` } });
    assert.deepEqual([fb.changes, fb.replaces, fb.deleteBeforeReplace], [true, ['firstBoot'], true]);
    const img = await libvirtDomainProvider.diff!(DOMAIN, outs, { ...inputs, image: { ...inputs.image, disk: '/other/disk.qcow2' } });
    assert.deepEqual(img.replaces, ['image']);
  });

  it('update() redefines the domain with more memory and restarts it; SSH answers again with the same key', async () => {
    assert.ok(outs);
    const t0 = Date.now();
    const res = await libvirtDomainProvider.update!(DOMAIN, outs, { ...inputs, memoryMiB: 1024 });
    outs = res.outs as LibvirtDomainOutputs;
    log(`update (ACPI shutdown + start): ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(outs.memoryMiB, 1024);
    assert.match(virsh('dominfo', DOMAIN).stdout, /Max memory:\s+1048576 KiB/);
    assert.equal(virsh('domstate', DOMAIN).stdout.trim(), 'running');
    const started = Date.now();
    await waitForSsh(target(), started + 6 * 60_000);
    log(`SSH again ${((Date.now() - started) / 1000).toFixed(1)} s after the restart`);
    const mem = await runOnce(target(), "awk '/MemTotal/ {print $2}' /proc/meminfo");
    const kib = Number(mem.stdout.trim());
    assert.ok(kib > 900 * 1024 && kib <= 1024 * 1024, `guest sees ${kib} KiB`);
    // A changed first-boot config cannot be applied in place.
    await assert.rejects(libvirtDomainProvider.update!(DOMAIN, outs, { ...inputs, memoryMiB: 1024, firstBoot: { ...inputs.firstBoot, userData: `${inputs.firstBoot.userData}# x\n` } }), /needs a new node/);
    const read = await libvirtDomainProvider.read!(DOMAIN, outs);
    assert.equal(read.id, DOMAIN);
  });

  it('delete() leaves no domain, pool, volume, file or QEMU process behind', async () => {
    assert.ok(outs);
    const t0 = Date.now();
    await libvirtDomainProvider.delete!(DOMAIN, outs);
    log(`delete: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.ok(!virsh('list', '--all', '--name').stdout.split('\n').includes(DOMAIN), 'domain gone');
    assert.ok(!virsh('pool-list', '--all', '--name').stdout.split('\n').includes(DOMAIN), 'pool gone');
    assert.notEqual(virsh('vol-list', '--pool', DOMAIN).status, 0, 'no pool to list volumes of');
    assert.equal(fs.existsSync(path.join(stateDir, 'libvirt', CLUSTER)), false, 'node files gone');
    assert.deepEqual(libvirtQemuPids(`${DOMAIN},`), []);
    assert.deepEqual(await list({ cluster: CLUSTER, uri: URI }), []);
    const read = await libvirtDomainProvider.read!(DOMAIN, outs);
    assert.deepEqual(read, {}, 'read() reports the resource gone');
    // Deleting again is harmless.
    await libvirtDomainProvider.delete!(DOMAIN, outs);
  });
});
