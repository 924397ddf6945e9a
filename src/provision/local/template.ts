/**
 * Snapshot templates: a node VM booted to the image's clone point (flotilla-clone-point.service,
 * see docs/local.md) and saved through QMP, so that a node starts by restoring it instead of
 * booting the kernel, the initrd, PID 1, journald and udev again. One template per image and VM
 * shape (accelerator, machine type, vCPUs, memory, kernel command line, QEMU version), cached
 * beside the image, so `image rm` and pruning remove it with the image:
 *
 *   <image dir>/templates/<key>/  state       QEMU's migration stream at the clone point
 *                                 disk.qcow2  the template's disk at the save (backing of every clone; never written again)
 *                                 template.json, console.log, qemu.log
 *
 * template.json records the sha256 of state and disk; a template whose files do not match is
 * built again (with a line saying why), never restored.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import { sleep } from '../../util/async';
import { runTool } from '../exec';
import { canonicalJson, CLONE_TEMPLATE_ARG, CONSOLE_FAILURE_MARKER, CONSOLE_MARKER } from '../image/recipe';
import type { ImageInfo, ProgressFn } from '../image';
import { withLock } from '../image/cache';
import { QEMU_BIN } from './accel';
import type { Accelerator, QemuNodeDesc } from './qemu-args';
import { createNamespace, createOverlay, deleteNamespace, launchNode, stopNode } from './qemu';
import { qmpCommand } from './qmp';

/** Bump when what a template holds changes in a way its key does not show. */
export const TEMPLATE_FORMAT = 1;

/** The template's MACs; each clone's clone-point replaces them with the node's own. */
export const TEMPLATE_MACS = { primary: '52:54:00:fc:00:01', cluster: '52:54:00:fc:00:02' } as const;

export const TEMPLATE_JSON = 'template.json';

/** What decides a template: every clone of it runs with exactly this VM. */
export interface TemplateShape {
  accel: Accelerator;
  cpus: number;
  memoryMiB: number;
  /** The node's kernel command line (the image's, plus e.g. cloud-init=disabled for Ignition nodes). */
  cmdline: string;
}

export interface TemplateInfo {
  key: string;
  dir: string;
  imageId: string;
  shape: TemplateShape;
  qemuVersion: string;
  /** The saved VM (QEMU migration stream). */
  state: string;
  /** The template's disk at the save: the backing file of every clone's overlay. */
  disk: string;
  stateBytes: number;
  stateSha256: string;
  diskSha256: string;
  /** Guest uptime when the clone point was reached. */
  clonePointUptime: number;
  buildSeconds: number;
  createdAt: string;
}

let qemuVersionCache: Promise<string> | undefined;

/** `qemu-system-x86_64 --version`'s first line (a template restores only into the QEMU that saved it). */
export function qemuVersion(): Promise<string> {
  qemuVersionCache ??= runTool(QEMU_BIN, ['--version']).then((out) => out.split('\n')[0]!.trim());
  return qemuVersionCache;
}

let supportCache: Promise<string | undefined> | undefined;

/** Why this host's QEMU cannot make snapshot clones, or undefined if it can. */
export function snapshotUnsupported(): Promise<string | undefined> {
  supportCache ??= runTool(QEMU_BIN, ['-device', 'help']).then(
    (out) => (/name "vmgenid"/.test(out) ? undefined : `${QEMU_BIN} has no vmgenid device: clones could not reseed their RNG`),
    (err: unknown) => `cannot list ${QEMU_BIN}'s devices: ${(err as Error).message}`,
  );
  return supportCache;
}

/** The template's cmdline: the node's, plus the word that makes the image stop at the clone point. */
export function templateCmdline(shape: TemplateShape): string {
  return `${shape.cmdline} ${CLONE_TEMPLATE_ARG}`;
}

export function templateKey(imageId: string, shape: TemplateShape, qemu: string): string {
  const data = { format: TEMPLATE_FORMAT, imageId, machine: 'pc', accel: shape.accel, cpus: shape.cpus, memoryMiB: shape.memoryMiB, cmdline: shape.cmdline, qemu, macs: TEMPLATE_MACS };
  return createHash('sha256').update(`flotilla-template\0${canonicalJson(data)}`).digest('hex');
}

function templatesDir(image: ImageInfo): string {
  return path.join(image.dir, 'templates');
}

