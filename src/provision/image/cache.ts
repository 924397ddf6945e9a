/**
 * The image cache: built layers under <state>/images/<hash>/ and <state>/cache/base/<hash>/,
 * what each records (image.json, base.json), listing, removal, the build lock, and pruning
 * what no overlay or running VM uses.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { FlotillaError } from '../../errors';
import { imagesDir, stateDir } from '../../cluster/state';
import { sleep } from '../../util/async';
import { removeTree } from '../exec';
import type { AgentBundle } from './bundle';
import type { ImageRecipe } from './recipe';

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

export const IMAGE_JSON = 'image.json';
export const BASE_JSON = 'base.json';

export function baseCacheDir(): string {
  return path.join(stateDir(), 'cache', 'base');
}

export function readJson<T>(file: string): T | undefined {
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
export async function withLock<T>(lockFile: string, what: string, progress: ProgressFn, fn: () => Promise<T>, waitMs = 45 * 60_000): Promise<T> {
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

export function getBase(id: string): BaseInfo | undefined {
  const dir = path.join(baseCacheDir(), id);
  const info = readJson<BaseInfo>(path.join(dir, BASE_JSON));
  if (!info || !fs.existsSync(path.join(dir, 'rootfs')) || !fs.existsSync(path.join(dir, 'vmlinux'))) return undefined;
  return { ...info, dir };
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
