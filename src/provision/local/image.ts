/**
 * The node image: a Debian bookworm root filesystem (debootstrap, minbase) with systemd,
 * cloud-init (NoCloud), Ignition, OpenSSH, etcd, Node.js 18 and Flotilla's bundled agent;
 * Debian's kernel for direct kernel boot and a small busybox initrd.
 *
 * Built in two cached layers, each in a temporary directory renamed into place when complete
 * (a half-built layer is never used; a failed step names its log):
 *
 *   <state>/cache/base/<base-hash>/   rootfs/, vmlinux, initrd.img, base.json
 *       debootstrap, security updates, kernel modules subset, configuration and trimming, initrd.
 *       Keyed by the base recipe (packages, kernel package and modules, files, scripts).
 *   <state>/images/<hash>/            disk.qcow2, vmlinux, initrd.img, image.json, logs/
 *       the base plus the agent bundle, as an ext4 filesystem in qcow2 (VMs use overlays on it).
 *       Keyed by the base hash, the bundle hash and the disk layout.
 *
 * So editing Flotilla's sources costs a ~20 s image rebuild, not a new debootstrap.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { FlotillaError } from '../../errors';
import { AGENT_BIN, bundleAgent, installAgent, type AgentBundle } from './bundle';
import { cpioNewc, type CpioEntry } from './cpio';
import { haveTool, removeTree, runTool } from './exec';
import { extractVmlinux } from './kernel';
import { baseRecipeHash, defaultRecipe, recipeHash, type BaseRecipe, type ImageRecipe } from './recipe';
import { debCacheDir, imagesDir, stateDir } from '../../cluster/state';
import { sleep } from '../../util/async';

export interface StepTiming {
  step: string;
  seconds: number;
  /** True when the step's result came from the cache. */
  cached?: boolean;
}

export interface BuildProgress {
  step: string;
  phase: 'start' | 'done' | 'cached';
  /** Wall time of the step (phase 'done'). */
  seconds?: number;
  detail?: string;
  /** Log file of the step, while it runs. */
  log?: string;
}

export type ProgressFn = (p: BuildProgress) => void;

export interface BaseInfo {
  id: string;
  dir: string;
  kernelVersion: string;
  kernelPackage: string;
  kernelPackageVersion: string;
  /** Versions of notable packages in the image. */
  versions: Record<string, string>;
  createdAt: string;
  buildSeconds: number;
  steps: StepTiming[];
  rootfsBytes: number;
}

export interface ImageInfo {
  /** The recipe hash: also the directory name under <state>/images. */
  id: string;
  dir: string;
  disk: string;
  kernel: string;
  initrd: string;
  /** Kernel command line the image expects (direct kernel boot). */
  cmdline: string;
  kernelVersion: string;
  baseId: string;
  bundleHash: string;
  versions: Record<string, string>;
  createdAt: string;
  /** Wall time of the build that produced this image, base layer included when it was built too. */
  buildSeconds: number;
  steps: StepTiming[];
  sizes: { diskBytes: number; virtualBytes: number; rootfsBytes: number; kernelBytes: number; initrdBytes: number };
}

export interface BuildOptions {
  recipe?: ImageRecipe;
  /** A bundle made already (saves bundling twice); must match recipe.bundleHash if both are given. */
  bundle?: AgentBundle;
  /** Debian mirror for debootstrap and apt; default from the host's apt sources. */
  mirror?: string;
  securityMirror?: string;
  /** Rebuild the base layer even when it is cached. */
  rebuildBase?: boolean;
}

const IMAGE_JSON = 'image.json';
const BASE_JSON = 'base.json';
const NOTABLE_PACKAGES = ['systemd', 'cloud-init', 'openssh-server', 'etcd-server', 'nodejs', 'ignition', 'python3', 'busybox-static'];

function baseCacheDir(): string {
  return path.join(stateDir(), 'cache', 'base');
}

