/**
 * Starting and stopping node VMs: per-node qcow2 overlays, first-boot media, QEMU inside the
 * cluster's network namespace, and stopping by pidfile (only a process that is verifiably
 * our QEMU is ever signalled). The command line itself comes from qemu-args.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import type { RenderedNode } from '../../config/render';
import { QEMU_BIN } from './accel';
import { runTool } from '../exec';
import { qemuArgs, type FirstBootConfig, type QemuNodeDesc } from './qemu-args';
import { sleep } from '../../util/async';

export { probeAccelerator, type AccelProbe } from './accel';
export { clusterMulticast, clusterNamespace, qemuArgs, type Accelerator, type QemuNodeDesc } from './qemu-args';

const NETNS_PREFIX = 'flotilla-';

function checkNamespace(ns: string): void {
  if (!ns.startsWith(NETNS_PREFIX) || !/^[a-z0-9-]{1,64}$/.test(ns)) throw new FlotillaError('invalid-input', `not a Flotilla network namespace name: ${JSON.stringify(ns)}`);
}

export function namespaceExists(ns: string): boolean {
  return fs.existsSync(path.join('/run/netns', ns));
}

/** Creates the cluster's network namespace (idempotent) with only loopback, up. */
export async function createNamespace(ns: string): Promise<void> {
  checkNamespace(ns);
  if (!namespaceExists(ns)) await runTool('ip', ['netns', 'add', ns]);
  await runTool('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
}

/** Deletes a namespace Flotilla created. Processes still inside keep it alive until they exit. */
export async function deleteNamespace(ns: string): Promise<void> {
  checkNamespace(ns);
  if (namespaceExists(ns)) await runTool('ip', ['netns', 'delete', ns]);
}

/** A copy-on-write overlay on the image's base disk. */
export async function createOverlay(baseDisk: string, overlay: string): Promise<void> {
  fs.rmSync(overlay, { force: true });
  await runTool('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', baseDisk, overlay]);
}

/**
 * The node's first-boot medium: a NoCloud seed ISO (volume id CIDATA) for cloud-config, or the
 * Ignition config file passed through fw_cfg. Written 0600: user-data holds the host key.
 */
export async function writeFirstBoot(dir: string, rendered: RenderedNode): Promise<FirstBootConfig> {
  fs.mkdirSync(dir, { recursive: true });
  if (rendered.format === 'ignition') {
    const file = path.join(dir, 'config.ign');
    fs.writeFileSync(file, rendered.userData, { mode: 0o600 });
    return { kind: 'ignition', configFile: file };
  }
  const src = path.join(dir, 'seed');
  fs.rmSync(src, { recursive: true, force: true });
  fs.mkdirSync(src, { mode: 0o700 });
  fs.writeFileSync(path.join(src, 'user-data'), rendered.userData, { mode: 0o600 });
  fs.writeFileSync(path.join(src, 'meta-data'), rendered.metaData ?? `instance-id: ${rendered.node}\n`, { mode: 0o600 });
  const files = ['user-data', 'meta-data'];
  if (rendered.networkConfig) {
    fs.writeFileSync(path.join(src, 'network-config'), rendered.networkConfig, { mode: 0o600 });
    files.push('network-config');
  }
  const iso = path.join(dir, 'seed.iso');
  await runTool('genisoimage', ['-quiet', '-output', iso, '-volid', 'CIDATA', '-joliet', '-rock', ...files], { cwd: src });
  fs.chmodSync(iso, 0o600);
  fs.rmSync(src, { recursive: true, force: true });
  return { kind: 'nocloud', seedIso: iso };
}

/**
 * A snapshot clone's first-boot medium: the Ignition config as for a cold boot, or the NoCloud
 * files themselves (seed/, 0700; files 0600), which QEMU passes through fw_cfg and the image's
 * clone-point copies to /var/lib/cloud/seed/nocloud before cloud-init starts.
 */
export async function writeCloneFirstBoot(dir: string, rendered: RenderedNode): Promise<FirstBootConfig> {
  if (rendered.format === 'ignition') return writeFirstBoot(dir, rendered);
  fs.mkdirSync(dir, { recursive: true });
  const src = path.join(dir, 'seed');
  fs.rmSync(src, { recursive: true, force: true });
  fs.mkdirSync(src, { mode: 0o700 });
  const files: Record<string, string> = {};
  const put = (name: string, text: string): void => {
    files[name] = path.join(src, name);
    fs.writeFileSync(files[name], text, { mode: 0o600 });
  };
  put('user-data', rendered.userData);
  put('meta-data', rendered.metaData ?? `instance-id: ${rendered.node}\n`);
  if (rendered.networkConfig) put('network-config', rendered.networkConfig);
  return { kind: 'nocloud-fw-cfg', files };
}

