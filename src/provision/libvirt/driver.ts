/**
 * Flotilla's libvirt driver: one node = one storage pool (its qcow2 overlay on the cached node
 * image, its first-boot volume) + one domain, all named `flotilla-<cluster>-<node>`, managed
 * through `virsh -c qemu:///system`. Used by the Pulumi dynamic resources
 * (src/provision/pulumi/libvirt-*.ts) and by `flotilla up --platform libvirt`.
 *
 *   defineAndStart(desc)  pool, volumes, domain; started           (undone if any step fails)
 *   redefine(desc)        new domain XML for the same volumes; restarted if it was running
 *   destroy(cluster,node) domain, volumes, pool, files             (idempotent)
 *   list({cluster})       Flotilla's domains, from their <metadata>
 *
 * Files outside libvirt live in <state>/libvirt/<cluster>/<node>/: volumes/ (the pool's
 * directory) and console.log (the serial console).
 */
import { createHash } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import type { RenderedNode } from '../../config/render';
import type { ImageInfo } from '../image';
import type { Accelerator } from '../local/qemu-args';
import { writeFirstBoot } from '../local/qemu';
import { stateDir } from '../../cluster/state';
import {
  domainName,
  domainUuid,
  domainXml,
  FLOTILLA_NS,
  LIBVIRT_PREFIX,
  poolName,
  poolXml,
  serializeXml,
  volumeXml,
  type ClusterNicDesc,
  type DomainDesc,
} from './domain-xml';
import { DEFAULT_URI, virsh, virshMaybe, virshWithXml, type VirshOptions } from './virsh';
import { sleep } from '../../util/async';

/** The rendered documents a node boots from. */
export type FirstBootDocs = Pick<RenderedNode, 'node' | 'format' | 'userData' | 'metaData' | 'networkConfig'>;

export interface NodeImage {
  /** Base qcow2 the node's overlay is backed by (never written). */
  disk: string;
  kernel: string;
  initrd: string;
  /** Kernel command line the image expects. */
  cmdline: string;
  /** Virtual size of the base disk: the overlay's capacity. */
  virtualBytes: number;
}

/** What a domain needs of a cached image. */
export function nodeImageOf(image: ImageInfo): NodeImage {
  return { disk: image.disk, kernel: image.kernel, initrd: image.initrd, cmdline: image.cmdline, virtualBytes: image.sizes.virtualBytes };
}

/** The documents of a rendered node that go onto its first-boot volume. */
export function firstBootDocs(r: RenderedNode): FirstBootDocs {
  return { node: r.node, format: r.format, userData: r.userData, ...(r.metaData !== undefined ? { metaData: r.metaData } : {}), ...(r.networkConfig !== undefined ? { networkConfig: r.networkConfig } : {}) };
}

export interface LibvirtNodeDesc {
  cluster: string;
  node: string;
  /** libvirt connection; default qemu:///system. */
  uri?: string;
  /** Flotilla's state directory (default FLOTILLA_STATE_DIR or /var/lib/flotilla); files go to <stateDir>/libvirt/. */
  stateDir?: string;
  image: NodeImage;
  /** 'kvm' gives domain type kvm (host CPU), 'tcg' domain type qemu (qemu64 CPU). */
  accel: Accelerator;
  cpus: number;
  memoryMiB: number;
  firstBoot: FirstBootDocs;
  /** 127.0.0.1 port forwarded to the guest's SSH. */
  sshPort: number;
  primaryMac: string;
  /** The cluster L2 NIC (see domain-xml.ts). */
  cluster0?: ClusterNicDesc;
  extraCmdline?: string[];
  /** How many times the node was replaced (0 or absent: its first VM); gives a new domain UUID, hence a new machine ID. */
  generation?: number;
}

export interface LibvirtNodeInfo {
  domain: string;
  uuid: string;
  pool: string;
  cluster: string;
  node: string;
  /** virsh domstate: running, shut off, paused, ... */
  state: string;
  sshHost: '127.0.0.1';
  sshPort: number;
  consoleLog: string;
  dir: string;
  /** sha256 over what the volumes hold (image and first-boot documents). */
  configHash: string;
  /** Date.now() when the domain was (re)started by this call, if it was. */
  startedAt?: number;
}

