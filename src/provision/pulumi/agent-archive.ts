/**
 * What a stock AMI is given so that it can run the Flotilla agent: one gzip'd tar archive of
 * the lean fleetd bundle (src/provision/image/bundle.ts) laid out as `bin/flotilla` and
 * `lib/flotilla/...` (extracted under /usr/local on Debian, where the bundle expects its files,
 * or under /opt/flotilla on Flatcar/Fedora CoreOS, mounted into the agent's container there),
 * and the small first-boot fetcher (s3-fetch.ts) as one plain-node script.
 *
 * The archive is deterministic (sorted entries, mtime 0, root-owned, gzip without a name or
 * time), so its digest, which goes into user-data, changes only when the agent does.
 * `bin/flotilla` is the last entry: an interrupted extraction leaves no executable, and the
 * install units use the executable's existence as their "done" marker.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { FlotillaError } from '../../errors';
import type { AgentBundle } from '../image/bundle';

export interface TarEntry {
  /** Relative path inside the archive (no leading slash, no `..`). */
  path: string;
  data: Buffer;
  mode: number;
}

export interface AgentArchive {
  /** The .tar.gz bytes. */
  data: Buffer;
  /** Hex digests of `data`. */
  sha256: string;
  sha512: string;
  /** Archive member paths, in order. */
  entries: string[];
}

/** Archive members relative to the extraction root (/usr/local or /opt/flotilla). */
export const ARCHIVE_BIN = 'bin/flotilla';
export const ARCHIVE_LIB = 'lib/flotilla';

const BLOCK = 512;

function octal(n: number, width: number): string {
  const s = n.toString(8);
  if (s.length > width - 1) throw new FlotillaError('internal', `tar: ${n} does not fit a ${width}-byte field`);
  return `${s.padStart(width - 1, '0')}\0`;
}

/** One POSIX ustar header; long names go into the 155-byte prefix field. */
function header(entry: TarEntry): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  let name = entry.path;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', 155);
    if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100) throw new FlotillaError('internal', `tar: path too long for ustar: ${name}`);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  h.write(name, 0, 100, 'utf8');
  h.write(octal(entry.mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(entry.data.length, 12), 124, 'ascii');
  h.write(octal(0, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write('0', 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write('root', 265, 'ascii');
  h.write('root', 297, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** A ustar archive of regular files, in the order given (parents are created by tar itself). */
export function tar(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.path.startsWith('/') || e.path.split('/').includes('..') || e.path === '') throw new FlotillaError('internal', `tar: not a relative path: ${e.path}`);
    parts.push(header(e), e.data);
    const pad = (BLOCK - (e.data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(Buffer.alloc(pad, 0));
  }
  parts.push(Buffer.alloc(BLOCK * 2, 0));
  return Buffer.concat(parts);
}

/** The agent bundle as the archive stock AMIs fetch: assets sorted, the executable last. */
export function agentArchive(bundle: Pick<AgentBundle, 'script' | 'assets'>): AgentArchive {
  const entries: TarEntry[] = [...bundle.assets]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([rel, data]) => ({ path: path.posix.join(ARCHIVE_LIB, rel), data, mode: 0o644 }));
  entries.push({ path: ARCHIVE_BIN, data: Buffer.from(bundle.script, 'utf8'), mode: 0o755 });
  const data = gzipSync(tar(entries), { level: 9 });
  return {
    data,
    sha256: createHash('sha256').update(data).digest('hex'),
    sha512: createHash('sha512').update(data).digest('hex'),
    entries: entries.map((e) => e.path),
  };
}

/**
 * s3-fetch.ts bundled for a plain `node` (Debian's nodejs 18): Node built-ins only, so the
 * script that goes into user-data runs without this repository.
 */
export async function fetcherScript(root: string): Promise<string> {
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch (err) {
    throw new FlotillaError('missing-tool', `esbuild is not installed (npm ci): ${(err as Error).message}`);
  }
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: [path.join(root, 'src/provision/pulumi/s3-fetch.ts')],
    bundle: true,
    minify: true,
    platform: 'node',
    target: 'node18',
    format: 'cjs',
    write: false,
    outfile: 'fetch-agent.js',
    legalComments: 'none',
    logLevel: 'silent',
  });
  const out = result.outputFiles[0];
  if (!out) throw new FlotillaError('internal', 'esbuild produced no fetch-agent.js');
  return out.text;
}

/** What the AWS path builds once per program run: the archive and the fetcher. */
export interface AgentArtifacts {
  archive: AgentArchive;
  fetcher: string;
}

const built = new Map<string, Promise<AgentArtifacts>>();

/** Built once per process and checkout (bundling takes a couple of seconds). */
export function buildAgentArtifacts(root: string): Promise<AgentArtifacts> {
  let p = built.get(root);
  if (!p) {
    p = (async () => {
      const { bundleAgent } = await import('../image/bundle');
      const [bundle, fetcher] = await Promise.all([bundleAgent(root), fetcherScript(root)]);
      return { archive: agentArchive(bundle), fetcher };
    })();
    built.set(root, p);
    // A failed build is not remembered: the next call tries again.
    p.catch(() => built.delete(root));
  }
  return p;
}
