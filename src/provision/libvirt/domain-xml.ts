/**
 * libvirt documents for Flotilla nodes, built as data (xml.ts serialises them). Pure: no I/O,
 * so every element and QEMU argument is unit-tested (test/provision/libvirt-xml.test.ts).
 *
 * Networking never touches the root namespace's real interfaces (the project's network rule):
 *
 *  - primary NIC: QEMU user-mode networking with `restrict=on` (the guest reaches nothing
 *    outside QEMU) and one forward, 127.0.0.1:sshPort -> guest:22. libvirt's `<interface
 *    type='user'>` cannot set `restrict=on`, so the netdev is passed through `<qemu:commandline>`
 *    with a fixed PCI address (without one it clashes with the disks' slots).
 *  - cluster NIC: an L2 segment made of QEMU's own parts, unicast UDP on 127.0.0.1 only: the
 *    first node's NIC sits on an emulated hub (`-netdev hubport`) with one `dgram` link to every
 *    other node; the other nodes' NICs are wired straight to their link. A star: frames between
 *    two other nodes pass through the first node's QEMU (which forwards them even while its
 *    guest is busy, but not while that VM is off). No bridge, no multicast, no libvirt network.
 */
import { createHash } from 'node:crypto';
import { FlotillaError } from '../../errors';
import type { Accelerator } from '../local/qemu-args';
import { el, serializeXml, textEl, type XmlElement } from './xml';

export const QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0';
/** Namespace of Flotilla's `<metadata>` element in domain XML (identifies our domains). */
export const FLOTILLA_NS = 'https://flotilla.invalid/libvirt/node/1';
/** Prefix of every libvirt object (domain, pool) Flotilla creates. */
export const LIBVIRT_PREFIX = 'flotilla-';

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

/** One point-to-point UDP link of the cluster L2 segment, both ends on 127.0.0.1. */
export interface DgramLink {
  localPort: number;
  remotePort: number;
}

export interface ClusterNicDesc {
  mac: string;
  /** True on the node whose NIC sits on the hub (the first node); false: wired to its only link. */
  hub: boolean;
  links: DgramLink[];
}

/** Disk and first-boot sources, as libvirt storage volumes in the node's pool. */
export interface DomainVolumes {
  pool: string;
  disk: string;
  /** NoCloud seed ISO volume (cloud-config), attached read-only as the second virtio disk. */
  seed?: string;
  /** Ignition config, by path (libvirt's fw_cfg entry takes a file), as opt/com.coreos/config. */
  ignitionFile?: string;
}

export interface DomainDesc {
  cluster: string;
  node: string;
  accel: Accelerator;
  cpus: number;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  cmdline: string;
  volumes: DomainVolumes;
  consoleLog: string;
  primaryMac: string;
  sshPort: number;
  cluster0?: ClusterNicDesc;
  /** How many times the node was replaced (0: its first VM); part of the domain UUID. */
  generation?: number;
  /** Hash of everything that went into the node's volumes (first-boot config, base image), kept in the metadata. */
  configHash: string;
}

function check(ok: boolean, msg: string): void {
  if (!ok) throw new FlotillaError('invalid-input', msg);
}

function checkPort(what: string, p: number): number {
  check(Number.isInteger(p) && p >= 1024 && p <= 65535, `${what}: not a port from 1024 to 65535: ${p}`);
  return p;
}

/** QEMU option values are ','-separated; refuse anything that would need escaping. */
function optSafe(what: string, v: string): string {
  check(v.length > 0 && !/[,\n\0=]/.test(v), `${what}: ${JSON.stringify(v)} cannot be used in a QEMU option`);
  return v;
}

export function domainName(cluster: string, node: string): string {
  check(LABEL.test(cluster), `cluster name ${JSON.stringify(cluster)} is not a DNS label`);
  check(LABEL.test(node), `node name ${JSON.stringify(node)} is not a DNS label`);
  return `${LIBVIRT_PREFIX}${cluster}-${node}`;
}

/** The storage pool holding one node's volumes (one pool per node: nodes come and go independently). */
export function poolName(cluster: string, node: string): string {
  return domainName(cluster, node);
}

