/**
 * QEMU command lines for Flotilla nodes, built from a typed description. Pure: no I/O, so
 * every flag is unit-tested (test/provision/qemu-args.test.ts).
 */
import { FlotillaError } from '../../errors';
import { CLONE_NOCLOUD_FW_CFG } from '../image/recipe';

export type Accelerator = 'kvm' | 'tcg';

export interface QemuNetworkDesc {
  /** The node's uplink NIC (user-mode, restricted: no traffic leaves the host). */
  primaryMac: string;
  /** Guest port 22 is forwarded from 127.0.0.1:sshPort (in the namespace QEMU runs in). */
  sshPort: number;
  /** The cluster L2 NIC: a datagram multicast netdev on 127.0.0.1. */
  cluster?: { mac: string; group: string; port: number };
}

export type FirstBootConfig =
  /** NoCloud seed ISO (volume id CIDATA): user-data, meta-data, network-config. */
  | { kind: 'nocloud'; seedIso: string }
  /** Ignition config passed through fw_cfg as opt/com.coreos/config. */
  | { kind: 'ignition'; configFile: string }
  /**
   * A snapshot clone's NoCloud seed as fw_cfg files (opt/flotilla/nocloud/<name>), which the
   * image's clone-point copies to /var/lib/cloud/seed/nocloud: name (user-data, ...) -> path.
   */
  | { kind: 'nocloud-fw-cfg'; files: Record<string, string> }
  /** A snapshot template: no first-boot config; it waits at the clone point. */
  | { kind: 'none' };

/** A file QEMU passes to the guest through fw_cfg (readable in /sys/firmware/qemu_fw_cfg/by_name/<name>/raw). */
export interface FwCfgFile {
  name: string;
  file: string;
}

export interface QemuNodeDesc {
  /** Used in QEMU's -name (process name and window title). */
  name: string;
  accel: Accelerator;
  cpus: number;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  cmdline: string;
  /** The node's qcow2 overlay. */
  disk: string;
  firstBoot: FirstBootConfig;
  network: QemuNetworkDesc;
  consoleLog: string;
  pidFile: string;
  /** Detach once started (QEMU writes the pidfile, the launcher exits). */
  daemonize?: boolean;
  /** A QMP control socket (unix path): snapshot save and restore, link and power faults (`flotilla chaos`). */
  qmpSocket?: string;
  /** VM generation ID (`-device vmgenid`), in snapshot templates and their clones (each its own). */
  vmgenid?: string;
  /** fw_cfg files besides the first-boot config (a clone's opt/flotilla/clone). */
  fwCfg?: FwCfgFile[];
  /** Restore this saved VM state (a template's) instead of booting the kernel. */
  incoming?: string;
}

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

/** QEMU's option syntax uses ',' as separator (',,' escapes it); refuse values that would need escaping. */
function optValue(what: string, v: string): string {
  if (v.length === 0 || /[,\n\0=]/.test(v)) throw new FlotillaError('invalid-input', `${what}: ${JSON.stringify(v)} cannot be used in a QEMU option (no ',', '=', newline)`);
  return v;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** fw_cfg names: QEMU allows 55 bytes; user entries live below opt/. */
const FW_CFG_NAME = /^opt\/[a-z0-9._-]+(\/[a-z0-9._-]+)*$/;

function fwCfgArg(f: FwCfgFile): string {
  if (!FW_CFG_NAME.test(f.name) || f.name.length > 55) throw new FlotillaError('invalid-input', `fw_cfg name ${JSON.stringify(f.name)}: not a name below opt/ of at most 55 characters`);
  return `name=${f.name},file=${optValue(`fw_cfg file ${f.name}`, f.file)}`;
}

function checkPort(what: string, p: number): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new FlotillaError('invalid-input', `${what}: not a port: ${p}`);
  return p;
}