export function libvirtDir(state?: string): string {
  return path.join(state ?? stateDir(), 'libvirt');
}

export function nodeDir(cluster: string, node: string, state?: string): string {
  domainName(cluster, node); // validates both labels
  return path.join(libvirtDir(state), cluster, node);
}

/** What the node's volumes are made from; a change here needs a new node (replacement), not a redefine. */
export function volumeConfigHash(desc: Pick<LibvirtNodeDesc, 'image' | 'firstBoot'>): string {
  const f = desc.firstBoot;
  return createHash('sha256')
    .update(JSON.stringify([desc.image.disk, desc.image.virtualBytes, f.format, f.userData, f.metaData ?? null, f.networkConfig ?? null]))
    .digest('hex');
}

function kernelCmdline(desc: LibvirtNodeDesc): string {
  // Ignition nodes: cloud-init must not run (it would find no seed and replace the host key Ignition wrote).
  return [desc.image.cmdline, ...(desc.firstBoot.format === 'ignition' ? ['cloud-init=disabled'] : []), ...(desc.extraCmdline ?? [])].join(' ');
}

function describeDomain(desc: LibvirtNodeDesc, volumes: DomainDesc['volumes']): DomainDesc {
  return {
    cluster: desc.cluster,
    node: desc.node,
    accel: desc.accel,
    cpus: desc.cpus,
    memoryMiB: desc.memoryMiB,
    kernel: desc.image.kernel,
    initrd: desc.image.initrd,
    cmdline: kernelCmdline(desc),
    volumes,
    consoleLog: path.join(nodeDir(desc.cluster, desc.node, desc.stateDir), 'console.log'),
    primaryMac: desc.primaryMac,
    sshPort: desc.sshPort,
    ...(desc.cluster0 ? { cluster0: desc.cluster0 } : {}),
    ...(desc.generation ? { generation: desc.generation } : {}),
    configHash: volumeConfigHash(desc),
  };
}

const DISK_VOLUME = 'disk.qcow2';
const SEED_VOLUME = 'seed.iso';
const IGNITION_VOLUME = 'config.ign';

function volumesFor(desc: LibvirtNodeDesc, ignitionPath?: string): DomainDesc['volumes'] {
  const pool = poolName(desc.cluster, desc.node);
  return desc.firstBoot.format === 'ignition'
    ? { pool, disk: DISK_VOLUME, ignitionFile: ignitionPath ?? path.join(nodeDir(desc.cluster, desc.node, desc.stateDir), 'volumes', IGNITION_VOLUME) }
    : { pool, disk: DISK_VOLUME, seed: SEED_VOLUME };
}

/** The domain XML `defineAndStart` would define (for diffs and tests). */
export function nodeDomainXml(desc: LibvirtNodeDesc): string {
  return serializeXml(domainXml(describeDomain(desc, volumesFor(desc))));
}

function tcpPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

function udpPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind({ address: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

async function checkPorts(desc: LibvirtNodeDesc): Promise<void> {
  if (!(await tcpPortFree(desc.sshPort))) {
    throw new FlotillaError('conflict', `node ${desc.node}: 127.0.0.1:${desc.sshPort} (its SSH forward) is already in use; choose another sshPortBase`);
  }
  for (const l of desc.cluster0?.links ?? []) {
    if (!(await udpPortFree(l.localPort))) throw new FlotillaError('conflict', `node ${desc.node}: UDP 127.0.0.1:${l.localPort} (cluster link) is already in use`);
  }
}

export async function domainState(name: string, opts: VirshOptions = {}): Promise<string | undefined> {
  return (await virshMaybe(['domstate', name], opts))?.trim();
}

async function poolExists(name: string, opts: VirshOptions): Promise<boolean> {
  return (await virshMaybe(['pool-info', name], opts)) !== undefined;
}

async function createVolumeFromFile(pool: string, name: string, file: string, opts: VirshOptions): Promise<string> {
  const size = fs.statSync(file).size;
  await virshWithXml('vol-create', [pool], serializeXml(volumeXml({ name, capacityBytes: Math.max(size, 1), format: 'raw' })), [], opts);
  await virsh(['vol-upload', '--pool', pool, name, file], opts);
  return (await virsh(['vol-path', '--pool', pool, name], opts)).trim();
}

/**
 * Creates the node's pool and volumes (overlay + first-boot medium), defines and starts the
 * domain. If any step fails, everything created so far is removed again.
 */
export async function defineAndStart(desc: LibvirtNodeDesc, progress: (step: string, seconds: number) => void = () => undefined): Promise<LibvirtNodeInfo> {
  const opts: VirshOptions = { uri: desc.uri ?? DEFAULT_URI };
  let t = Date.now();
  const step = (name: string): void => {
    const now = Date.now();
    progress(name, (now - t) / 1000);
    t = now;
  };
  const name = domainName(desc.cluster, desc.node);
  if (desc.firstBoot.node !== desc.node) throw new FlotillaError('invalid-input', `first-boot documents are for node ${desc.firstBoot.node}, not ${desc.node}`);
  if ((await domainState(name, opts)) !== undefined) {
    throw new FlotillaError('conflict', `libvirt domain ${name} already exists; remove it first (flotilla down, or virsh destroy/undefine)`);
  }
  const pool = poolName(desc.cluster, desc.node);
  if (await poolExists(pool, opts)) throw new FlotillaError('conflict', `libvirt storage pool ${pool} already exists without its domain; remove it first`);
  await checkPorts(desc);
  step('checks');
  const dir = nodeDir(desc.cluster, desc.node, desc.stateDir);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
    fs.chmodSync(dir, 0o711);
    const volDir = path.join(dir, 'volumes');
    await virshWithXml('pool-define', [], serializeXml(poolXml(pool, volDir)), [], opts);
    await virsh(['pool-build', pool], opts);
    await virsh(['pool-start', pool], opts);
    step('pool');
    await virshWithXml(
      'vol-create',
      [pool],
      serializeXml(volumeXml({ name: DISK_VOLUME, capacityBytes: desc.image.virtualBytes, format: 'qcow2', backing: { path: desc.image.disk, format: 'qcow2' } })),
      [],
      opts,
    );
    step('overlay volume');
    const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-firstboot-'));
    let ignitionPath: string | undefined;
    try {
      const fb = await writeFirstBoot(stage, { ...desc.firstBoot, hostPublicKey: '' });
      if (fb.kind === 'nocloud') await createVolumeFromFile(pool, SEED_VOLUME, fb.seedIso, opts);
      else if (fb.kind === 'ignition') ignitionPath = await createVolumeFromFile(pool, IGNITION_VOLUME, fb.configFile, opts);
    } finally {
      fs.rmSync(stage, { recursive: true, force: true });
    }
    step('first-boot volume');
    const consoleLog = path.join(dir, 'console.log');
    fs.rmSync(consoleLog, { force: true });
    const d = describeDomain(desc, volumesFor(desc, ignitionPath));
    await virshWithXml('define', [], serializeXml(domainXml(d)), [], opts);
    step('define');
    const startedAt = Date.now();
    await virsh(['start', name], opts);
    step('start');
    return { ...infoFor(desc, d), state: (await domainState(name, opts)) ?? 'unknown', startedAt };
  } catch (err) {
    await destroy(desc.cluster, desc.node, { uri: opts.uri, stateDir: desc.stateDir }).catch(() => undefined);
    throw err;
  }
}

function infoFor(desc: LibvirtNodeDesc, d: DomainDesc): Omit<LibvirtNodeInfo, 'state'> {
  return {
    domain: domainName(desc.cluster, desc.node),
    uuid: domainUuid(desc.cluster, desc.node, desc.generation),
    pool: d.volumes.pool,
    cluster: desc.cluster,
    node: desc.node,
    sshHost: '127.0.0.1',
    sshPort: desc.sshPort,
    consoleLog: d.consoleLog,
    dir: nodeDir(desc.cluster, desc.node, desc.stateDir),
    configHash: d.configHash,
  };
}

/** Waits until the domain is shut off; false on timeout. */
async function waitShutOff(name: string, timeoutMs: number, opts: VirshOptions): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await domainState(name, opts);
    if (s === undefined || s === 'shut off') return true;
    if (Date.now() > deadline) return false;
    await sleep(500);
  }
}