/** Paths QEMU's exec: migration passes to /bin/sh: plain absolute paths only. */
function shellSafePath(what: string, p: string): string {
  if (!/^\/[A-Za-z0-9._/+-]+$/.test(p)) throw new FlotillaError('invalid-input', `${what} ${JSON.stringify(p)}: snapshot boot needs a state directory whose path has only letters, digits and . _ / + - (set FLOTILLA_STATE_DIR or use --boot fresh)`);
  return p;
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function readTemplate(dir: string): TemplateInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, TEMPLATE_JSON), 'utf8')) as TemplateInfo;
  } catch {
    return undefined;
  }
}

/** Why a cached template cannot be restored (missing or changed files), or undefined if it can. */
export async function checkTemplate(t: TemplateInfo): Promise<string | undefined> {
  for (const [what, file, sum] of [['state', t.state, t.stateSha256], ['disk', t.disk, t.diskSha256]] as const) {
    if (!fs.existsSync(file)) return `its ${what} file ${file} is missing`;
    if (what === 'state' && fs.statSync(file).size !== t.stateBytes) return `its state file ${file} has ${fs.statSync(file).size} bytes, not the ${t.stateBytes} saved`;
    if ((await sha256File(file)) !== sum) return `its ${what} file ${file} does not match the sha256 recorded when it was saved`;
  }
  return undefined;
}

/** The templates cached for an image. */
export function listTemplates(image: ImageInfo): TemplateInfo[] {
  let names: string[];
  try {
    names = fs.readdirSync(templatesDir(image)).filter((n) => !n.startsWith('.'));
  } catch {
    return [];
  }
  return names.flatMap((n) => readTemplate(path.join(templatesDir(image), n)) ?? []);
}

/**
 * The QEMU description of a VM of this shape: the template itself, and (with the node's paths,
 * network and first-boot config put in by the caller) each clone. Template and clones must have
 * the same devices in the same order, or the restore fails.
 */
export function templateMachine(image: ImageInfo, shape: TemplateShape, files: { dir: string; disk: string }): QemuNodeDesc {
  return {
    name: 'flotilla-template',
    accel: shape.accel,
    cpus: shape.cpus,
    memoryMiB: shape.memoryMiB,
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: templateCmdline(shape),
    disk: files.disk,
    firstBoot: { kind: 'none' },
    network: { primaryMac: TEMPLATE_MACS.primary, sshPort: 2200, cluster: { mac: TEMPLATE_MACS.cluster, group: '239.255.0.1', port: 20000 } },
    consoleLog: path.join(files.dir, 'console.log'),
    pidFile: path.join(files.dir, 'qemu.pid'),
    qmpSocket: path.join(files.dir, 'qmp.sock'),
    vmgenid: randomUUID(),
  };
}

/** Waits until the console says the clone point is reached; returns the guest's uptime then. */
async function waitClonePoint(consoleLog: string, exited: () => boolean, deadline: number): Promise<number> {
  const point = new RegExp(`${CONSOLE_MARKER} clone-point ([0-9.]+)`);
  for (;;) {
    let text = '';
    try {
      text = fs.readFileSync(consoleLog, 'latin1');
    } catch {
      /* not yet written */
    }
    const m = point.exec(text);
    if (m) return Number(m[1]);
    const failed = text.split('\n').find((l) => l.includes(CONSOLE_FAILURE_MARKER));
    if (failed) throw new FlotillaError('external', `snapshot template: the boot to the clone point failed: ${failed.trim()} (${consoleLog})`);
    if (exited()) throw new FlotillaError('external', `snapshot template: QEMU exited before the clone point; console: ${consoleLog}\n${text.split('\n').slice(-10).join('\n')}`);
    if (Date.now() > deadline) throw new FlotillaError('timeout', `snapshot template: no clone point on the console within the deadline (${consoleLog})`);
    await sleep(100);
  }
}

/** Saves a stopped VM's state to `file` through QMP (exec: migration; QEMU 7.2 has no file: URI). */
async function saveState(qmp: string, file: string, deadline: number): Promise<void> {
  await qmpCommand(qmp, 'stop');
  await qmpCommand(qmp, 'migrate', { uri: `exec:cat > ${shellSafePath('template state', file)}` });
  for (;;) {
    const st = (await qmpCommand(qmp, 'query-migrate')) as { status?: string; 'error-desc'?: string };
    if (st.status === 'completed') return;
    if (st.status === 'failed' || st.status === 'cancelled') throw new FlotillaError('external', `snapshot template: saving the VM failed: ${st['error-desc'] ?? st.status}`);
    if (Date.now() > deadline) throw new FlotillaError('timeout', `snapshot template: the save did not complete (status ${st.status})`);
    await sleep(50);
  }
}