/** The Debian mirrors in the host's apt sources (deb822 or one-line), or deb.debian.org. */
export function debianMirrors(): { mirror: string; securityMirror: string } {
  let mirror = process.env.FLOTILLA_DEBIAN_MIRROR ?? '';
  let securityMirror = process.env.FLOTILLA_DEBIAN_SECURITY_MIRROR ?? '';
  const texts: string[] = [];
  for (const f of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    try {
      texts.push(fs.readFileSync(f, 'utf8'));
    } catch {
      /* absent */
    }
  }
  for (const text of texts) {
    for (const stanza of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
      const suites = /^Suites:\s*(.+)$/m.exec(stanza)?.[1] ?? '';
      if (uri && /-security/.test(suites)) securityMirror ||= uri;
      else if (uri) mirror ||= uri;
    }
    for (const m of text.matchAll(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/gm)) {
      if (/-security/.test(m[2]!)) securityMirror ||= m[1]!;
      else mirror ||= m[1]!;
    }
  }
  return { mirror: mirror || 'http://deb.debian.org/debian', securityMirror: securityMirror || 'http://deb.debian.org/debian-security' };
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** The cached image with this id, if complete. */
export function getImage(id: string): ImageInfo | undefined {
  if (!/^[0-9a-f]{64}$/.test(id)) return undefined;
  const dir = path.join(imagesDir(), id);
  const info = readJson<ImageInfo>(path.join(dir, IMAGE_JSON));
  if (!info || !fs.existsSync(path.join(dir, 'disk.qcow2'))) return undefined;
  // The directory may have been moved with the state directory: paths follow it.
  return { ...info, dir, disk: path.join(dir, 'disk.qcow2'), kernel: path.join(dir, 'vmlinux'), initrd: path.join(dir, 'initrd.img') };
}

/** Every complete image in the cache, newest first. */
export function listImages(): ImageInfo[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync(imagesDir());
  } catch {
    return [];
  }
  return names
    .map((n) => getImage(n))
    .filter((i): i is ImageInfo => i !== undefined)
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
}

/** Removes a cached image (VMs already running from it keep their open files). Returns false if there was none. */
export function removeImage(id: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(id)) throw new FlotillaError('invalid-input', `not an image id: ${JSON.stringify(id)} (64 hex digits)`);
  const dir = path.join(imagesDir(), id);
  if (!fs.existsSync(dir)) return false;
  const trash = path.join(imagesDir(), `.remove-${id}-${randomBytes(4).toString('hex')}`);
  fs.renameSync(dir, trash);
  removeTree(trash);
  return true;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}