/**
 * Stops a running domain: ACPI shutdown, then a hard power-off after `graceMs`. Returns how:
 * 'shutdown', 'destroyed', or 'not-running'.
 */
export async function stopDomain(name: string, opts: VirshOptions & { graceMs?: number } = {}): Promise<'shutdown' | 'destroyed' | 'not-running'> {
  const s = await domainState(name, opts);
  if (s === undefined || s === 'shut off') return 'not-running';
  if ((opts.graceMs ?? 60_000) > 0 && s === 'running') {
    await virshMaybe(['shutdown', name], opts).catch(() => undefined);
    if (await waitShutOff(name, opts.graceMs ?? 60_000, opts)) return 'shutdown';
  }
  await virshMaybe(['destroy', name], opts).catch(async (err) => {
    if ((await domainState(name, opts)) !== 'shut off') throw err;
  });
  return 'destroyed';
}

/**
 * New domain XML for an existing node (CPUs, memory, accelerator, kernel arguments, ports). The
 * volumes stay: a changed first-boot config or base image is refused (that needs a new node).
 * A running domain is restarted (ACPI shutdown, hard stop after `graceMs`) to apply it.
 */
export async function redefine(desc: LibvirtNodeDesc, o: { graceMs?: number } = {}): Promise<LibvirtNodeInfo> {
  const opts: VirshOptions = { uri: desc.uri ?? DEFAULT_URI };
  const name = domainName(desc.cluster, desc.node);
  const current = await nodeInfo(desc.cluster, desc.node, { ...opts, stateDir: desc.stateDir });
  if (!current) throw new FlotillaError('not-found', `libvirt domain ${name} does not exist`);
  const d = describeDomain(desc, volumesFor(desc));
  if (current.configHash !== d.configHash) {
    throw new FlotillaError('conflict', `node ${desc.node}: its first-boot config or base image changed; that needs a new node (replace), not a redefinition`);
  }
  const wasRunning = current.state === 'running';
  if (current.sshPort !== desc.sshPort && !(await tcpPortFree(desc.sshPort))) {
    throw new FlotillaError('conflict', `node ${desc.node}: 127.0.0.1:${desc.sshPort} is already in use`);
  }
  await virshWithXml('define', [], serializeXml(domainXml(d)), [], opts);
  let startedAt: number | undefined;
  if (wasRunning) {
    await stopDomain(name, { ...opts, graceMs: o.graceMs ?? 60_000 });
    startedAt = Date.now();
    await virsh(['start', name], opts);
  }
  return { ...infoFor(desc, d), state: (await domainState(name, opts)) ?? 'unknown', ...(startedAt !== undefined ? { startedAt } : {}) };
}

/** Removes the node's domain, volumes, pool and files. Idempotent; reports what existed. */
export async function destroy(cluster: string, node: string, o: { uri?: string; stateDir?: string; graceMs?: number } = {}): Promise<{ domain: boolean; pool: boolean }> {
  const opts: VirshOptions = { uri: o.uri ?? DEFAULT_URI };
  const name = domainName(cluster, node);
  const pool = poolName(cluster, node);
  let hadDomain = false;
  if ((await domainState(name, opts)) !== undefined) {
    hadDomain = true;
    await stopDomain(name, { ...opts, graceMs: o.graceMs ?? 0 });
    await virshMaybe(['undefine', name], opts);
  }
  let hadPool = false;
  if (await poolExists(pool, opts)) {
    hadPool = true;
    const info = (await virsh(['pool-info', pool], opts)).toLowerCase();
    if (!/state:\s*running/.test(info)) await virshMaybe(['pool-start', pool], opts).catch(() => undefined);
    const vols = (await virshMaybe(['vol-list', '--pool', pool], opts)) ?? '';
    for (const line of vols.split('\n')) {
      const vol = line.trim().split(/\s+/)[0];
      if (vol) await virshMaybe(['vol-delete', '--pool', pool, vol], opts);
    }
    await virshMaybe(['pool-destroy', pool], opts).catch(() => undefined);
    await virshMaybe(['pool-delete', pool], opts).catch(() => undefined);
    await virshMaybe(['pool-undefine', pool], opts);
  }
  const dir = nodeDir(cluster, node, o.stateDir);
  fs.rmSync(dir, { recursive: true, force: true });
  try {
    fs.rmdirSync(path.dirname(dir));
  } catch {
    /* other nodes of the cluster remain, or it is gone already */
  }
  return { domain: hadDomain, pool: hadPool };
}