/**
 * A stable UUID (RFC 4122 layout, version 5-style from sha256) so redefining keeps the domain's
 * identity. `generation` counts replacements of the node (`flotilla replace`): a new VM is a new
 * machine, and systemd derives a VM's /etc/machine-id from this UUID, so it must change with it.
 */
export function domainUuid(cluster: string, node: string, generation = 0): string {
  const h = createHash('sha256').update(`flotilla-libvirt\0${cluster}\0${node}${generation > 0 ? `\0${generation}` : ''}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/**
 * The cluster L2 wiring for `count` nodes: node 0 is the hub with links to nodes 1..count-1;
 * link i uses ports base+2i (hub side) and base+2i+1 (node i side), all on 127.0.0.1.
 */
export function clusterLinks(count: number, basePort: number): Array<{ hub: boolean; links: DgramLink[] }> {
  check(Number.isInteger(count) && count >= 1, `node count must be at least 1, got ${count}`);
  checkPort('cluster link base port', basePort);
  checkPort('cluster link last port', basePort + 2 * count);
  const out: Array<{ hub: boolean; links: DgramLink[] }> = [{ hub: true, links: [] }];
  for (let i = 1; i < count; i++) {
    const hubSide = basePort + 2 * i;
    const nodeSide = hubSide + 1;
    out[0]!.links.push({ localPort: hubSide, remotePort: nodeSide });
    out.push({ hub: false, links: [{ localPort: nodeSide, remotePort: hubSide }] });
  }
  return out;
}

/** Ports derived from the cluster name: SSH forwards and L2 links, away from common services. */
export function defaultPorts(cluster: string): { sshPortBase: number; linkPortBase: number } {
  const h = createHash('sha256').update(`flotilla-libvirt-ports\0${cluster}`).digest();
  // 200 blocks of 100 ports in 40000-59999; SSH uses the first 32, links the next 66.
  const block = 40000 + (h.readUInt16BE(0) % 200) * 100;
  return { sshPortBase: block, linkPortBase: block + 32 };
}

/** The QEMU arguments for both NICs (passed through <qemu:commandline>). */
export function networkArgs(d: Pick<DomainDesc, 'primaryMac' | 'sshPort' | 'cluster0'>): string[] {
  check(MAC.test(d.primaryMac), `primary MAC ${JSON.stringify(d.primaryMac)} is not a lower-case MAC address`);
  const args = [
    '-netdev', `user,id=hn0,restrict=on,hostfwd=tcp:127.0.0.1:${checkPort('ssh port', d.sshPort)}-:22`,
    '-device', `virtio-net-pci,netdev=hn0,mac=${d.primaryMac},bus=pci.0,addr=0x10`,
  ];
  const c = d.cluster0;
  if (c) {
    check(MAC.test(c.mac), `cluster MAC ${JSON.stringify(c.mac)} is not a lower-case MAC address`);
    check(c.hub || c.links.length === 1, 'a node that is not the hub has exactly one cluster link');
    const dgram = (id: string, l: DgramLink): string =>
      `dgram,id=${id},local.type=inet,local.host=127.0.0.1,local.port=${checkPort('link port', l.localPort)},remote.type=inet,remote.host=127.0.0.1,remote.port=${checkPort('link port', l.remotePort)}`;
    if (c.hub) {
      args.push('-netdev', 'hubport,id=cl0,hubid=0');
      c.links.forEach((l, i) => args.push('-netdev', dgram(`cl0l${i}`, l), '-netdev', `hubport,id=cl0h${i},hubid=0,netdev=cl0l${i}`));
    } else {
      args.push('-netdev', dgram('cl0', c.links[0]!));
    }
    args.push('-device', `virtio-net-pci,netdev=cl0,mac=${c.mac},bus=pci.0,addr=0x11`);
  }
  return args;
}

/** The domain definition. */
export function domainXml(d: DomainDesc): XmlElement {
  const name = domainName(d.cluster, d.node);
  check(Number.isInteger(d.cpus) && d.cpus >= 1 && d.cpus <= 64, `cpus: ${d.cpus}`);
  check(Number.isInteger(d.memoryMiB) && d.memoryMiB >= 128, `memoryMiB: ${d.memoryMiB} (at least 128)`);
  check(!/[\n\0]/.test(d.cmdline), 'kernel command line contains a newline');
  check(/^[0-9a-f]{64}$/.test(d.configHash), 'configHash must be a sha256 hex digest');
  check((d.volumes.seed === undefined) !== (d.volumes.ignitionFile === undefined), 'give exactly one first-boot source: a seed volume or an Ignition file');
  if (d.volumes.ignitionFile !== undefined) optSafe('ignition file', d.volumes.ignitionFile);
  const kvm = d.accel === 'kvm';
  const disk = (volume: string, type: 'qcow2' | 'raw', dev: string, readonly: boolean): XmlElement =>
    el('disk', { type: 'volume', device: 'disk' },
      el('driver', { name: 'qemu', type, ...(type === 'qcow2' ? { cache: 'unsafe', discard: 'unmap' } : {}) }),
      el('source', { pool: d.volumes.pool, volume }),
      el('target', { dev, bus: 'virtio' }),
      readonly && el('readonly'));
  return el('domain', { type: kvm ? 'kvm' : 'qemu', 'xmlns:qemu': QEMU_NS },
    textEl('name', name),
    textEl('uuid', domainUuid(d.cluster, d.node, d.generation)),
    textEl('title', `Flotilla node ${d.node} of cluster ${d.cluster}`),
    el('metadata', {},
      el('flotilla:node', { 'xmlns:flotilla': FLOTILLA_NS, cluster: d.cluster, node: d.node, config: d.configHash })),
    textEl('memory', d.memoryMiB, { unit: 'MiB' }),
    textEl('vcpu', d.cpus, { placement: 'static' }),
    d.volumes.ignitionFile !== undefined &&
      el('sysinfo', { type: 'fwcfg' }, el('entry', { name: 'opt/com.coreos/config', file: d.volumes.ignitionFile })),
    el('os', {},
      textEl('type', 'hvm', { arch: 'x86_64', machine: 'pc' }),
      textEl('kernel', d.kernel),
      textEl('initrd', d.initrd),
      textEl('cmdline', d.cmdline)),
    el('features', {}, el('acpi')),
    // qemu64 under TCG: `max` emulates more and costs ~30% boot time (see the local launcher); KVM runs the host's CPU.
    kvm ? el('cpu', { mode: 'host-passthrough', check: 'none' }) : el('cpu', { mode: 'custom', match: 'exact', check: 'none' }, textEl('model', 'qemu64', { fallback: 'forbid' })),
    el('clock', { offset: 'utc' }),
    textEl('on_poweroff', 'destroy'),
    textEl('on_reboot', 'restart'),
    textEl('on_crash', 'destroy'),
    el('devices', {},
      disk(d.volumes.disk, 'qcow2', 'vda', false),
      d.volumes.seed !== undefined && disk(d.volumes.seed, 'raw', 'vdb', true),
      el('controller', { type: 'usb', model: 'none' }),
      el('serial', { type: 'file' }, el('source', { path: d.consoleLog }), el('target', { port: 0 })),
      el('rng', { model: 'virtio' }, textEl('backend', '/dev/urandom', { model: 'random' })),
      el('memballoon', { model: 'none' })),
    el('qemu:commandline', {}, networkArgs(d).map((value) => el('qemu:arg', { value }))));
}

/** A directory storage pool for one node's volumes. */
export function poolXml(name: string, dir: string): XmlElement {
  return el('pool', { type: 'dir' },
    textEl('name', name),
    el('target', {}, textEl('path', dir), el('permissions', {}, textEl('mode', '0711'))));
}

/** A volume: raw (seed, Ignition config) or a qcow2 overlay on `backing`. */
export function volumeXml(v: { name: string; capacityBytes: number; format: 'raw' | 'qcow2'; backing?: { path: string; format: 'qcow2' } }): XmlElement {
  check(/^[A-Za-z0-9._-]+$/.test(v.name), `volume name ${JSON.stringify(v.name)}`);
  check(Number.isInteger(v.capacityBytes) && v.capacityBytes > 0, `volume capacity ${v.capacityBytes}`);
  return el('volume', { type: 'file' },
    textEl('name', v.name),
    textEl('capacity', v.capacityBytes, { unit: 'bytes' }),
    el('target', {}, el('format', { type: v.format }), el('permissions', {}, textEl('mode', '0600'))),
    v.backing && el('backingStore', {}, textEl('path', v.backing.path), el('format', { type: v.backing.format })));
}

export { serializeXml };