/** QEMU children started by this process, so that their exit is reaped and observable. */
const children = new Map<number, ChildProcess>();

export interface LaunchedNode {
  pid: number;
  /** Date.now() when QEMU was spawned. */
  launchedAt: number;
  /** Resolves when QEMU exits (only for VMs this process started). */
  exited: Promise<number | string>;
}

/** Starts QEMU for one node (inside `netns` when given) and waits until it has written its pidfile. */
export async function launchNode(desc: QemuNodeDesc, opts: { netns?: string; logFile: string; startTimeoutMs?: number }): Promise<LaunchedNode> {
  fs.rmSync(desc.pidFile, { force: true });
  const argv = qemuArgs({ ...desc, daemonize: false });
  if (opts.netns) checkNamespace(opts.netns);
  const cmd = opts.netns ? 'ip' : QEMU_BIN;
  const args = opts.netns ? ['netns', 'exec', opts.netns, QEMU_BIN, ...argv] : argv;
  const fd = fs.openSync(opts.logFile, 'a');
  fs.writeSync(fd, `${new Date().toISOString()} ${cmd} ${args.join(' ')}\n`);
  const launchedAt = Date.now();
  // `ip netns exec` execs QEMU in place: the child's PID is QEMU's. Detached: its own process
  // group, so a Ctrl-C aimed at Flotilla does not reach the VMs.
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  if (child.pid === undefined) throw new FlotillaError('external', `cannot start ${cmd}: ${(await spawnError).message}`);
  child.unref();
  children.set(child.pid, child);
  void exited.then(() => children.delete(child.pid!));
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = fs.readFileSync(opts.logFile, 'utf8').trim().split('\n').slice(-8).join('\n');
      throw new FlotillaError('external', `QEMU for ${desc.name} exited at start (${child.exitCode ?? child.signalCode}); ${opts.logFile}:\n${log}`);
    }
    try {
      const pid = Number(fs.readFileSync(desc.pidFile, 'utf8').trim());
      if (pid === child.pid) return { pid, launchedAt, exited };
    } catch {
      /* not yet written */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new FlotillaError('timeout', `QEMU for ${desc.name} wrote no pidfile within ${opts.startTimeoutMs ?? 30_000} ms`);
    }
    await sleep(20);
  }
}

/** The argv of a live process, or undefined if there is none (or it is a zombie). */
function procCmdline(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return undefined;
    const raw = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((s, i, a) => i < a.length - 1 || s !== '');
  } catch {
    return undefined;
  }
}

/** True if `pid` is a QEMU process started with `-pidfile pidFile`. */
export function isOurQemu(pid: number, pidFile: string): boolean {
  const argv = procCmdline(pid);
  if (!argv || !argv[0] || !path.basename(argv[0]).startsWith('qemu-system')) return false;
  const i = argv.indexOf('-pidfile');
  return i >= 0 && path.resolve(argv[i + 1] ?? '') === path.resolve(pidFile);
}

/** The PID recorded in a pidfile if it is still our QEMU. */
export function runningPid(pidFile: string): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 1 && isOurQemu(pid, pidFile) ? pid : undefined;
}

/**
 * Stops the VM whose pidfile this is: SIGTERM, then SIGKILL after `graceMs`, after checking
 * through /proc that the PID is QEMU started with this very pidfile (a stale pidfile whose PID
 * was reused is left alone). Returns whether a VM was running.
 */
export async function stopNode(pidFile: string, opts: { graceMs?: number } = {}): Promise<boolean> {
  const pid = runningPid(pidFile);
  if (pid === undefined) {
    fs.rmSync(pidFile, { force: true });
    return false;
  }
  const gone = (): boolean => !isOurQemu(pid, pidFile);
  const signal = (sig: NodeJS.Signals): void => {
    try {
      process.kill(pid, sig);
    } catch {
      /* exited meanwhile */
    }
  };
  signal('SIGTERM');
  const graceMs = opts.graceMs ?? 5000;
  const t0 = Date.now();
  let killed = false;
  while (!gone()) {
    if (!killed && Date.now() - t0 > graceMs) {
      signal('SIGKILL');
      killed = true;
    }
    if (Date.now() - t0 > graceMs + 10_000) throw new FlotillaError('external', `QEMU PID ${pid} (${pidFile}) did not exit after SIGKILL`);
    await sleep(25);
  }
  const child = children.get(pid);
  if (child && child.exitCode === null && child.signalCode === null) {
    // Our own child: wait until Node has reaped it (ref'd, or the event loop may end first).
    child.ref();
    await new Promise((r) => child.once('exit', r));
  }
  fs.rmSync(pidFile, { force: true });
  return true;
}

/** User+system CPU seconds a process has used so far (from /proc/PID/stat). */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the comm: state(0) ... utime(11) stime(12); the kernel's USER_HZ is 100 on Linux.
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return undefined;
  }
}