/** Where the system libvirtd keeps a running domain's QEMU PID. */
export function libvirtPidFile(domain: string): string {
  return path.join('/run/libvirt/qemu', `${domain}.pid`);
}

/**
 * The PID of the domain's QEMU if it is alive. Checked through /proc (argv holds
 * `-name guest=<domain>,...`), so a stale pidfile or a reused PID does not count. Synchronous and
 * cheap: `flotilla ls`/`status` ask it for every node.
 */
export function libvirtQemuPid(domain: string, pidFile = libvirtPidFile(domain)): number | undefined {
  try {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return undefined;
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const name = argv.indexOf('-name');
    const value = name >= 0 ? (argv[name + 1] ?? '') : '';
    return value === `guest=${domain}` || value.startsWith(`guest=${domain},`) ? pid : undefined;
  } catch {
    return undefined;
  }
}

function parseMetadata(xml: string): { cluster: string; node: string; config: string } | undefined {
  // Written by domainXml: attribute values are [a-z0-9-] labels and a hex digest, so no entities occur.
  const attr = (a: string): string | undefined => new RegExp(`\\s${a}=(["'])([a-z0-9-]+)\\1`).exec(xml)?.[2];
  const cluster = attr('cluster');
  const node = attr('node');
  const config = attr('config');
  return cluster && node && config ? { cluster, node, config } : undefined;
}

/** The node's domain as libvirt has it, or undefined if there is none. */
export async function nodeInfo(cluster: string, node: string, opts: VirshOptions & { stateDir?: string } = {}): Promise<LibvirtNodeInfo | undefined> {
  const name = domainName(cluster, node);
  const state = await domainState(name, opts);
  if (state === undefined) return undefined;
  const meta = parseMetadata((await virshMaybe(['metadata', name, FLOTILLA_NS], opts)) ?? '');
  if (!meta || meta.cluster !== cluster || meta.node !== node) {
    throw new FlotillaError('conflict', `libvirt domain ${name} exists but was not created by Flotilla for ${cluster}/${node}`);
  }
  const xml = (await virsh(['dumpxml', '--inactive', name], opts)) ?? '';
  const port = /hostfwd=tcp:127\.0\.0\.1:(\d+)-:22/.exec(xml)?.[1];
  const uuid = /<uuid>([0-9a-f-]{36})<\/uuid>/.exec(xml)?.[1];
  const dir = nodeDir(cluster, node, opts.stateDir);
  return {
    domain: name,
    uuid: uuid ?? domainUuid(cluster, node),
    pool: poolName(cluster, node),
    cluster,
    node,
    state,
    sshHost: '127.0.0.1',
    sshPort: Number(port ?? 0),
    consoleLog: path.join(dir, 'console.log'),
    dir,
    configHash: meta.config,
  };
}

/** Flotilla's domains (all, or one cluster's), with their state. */
export async function list(o: { cluster?: string; uri?: string } = {}): Promise<Array<{ domain: string; cluster: string; node: string; state: string }>> {
  const opts: VirshOptions = { uri: o.uri ?? DEFAULT_URI };
  const names = (await virsh(['list', '--all', '--name'], opts)).split('\n').map((s) => s.trim()).filter((s) => s.startsWith(LIBVIRT_PREFIX));
  const out: Array<{ domain: string; cluster: string; node: string; state: string }> = [];
  for (const name of names) {
    const meta = parseMetadata((await virshMaybe(['metadata', name, FLOTILLA_NS], opts)) ?? '');
    if (!meta || (o.cluster !== undefined && meta.cluster !== o.cluster)) continue;
    const state = await domainState(name, opts);
    if (state !== undefined) out.push({ domain: name, cluster: meta.cluster, node: meta.node, state });
  }
  return out;
}
