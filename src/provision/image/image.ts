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
import { haveTool, removeTree, runTool } from '../exec';
import { extractVmlinux } from './kernel';
import { baseRecipeHash, defaultRecipe, recipeHash, type BaseRecipe, type ImageRecipe } from './recipe';
import { debCacheDir, imagesDir, stateDir } from '../../cluster/state';
import { BASE_JSON, IMAGE_JSON, baseCacheDir, getBase, getImage, pruneCache, withLock, type BaseInfo, type BuildOptions, type ImageInfo, type ProgressFn, type StepTiming } from './cache';
import { moduleClosure, moduleName, readModuleIndex } from './modules';

const NOTABLE_PACKAGES = ['systemd', 'cloud-init', 'openssh-server', 'etcd-server', 'nodejs', 'ignition', 'python3', 'busybox-static'];

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