/** The argv (without the qemu binary) that boots one node. */
export function qemuArgs(d: QemuNodeDesc): string[] {
  if (!MAC.test(d.network.primaryMac)) throw new FlotillaError('invalid-input', `primary MAC ${JSON.stringify(d.network.primaryMac)} is not a lower-case MAC address`);
  if (d.network.cluster && !MAC.test(d.network.cluster.mac)) throw new FlotillaError('invalid-input', `cluster MAC ${JSON.stringify(d.network.cluster.mac)} is not a lower-case MAC address`);
  if (!Number.isInteger(d.cpus) || d.cpus < 1 || d.cpus > 64) throw new FlotillaError('invalid-input', `cpus: ${d.cpus}`);
  if (!Number.isInteger(d.memoryMiB) || d.memoryMiB < 128) throw new FlotillaError('invalid-input', `memoryMiB: ${d.memoryMiB} (at least 128)`);
  if (/\n/.test(d.cmdline)) throw new FlotillaError('invalid-input', 'kernel command line contains a newline');
  const args = [
    '-name', `${optValue('name', d.name)},process=${d.name}`,
    '-machine', `pc,accel=${d.accel}`,
    // qemu64 under TCG: -cpu max emulates more and costs ~30% boot time; KVM runs the host's CPU.
    '-cpu', d.accel === 'kvm' ? 'host' : 'qemu64',
    '-smp', String(d.cpus),
    '-m', String(d.memoryMiB),
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-monitor', 'none',
    '-serial', `file:${optValue('console log', d.consoleLog)}`,
    '-pidfile', d.pidFile,
    '-kernel', d.kernel,
    '-initrd', optValue('initrd', d.initrd),
    '-append', d.cmdline,
    // cache=unsafe: the overlay is scratch; flushes are not waited for (faster, not crash-safe for the host).
    '-drive', `file=${optValue('disk', d.disk)},if=virtio,format=qcow2,cache=unsafe,discard=unmap`,
    '-device', 'virtio-rng-pci',
  ];
  if (d.vmgenid !== undefined) {
    if (!UUID.test(d.vmgenid)) throw new FlotillaError('invalid-input', `vmgenid ${JSON.stringify(d.vmgenid)} is not a lower-case UUID`);
    args.push('-device', `vmgenid,guid=${d.vmgenid}`);
  }
  const fb = d.firstBoot;
  if (fb.kind === 'nocloud') {
    args.push('-drive', `file=${optValue('seed', fb.seedIso)},if=virtio,format=raw,readonly=on`);
  } else if (fb.kind === 'ignition') {
    args.push('-fw_cfg', `name=opt/com.coreos/config,file=${optValue('ignition config', fb.configFile)}`);
  } else if (fb.kind === 'nocloud-fw-cfg') {
    for (const [name, file] of Object.entries(fb.files)) {
      if (!['user-data', 'meta-data', 'network-config'].includes(name)) throw new FlotillaError('invalid-input', `NoCloud seed file ${JSON.stringify(name)}: not user-data, meta-data or network-config`);
      args.push('-fw_cfg', fwCfgArg({ name: `${CLONE_NOCLOUD_FW_CFG}/${name}`, file }));
    }
  }
  for (const f of d.fwCfg ?? []) args.push('-fw_cfg', fwCfgArg(f));
  const n = d.network;
  args.push(
    '-netdev', `user,id=uplink,restrict=on,hostfwd=tcp:127.0.0.1:${checkPort('ssh port', n.sshPort)}-:22`,
    '-device', `virtio-net-pci,netdev=uplink,mac=${n.primaryMac}`,
  );
  if (n.cluster) {
    const c = n.cluster;
    if (!/^2(2[4-9]|3[0-9])(\.\d{1,3}){3}$/.test(c.group)) throw new FlotillaError('invalid-input', `cluster multicast group ${JSON.stringify(c.group)} is not an IPv4 multicast address`);
    const port = checkPort('cluster port', c.port);
    args.push(
      '-netdev',
      `dgram,id=cluster,remote.type=inet,remote.host=${c.group},remote.port=${port},local.type=inet,local.host=127.0.0.1,local.port=${port}`,
      '-device', `virtio-net-pci,netdev=cluster,mac=${c.mac}`,
    );
  }
  // QMP on a unix socket only (never TCP): link up/down of the cluster NIC for chaos faults.
  if (d.qmpSocket !== undefined) args.push('-qmp', `unix:${optValue('qmp socket', d.qmpSocket)},server=on,wait=off`);
  if (d.incoming !== undefined) {
    // exec: runs under /bin/sh: only plain absolute paths (QEMU 7.2 has no file: migration).
    if (!/^\/[A-Za-z0-9._/+-]+$/.test(d.incoming)) throw new FlotillaError('invalid-input', `saved VM state path ${JSON.stringify(d.incoming)}: only letters, digits and . _ / + - are allowed`);
    args.push('-incoming', `exec:cat ${d.incoming}`);
  }
  if (d.daemonize) args.push('-daemonize');
  return args;
}

/** A multicast group and port for a cluster's L2 network, derived from its name (239/8: administratively scoped). */
export function clusterMulticast(cluster: string): { group: string; port: number } {
  let h = 2166136261;
  for (const ch of Buffer.from(cluster, 'utf8')) {
    h ^= ch;
    h = Math.imul(h, 16777619) >>> 0;
  }
  return { group: `239.${(h >>> 24) & 0xff}.${(h >>> 16) & 0xff}.${Math.max(1, (h >>> 8) & 0xff)}`, port: 20000 + (h % 40000) };
}

/** The network namespace a cluster's QEMU processes run in (created by Flotilla, removed with the cluster). */
export function clusterNamespace(cluster: string): string {
  return `flotilla-${cluster}`;
}