async function buildTemplate(image: ImageInfo, shape: TemplateShape, key: string, qemu: string, dir: string, progress: ProgressFn, timeoutMs: number): Promise<TemplateInfo> {
  const t0 = performance.now();
  const root = path.dirname(dir);
  const tmp = path.join(root, `.build-${path.basename(dir)}-${randomBytes(4).toString('hex')}`);
  const netns = `flotilla-tpl-${randomBytes(4).toString('hex')}`;
  fs.mkdirSync(tmp, { recursive: true, mode: 0o700 });
  const files = { dir: tmp, disk: path.join(tmp, 'disk.qcow2') };
  // A unix socket path has at most 107 bytes; the image directory's can be longer.
  const sockDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-tpl-'));
  const desc = { ...templateMachine(image, shape, files), qmpSocket: path.join(sockDir, 'qmp.sock') };
  const state = path.join(tmp, 'state');
  try {
    await createOverlay(image.disk, files.disk);
    // Its own namespace: the template has the same NICs as a node (user-mode uplink, cluster multicast).
    await createNamespace(netns);
    progress({ step: 'template', phase: 'start', detail: `booting ${shape.cpus} vCPU / ${shape.memoryMiB} MiB under ${shape.accel} to the clone point` });
    const vm = await launchNode(desc, { netns, logFile: path.join(tmp, 'qemu.log') });
    let exited = false;
    void vm.exited.then(() => (exited = true));
    const deadline = Date.now() + timeoutMs;
    const uptime = await waitClonePoint(desc.consoleLog, () => exited, deadline);
    const bootSeconds = (performance.now() - t0) / 1000;
    const tSave = performance.now();
    await saveState(desc.qmpSocket!, state, deadline);
    await qmpCommand(desc.qmpSocket!, 'quit').catch(() => undefined);
    // QEMU writes its disk's metadata out when it exits: the disk is complete only then.
    await stopNode(desc.pidFile, { graceMs: 10_000 });
    const saveSeconds = (performance.now() - tSave) / 1000;
    fs.chmodSync(files.disk, 0o444);
    const stateBytes = fs.statSync(state).size;
    const info: TemplateInfo = {
      key,
      dir,
      imageId: image.id,
      shape,
      qemuVersion: qemu,
      state: path.join(dir, 'state'),
      disk: path.join(dir, 'disk.qcow2'),
      stateBytes,
      stateSha256: await sha256File(state),
      diskSha256: await sha256File(files.disk),
      clonePointUptime: uptime,
      buildSeconds: Math.round(((performance.now() - t0) / 1000) * 10) / 10,
      createdAt: new Date().toISOString(),
    };
    // The clones' overlays name the template's disk by its final path.
    fs.writeFileSync(path.join(tmp, TEMPLATE_JSON), `${JSON.stringify(info, null, 2)}\n`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
    progress({
      step: 'template',
      phase: 'done',
      seconds: info.buildSeconds,
      detail: `clone point at guest uptime ${uptime.toFixed(1)} s (boot ${bootSeconds.toFixed(1)} s), saved ${(stateBytes / 1e6).toFixed(0)} MB in ${saveSeconds.toFixed(1)} s`,
    });
    return info;
  } finally {
    await stopNode(desc.pidFile, { graceMs: 1000 }).catch(() => undefined);
    await deleteNamespace(netns).catch(() => undefined);
    fs.rmSync(sockDir, { recursive: true, force: true });
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The template for this image and shape: the cached one if its files are intact, else a new one
 * (built under a lock, so concurrent `up`s build it once).
 */
export async function ensureTemplate(image: ImageInfo, shape: TemplateShape, progress: ProgressFn = () => undefined, opts: { timeoutMs?: number } = {}): Promise<TemplateInfo> {
  const why = await snapshotUnsupported();
  if (why) throw new FlotillaError('external', why);
  const qemu = await qemuVersion();
  const key = templateKey(image.id, shape, qemu);
  const dir = path.join(templatesDir(image), key.slice(0, 16));
  shellSafePath('template directory', dir);
  return withLock(path.join(templatesDir(image), `.${key.slice(0, 16)}.lock`), `snapshot template ${key.slice(0, 12)}`, progress, async () => {
    const cached = readTemplate(dir);
    if (cached && cached.key === key) {
      const bad = await checkTemplate(cached);
      if (!bad) {
        progress({ step: 'template', phase: 'cached', detail: `${key.slice(0, 12)} (${(cached.stateBytes / 1e6).toFixed(0)} MB, built in ${cached.buildSeconds} s)` });
        return cached;
      }
      progress({ step: 'template', phase: 'start', detail: `template ${key.slice(0, 12)} is damaged (${bad}): building it again` });
    }
    return buildTemplate(image, shape, key, qemu, dir, progress, opts.timeoutMs ?? 10 * 60_000);
  });
}