/** An exclusive lock file holding our PID; a lock left by a dead process is taken over. */
async function withLock<T>(lockFile: string, what: string, progress: ProgressFn, fn: () => Promise<T>, waitMs = 45 * 60_000): Promise<T> {
  fs.mkdirSync(path.dirname(lockFile), { recursive: true });
  const start = Date.now();
  let told = false;
  for (;;) {
    try {
      fs.writeFileSync(lockFile, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(fs.readFileSync(lockFile, 'utf8').trim());
      if (!Number.isInteger(holder) || holder <= 0 || (!pidAlive(holder) && holder !== process.pid)) {
        fs.rmSync(lockFile, { force: true });
        continue;
      }
      if (Date.now() - start > waitMs) throw new FlotillaError('timeout', `${what}: another build (PID ${holder}) holds ${lockFile}`);
      if (!told) {
        progress({ step: 'wait', phase: 'start', detail: `${what}: waiting for the build in PID ${holder}` });
        told = true;
      }
      await sleep(1000);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lockFile, { force: true });
  }
}

class StepRunner {
  readonly steps: StepTiming[] = [];
  constructor(
    readonly logDir: string,
    readonly progress: ProgressFn,
    readonly layer: string,
  ) {
    fs.mkdirSync(logDir, { recursive: true });
  }

  log(step: string): string {
    return path.join(this.logDir, `${step}.log`);
  }

  async run<T>(step: string, fn: (log: string) => Promise<T>): Promise<T> {
    const log = this.log(step);
    this.progress({ step, phase: 'start', log });
    const t0 = performance.now();
    try {
      const out = await fn(log);
      const seconds = Math.round((performance.now() - t0) / 100) / 10;
      this.steps.push({ step, seconds });
      this.progress({ step, phase: 'done', seconds });
      return out;
    } catch (err) {
      const msg = FlotillaError.is(err) ? err.message : (err as Error).stack ?? String(err);
      fs.appendFileSync(log, `\nFAILED: ${msg}\n`);
      throw new FlotillaError(FlotillaError.is(err) && err.code === 'missing-tool' ? 'missing-tool' : 'external', `${this.layer} build failed at step "${step}": ${msg.split('\n')[0]}\n  log: ${log}`, [], { cause: err });
    }
  }
}

function chroot(rootfs: string, args: string[], log: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 20 * 60_000): Promise<string> {
  return runTool('chroot', [rootfs, ...args], {
    logFile: log,
    timeoutMs,
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', HOME: '/root', DEBIAN_FRONTEND: 'noninteractive', ...env },
  });
}

function chrootOut(rootfs: string, args: string[]): Promise<string> {
  return runTool('chroot', [rootfs, ...args], { timeoutMs: 120_000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
}

function duBytes(dir: string): Promise<number> {
  return runTool('du', ['-sb', dir]).then((o) => Number(o.split(/\s/)[0]));
}

/** Module name as the kernel knows it: file stem with '-' as '_'. */
function moduleName(file: string): string {
  return path.basename(file).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

interface ModuleIndex {
  /** module name -> path relative to lib/modules/KVER */
  files: Map<string, string>;
  /** module path -> dependency paths (from modules.dep) */
  deps: Map<string, string[]>;
  builtin: Set<string>;
}

function readModuleIndex(kdir: string): ModuleIndex {
  const files = new Map<string, string>();
  const deps = new Map<string, string[]>();
  for (const line of fs.readFileSync(path.join(kdir, 'modules.dep'), 'utf8').split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    files.set(moduleName(m[1]!), m[1]!);
    deps.set(m[1]!, m[2]!.split(/\s+/).filter(Boolean));
  }
  const builtin = new Set<string>();
  try {
    for (const line of fs.readFileSync(path.join(kdir, 'modules.builtin'), 'utf8').split('\n')) if (line) builtin.add(moduleName(line));
  } catch {
    /* none */
  }
  return { files, deps, builtin };
}

/** Module files for `names` and everything they depend on, dependencies first. */
export function moduleClosure(index: ModuleIndex, names: readonly string[]): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const d of index.deps.get(file) ?? []) visit(d);
    order.push(file);
  };
  for (const n of names) {
    const key = n.replace(/-/g, '_');
    const file = index.files.get(key);
    if (file) visit(file);
    else if (!index.builtin.has(key)) throw new FlotillaError('invalid-input', `kernel module ${n} is neither a module nor built in`);
  }
  return order;
}

async function buildBase(base: BaseRecipe, id: string, opts: BuildOptions, progress: ProgressFn): Promise<{ info: BaseInfo; steps: StepTiming[] }> {
  const cacheRoot = baseCacheDir();
  fs.mkdirSync(cacheRoot, { recursive: true });
  const tmp = path.join(cacheRoot, `.build-${id.slice(0, 16)}-${process.pid}-${randomBytes(3).toString('hex')}`);
  const rootfs = path.join(tmp, 'rootfs');
  const logDir = path.join(stateDir(), 'logs', `base-${id.slice(0, 16)}-${new Date().toISOString().replace(/[:.]/g, '')}`);
  const steps = new StepRunner(logDir, progress, 'base image');
  const { mirror, securityMirror } = { ...debianMirrors(), ...(opts.mirror ? { mirror: opts.mirror } : {}), ...(opts.securityMirror ? { securityMirror: opts.securityMirror } : {}) };
  const debs = debCacheDir();
  fs.mkdirSync(debs, { recursive: true });
  fs.mkdirSync(tmp, { recursive: true });
  const t0 = performance.now();
  try {
    for (const tool of ['debootstrap', 'chroot', 'dpkg-deb', 'mkfs.ext4', 'qemu-img', 'xz']) {
      if (!haveTool(tool)) throw new FlotillaError('missing-tool', `${tool} is not installed (run scripts/setup-host.sh)`);
    }
    await steps.run('debootstrap', (log) =>
      runTool('debootstrap', [`--variant=${base.variant}`, `--cache-dir=${debs}`, `--include=${base.packages.join(',')}`, base.suite, rootfs, mirror], {
        logFile: log,
        timeoutMs: 40 * 60_000,
        env: { ...process.env, LC_ALL: 'C', DEBIAN_FRONTEND: 'noninteractive' },
      }),
    );

    const kernel = await steps.run('packages', async (log) => {
      const lines = [`deb ${mirror} ${base.suite} main`, `deb ${mirror} ${base.suite}-updates main`];
      if (base.securityUpdates) lines.push(`deb ${securityMirror} ${base.suite}-security main`);
      fs.writeFileSync(path.join(rootfs, 'etc/apt/sources.list'), `${lines.join('\n')}\n`);
      fs.copyFileSync('/etc/resolv.conf', path.join(rootfs, 'etc/resolv.conf'));
      await chroot(rootfs, ['apt-get', 'update', '-q'], log);
      if (base.securityUpdates) {
        // Package scripts must not start daemons inside the chroot.
        fs.writeFileSync(path.join(rootfs, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
        try {
          await chroot(rootfs, ['apt-get', '-y', '-q', '-o', 'Dpkg::Options::=--force-confold', '--no-install-recommends', 'upgrade'], log);
        } finally {
          fs.rmSync(path.join(rootfs, 'usr/sbin/policy-rc.d'), { force: true });
        }
      }
      // Resolve the kernel package (linux-image-amd64 -> linux-image-<abi>) and fetch its .deb (cached).
      let pkg = base.kernel.package;
      const depends = await chrootOut(rootfs, ['apt-cache', 'depends', '--no-recommends', '--no-suggests', pkg]);
      const dep = /Depends:\s*(linux-image-[0-9][^\s<>]*)/.exec(depends)?.[1];
      if (dep) pkg = dep;
      const show = await chrootOut(rootfs, ['apt-cache', 'show', '--no-all-versions', pkg]);
      const version = /^Version:\s*(\S+)/m.exec(show)?.[1];
      const filename = /^Filename:\s*(\S+)/m.exec(show)?.[1];
      if (!version || !filename) throw new FlotillaError('external', `apt-cache show ${pkg}: no Version/Filename`);
      const deb = path.join(debs, path.basename(filename));
      if (!fs.existsSync(deb)) {
        const dl = path.join(rootfs, 'tmp/kernel-deb');
        fs.mkdirSync(dl, { recursive: true });
        await chroot(rootfs, ['sh', '-c', `cd /tmp/kernel-deb && apt-get download -q ${pkg}`], log);
        const got = fs.readdirSync(dl).find((f) => f.endsWith('.deb'));
        if (!got) throw new FlotillaError('external', `apt-get download ${pkg} produced no .deb`);
        fs.copyFileSync(path.join(dl, got), `${deb}.part`);
        fs.renameSync(`${deb}.part`, deb);
        fs.rmSync(dl, { recursive: true, force: true });
      }
      fs.appendFileSync(log, `kernel: ${pkg} ${version} (${deb})\n`);
      return { pkg, version, deb };
    });

    const kver = await steps.run('kernel', async (log) => {
      const kx = path.join(rootfs, 'tmp/kx');
      await runTool('dpkg-deb', ['-x', kernel.deb, kx], { logFile: log });
      const versions = fs.readdirSync(path.join(kx, 'lib/modules'));
      if (versions.length !== 1) throw new FlotillaError('external', `${kernel.deb}: expected one lib/modules/<version>, found ${versions.join(', ')}`);
      const kv = versions[0]!;
      await chroot(rootfs, ['depmod', '-b', '/tmp/kx', kv], log);
      const src = path.join(kx, 'lib/modules', kv);
      const index = readModuleIndex(src);
      const wanted = moduleClosure(index, base.kernel.modules);
      const dest = path.join(rootfs, 'lib/modules', kv);
      for (const rel of wanted) {
        fs.mkdirSync(path.dirname(path.join(dest, rel)), { recursive: true });
        fs.copyFileSync(path.join(src, rel), path.join(dest, rel));
      }
      for (const f of ['modules.order', 'modules.builtin', 'modules.builtin.modinfo']) {
        if (fs.existsSync(path.join(src, f))) fs.copyFileSync(path.join(src, f), path.join(dest, f));
      }
      await chroot(rootfs, ['depmod', kv], log);
      // The guest would spend ~4 s of emulated CPU decompressing the bzImage: keep the ELF (PVH boot).
      await extractVmlinux(path.join(kx, 'boot', `vmlinuz-${kv}`), path.join(tmp, 'vmlinux'), log);
      fs.copyFileSync(path.join(kx, 'boot', `config-${kv}`), path.join(tmp, 'kernel.config'));
      removeTree(kx);
      fs.appendFileSync(log, `kernel ${kv}: ${wanted.length} modules: ${wanted.map(moduleName).join(' ')}\n`);
      return kv;
    });

    await steps.run('configure', async (log) => {
      for (const [p, f] of Object.entries(base.files)) {
        const dest = path.join(rootfs, p);
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        fs.writeFileSync(dest, f.contents, { mode: f.mode });
        fs.chmodSync(dest, f.mode);
      }
      await chroot(rootfs, ['/bin/sh', '-c', base.configureScript], log, { SYSTEMCTL_SKIP_SYSV: '1' });
    });

    await steps.run('initrd', async (log) => {
      const kdir = path.join(rootfs, 'lib/modules', kver);
      const mods = moduleClosure(readModuleIndex(kdir), base.kernel.initrdModules);
      const entries: CpioEntry[] = [
        ...['bin', 'dev', 'proc', 'sys', 'newroot', 'lib', 'lib/modules'].map((p) => ({ type: 'dir' as const, path: p })),
        { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
        { type: 'file', path: 'bin/busybox', data: fs.readFileSync(path.join(rootfs, 'bin/busybox')), mode: 0o755 },
        ...['sh', 'mount', 'umount', 'insmod', 'switch_root', 'sleep', 'cat', 'echo', 'poweroff'].map((a) => ({ type: 'symlink' as const, path: `bin/${a}`, target: 'busybox' })),
        { type: 'file', path: 'init', data: base.initScript, mode: 0o755 },
        ...mods.map((m) => ({ type: 'file' as const, path: `lib/modules/${path.basename(m)}`, data: fs.readFileSync(path.join(kdir, m)) })),
        { type: 'file', path: 'modules.order', data: `${mods.map((m) => path.basename(m)).join('\n')}\n` },
      ];
      fs.writeFileSync(path.join(tmp, 'initrd.img'), cpioNewc(entries));
      fs.appendFileSync(log, `initrd: busybox + ${mods.map(moduleName).join(' ')}\n`);
    });

    const versions: Record<string, string> = {};
    const dpkg = await chrootOut(rootfs, ['dpkg-query', '-W', '-f', '${Package} ${Version}\\n', ...NOTABLE_PACKAGES]);
    for (const line of dpkg.split('\n')) {
      const [p, v] = line.split(' ');
      if (p && v) versions[p] = v;
    }
    versions.kernel = `${kernel.pkg} ${kernel.version}`;
    const info: BaseInfo = {
      id,
      dir: path.join(cacheRoot, id),
      kernelVersion: kver,
      kernelPackage: kernel.pkg,
      kernelPackageVersion: kernel.version,
      versions,
      createdAt: new Date().toISOString(),
      buildSeconds: Math.round((performance.now() - t0) / 100) / 10,
      steps: steps.steps,
      rootfsBytes: await duBytes(rootfs),
    };
    fs.writeFileSync(path.join(tmp, 'recipe.json'), `${JSON.stringify(base, null, 2)}\n`);
    fs.cpSync(logDir, path.join(tmp, 'logs'), { recursive: true });
    fs.writeFileSync(path.join(tmp, BASE_JSON), `${JSON.stringify(info, null, 2)}\n`);
    const final = path.join(cacheRoot, id);
    if (fs.existsSync(final)) {
      const old = path.join(cacheRoot, `.remove-${id.slice(0, 16)}-${randomBytes(3).toString('hex')}`);
      fs.renameSync(final, old);
      removeTree(old);
    }
    fs.renameSync(tmp, final);
    return { info, steps: steps.steps };
  } catch (err) {
    removeTree(tmp);
    throw err;
  }
}

/** Hard link (same filesystem: no copy of a 60 MB kernel), else copy. Both files are read-only in use. */
function linkOrCopy(src: string, dest: string): void {
  try {
    fs.linkSync(src, dest);
  } catch {
    fs.copyFileSync(src, dest);
  }
}

function getBase(id: string): BaseInfo | undefined {
  const dir = path.join(baseCacheDir(), id);
  const info = readJson<BaseInfo>(path.join(dir, BASE_JSON));
  if (!info || !fs.existsSync(path.join(dir, 'rootfs')) || !fs.existsSync(path.join(dir, 'vmlinux'))) return undefined;
  return { ...info, dir };
}

/**
 * Builds the image for `opts.recipe` (default: the default recipe with the current agent
 * bundle), reusing a cached base layer unless `rebuildBase`. An image already cached under
 * the same id is replaced.
 */
export async function buildImage(opts: BuildOptions = {}, progress: ProgressFn = () => undefined): Promise<ImageInfo> {
  return buildOrReuse(opts, progress, false);
}

type Resolved = { recipe: ImageRecipe; bundle: AgentBundle; bundleStep?: StepTiming };

async function buildOrReuse(opts: BuildOptions, progress: ProgressFn, reuse: boolean, resolved?: Resolved): Promise<ImageInfo> {
  const t0 = performance.now() - (resolved?.bundleStep?.seconds ?? 0) * 1000;
  const { recipe, bundle, bundleStep } = resolved ?? (await resolveRecipe(opts, progress));
  const id = recipeHash(recipe);
  const baseId = baseRecipeHash(recipe.base);
  return withLock(path.join(imagesDir(), `.lock-${id}`), `image ${id.slice(0, 12)}`, progress, async () => {
    // Another process may have built it while this one waited for the lock.
    const done = reuse ? getImage(id) : undefined;
    if (done) return done;
    const allSteps: StepTiming[] = bundleStep ? [bundleStep] : [];
    let base = opts.rebuildBase ? undefined : getBase(baseId);
    if (base) {
      allSteps.push({ step: 'base', seconds: 0, cached: true });
      progress({ step: 'base', phase: 'cached', detail: `${baseId.slice(0, 12)} (${base.kernelVersion})` });
    } else {
      base = await withLock(path.join(baseCacheDir(), `.lock-${baseId}`), `base ${baseId.slice(0, 12)}`, progress, async () => {
        const again = opts.rebuildBase ? undefined : getBase(baseId);
        if (again) return again;
        const built = await buildBase(recipe.base, baseId, opts, progress);
        allSteps.push(...built.steps);
        return getBase(baseId) ?? built.info;
      });
    }
    return buildImageLayer(recipe, id, base, bundle, allSteps, t0, progress);
  });
}

async function resolveRecipe(opts: BuildOptions, progress: ProgressFn): Promise<Resolved> {
  let bundle = opts.bundle;
  let bundleStep: StepTiming | undefined;
  if (!bundle) {
    progress({ step: 'bundle', phase: 'start' });
    const t = performance.now();
    bundle = await bundleAgent();
    const seconds = Math.round((performance.now() - t) / 100) / 10;
    bundleStep = { step: 'bundle', seconds };
    progress({ step: 'bundle', phase: 'done', seconds, detail: `${(bundle.script.length / 1e6).toFixed(1)} MB, ${bundle.hash.slice(0, 12)}` });
  }
  const recipe = opts.recipe ?? defaultRecipe(bundle.hash);
  if (recipe.bundleHash !== bundle.hash) throw new FlotillaError('internal', `recipe names agent bundle ${recipe.bundleHash.slice(0, 12)} but the bundle given is ${bundle.hash.slice(0, 12)}`);
  return { recipe, bundle, ...(bundleStep ? { bundleStep } : {}) };
}

async function buildImageLayer(recipe: ImageRecipe, id: string, base: BaseInfo, bundle: AgentBundle, allSteps: StepTiming[], t0: number, progress: ProgressFn): Promise<ImageInfo> {
  const root = imagesDir();
  const tmp = path.join(root, `.build-${id.slice(0, 16)}-${process.pid}-${randomBytes(3).toString('hex')}`);
  const rootfs = path.join(tmp, 'rootfs');
  fs.mkdirSync(tmp, { recursive: true });
  const steps = new StepRunner(path.join(tmp, 'logs'), progress, 'image');
  const failedLogs = path.join(stateDir(), 'logs', `image-${id.slice(0, 16)}-${new Date().toISOString().replace(/[:.]/g, '')}`);
  try {
    await steps.run('agent', async (log) => {
      await runTool('cp', ['-a', '--reflink=auto', path.join(base.dir, 'rootfs'), rootfs], { logFile: log });
      installAgent(bundle, rootfs);
      // The bundle must run on the image's Node.js (Debian's 18), not only on the host's.
      const out = await runTool('chroot', [rootfs, AGENT_BIN, '--help'], { timeoutMs: 60_000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C.UTF-8' } });
      if (!/Usage: flotilla/.test(out)) throw new FlotillaError('external', `${AGENT_BIN} --help in the image printed no usage:\n${out.slice(0, 500)}`);
      fs.appendFileSync(log, out);
    });
    const rootfsBytes = await duBytes(rootfs);
    await steps.run('filesystem', async (log) => {
      const raw = path.join(tmp, 'disk.raw');
      const fd = fs.openSync(raw, 'w');
      fs.ftruncateSync(fd, recipe.diskGiB * 1024 ** 3);
      fs.closeSync(fd);
      await runTool('mkfs.ext4', ['-q', '-F', ...recipe.mkfsOptions, '-d', rootfs, raw], { logFile: log, timeoutMs: 20 * 60_000 });
      removeTree(rootfs);
    });
    await steps.run('qcow2', async (log) => {
      const raw = path.join(tmp, 'disk.raw');
      await runTool('qemu-img', ['convert', '-O', 'qcow2', raw, path.join(tmp, 'disk.qcow2')], { logFile: log, timeoutMs: 20 * 60_000 });
      fs.rmSync(raw);
      for (const f of ['vmlinux', 'initrd.img']) linkOrCopy(path.join(base.dir, f), path.join(tmp, f));
    });
    const info: ImageInfo = {
      id,
      dir: path.join(root, id),
      disk: path.join(root, id, 'disk.qcow2'),
      kernel: path.join(root, id, 'vmlinux'),
      initrd: path.join(root, id, 'initrd.img'),
      cmdline: recipe.base.kernel.cmdline,
      kernelVersion: base.kernelVersion,
      baseId: base.id,
      bundleHash: recipe.bundleHash,
      versions: base.versions,
      createdAt: new Date().toISOString(),
      buildSeconds: Math.round((performance.now() - t0) / 100) / 10,
      steps: [...allSteps, ...steps.steps],
      sizes: {
        diskBytes: fs.statSync(path.join(tmp, 'disk.qcow2')).size,
        virtualBytes: recipe.diskGiB * 1024 ** 3,
        rootfsBytes,
        kernelBytes: fs.statSync(path.join(tmp, 'vmlinux')).size,
        initrdBytes: fs.statSync(path.join(tmp, 'initrd.img')).size,
      },
    };
    fs.writeFileSync(path.join(tmp, 'recipe.json'), `${JSON.stringify({ ...recipe, base: baseRecipeHash(recipe.base) }, null, 2)}\n`);
    fs.writeFileSync(path.join(tmp, IMAGE_JSON), `${JSON.stringify(info, null, 2)}\n`);
    const final = path.join(root, id);
    if (fs.existsSync(final)) {
      const old = path.join(root, `.remove-${id.slice(0, 16)}-${randomBytes(3).toString('hex')}`);
      fs.renameSync(final, old);
      removeTree(old);
    }
    fs.renameSync(tmp, final);
    return info;
  } catch (err) {
    // Keep the logs where the error message can point to them; drop the rest.
    try {
      fs.mkdirSync(path.dirname(failedLogs), { recursive: true });
      fs.cpSync(path.join(tmp, 'logs'), failedLogs, { recursive: true });
    } catch {
      /* best effort */
    }
    removeTree(tmp);
    if (FlotillaError.is(err)) throw new FlotillaError(err.code, err.message.replace(path.join(tmp, 'logs'), failedLogs), err.problems, { cause: err });
    throw err;
  }
}

export interface PruneResult {
  removedImages: string[];
  removedBases: string[];
  /** Images kept because a disk overlay or a running process uses them. */
  inUse: string[];
}

/** The backing file named in a qcow2 header, if any. */
function qcow2BackingFile(file: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const head = Buffer.alloc(20);
    if (fs.readSync(fd, head, 0, 20, 0) < 20 || head.readUInt32BE(0) !== 0x514649fb) return undefined;
    const off = Number(head.readBigUInt64BE(8));
    const len = head.readUInt32BE(16);
    if (off === 0 || len === 0 || len > 4096) return undefined;
    const name = Buffer.alloc(len);
    fs.readSync(fd, name, 0, len, off);
    return path.resolve(path.dirname(file), name.toString('utf8'));
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Image ids referenced by qcow2 overlays anywhere in the state directory, or held open by any process. */
function imagesInUse(): Set<string> {
  const root = imagesDir();
  const ids = new Set<string>();
  const note = (p: string): void => {
    const rel = path.relative(root, p);
    const id = rel.split(path.sep)[0];
    if (id && !rel.startsWith('..') && /^[0-9a-f]{64}$/.test(id)) ids.add(id);
  };
  const walk = (dir: string, depth: number): void => {
    if (depth > 6) return;
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory() && p !== root && p !== path.join(stateDir(), 'cache')) walk(p, depth + 1);
      else if (e.isFile() && e.name.endsWith('.qcow2')) {
        const b = qcow2BackingFile(p);
        if (b) note(b);
      }
    }
  };
  walk(stateDir(), 0);
  let pids: string[] = [];
  try {
    pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    /* no /proc */
  }
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        note(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return ids;
}

/**
 * Removes cached images and base layers nothing needs: keeps the newest `keepImages` images,
 * every image a disk overlay in the state directory is backed by or a process holds open, the
 * bases of kept images and the newest base. Every source change makes a new ~400 MB image, so
 * ensureImage calls this after each build.
 */
export function pruneCache(opts: { keepImages?: number } = {}): PruneResult {
  const images = listImages();
  const inUse = imagesInUse();
  const locked = (dir: string, id: string): boolean => fs.existsSync(path.join(dir, `.lock-${id}`));
  const keep = new Set(images.slice(0, opts.keepImages ?? 2).map((i) => i.id));
  for (const id of inUse) keep.add(id);
  const removedImages: string[] = [];
  for (const img of images) {
    if (keep.has(img.id) || locked(imagesDir(), img.id)) continue;
    if (removeImage(img.id)) removedImages.push(img.id);
  }
  const keptBases = new Set(images.filter((i) => keep.has(i.id)).map((i) => i.baseId));
  const bases: BaseInfo[] = [];
  try {
    for (const n of fs.readdirSync(baseCacheDir())) {
      // Any complete base layer, also those of older builder versions that getBase no longer accepts.
      const b = /^[0-9a-f]{64}$/.test(n) ? readJson<BaseInfo>(path.join(baseCacheDir(), n, BASE_JSON)) : undefined;
      if (b) bases.push({ ...b, id: n, dir: path.join(baseCacheDir(), n) });
    }
  } catch {
    /* no cache yet */
  }
  bases.sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
  if (bases[0]) keptBases.add(bases[0].id);
  const removedBases: string[] = [];
  for (const b of bases) {
    if (keptBases.has(b.id) || locked(baseCacheDir(), b.id)) continue;
    const trash = path.join(baseCacheDir(), `.remove-${b.id.slice(0, 16)}-${randomBytes(3).toString('hex')}`);
    fs.renameSync(b.dir, trash);
    removeTree(trash);
    removedBases.push(b.id);
  }
  return { removedImages, removedBases, inUse: [...inUse].filter((id) => images.some((i) => i.id === id)) };
}

/**
 * The image for the current recipe and agent bundle: from the cache, or built now (minutes
 * the first time; progress reports each step). After a build, unused older images are pruned.
 */
export async function ensureImage(opts: BuildOptions = {}, progress: ProgressFn = () => undefined): Promise<ImageInfo> {
  const resolved = await resolveRecipe(opts, progress);
  const { recipe } = resolved;
  const cached = getImage(recipeHash(recipe));
  if (cached) {
    progress({ step: 'image', phase: 'cached', detail: cached.id.slice(0, 12) });
    return cached;
  }
  const img = await buildOrReuse(opts, progress, true, resolved);
  try {
    const pruned = pruneCache();
    if (pruned.removedImages.length + pruned.removedBases.length > 0) {
      progress({ step: 'prune', phase: 'done', detail: `removed ${pruned.removedImages.length} old image(s), ${pruned.removedBases.length} old base(s)` });
    }
  } catch (err) {
    progress({ step: 'prune', phase: 'done', detail: `pruning the image cache failed: ${(err as Error).message}` });
  }
  return img;
}
