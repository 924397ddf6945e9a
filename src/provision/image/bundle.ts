/**
 * Flotilla's CLI (and so its node agent, `flotilla fleetd`) bundled into one CommonJS file
 * for Debian's Node.js 18, installed in the node image as /usr/local/bin/flotilla.
 *
 * The bundle keeps the repository's layout for the few files read at run time (templates,
 * etcd3's .proto files): every `__dirname`/`__filename` in a bundled module is replaced by
 * where that module would sit under AGENT_ROOT, and those asset files are copied there.
 * Native addons (ssh2's optional crypto binding, cpu-features) are left out: they are built
 * for the host's Node ABI, and both packages fall back to pure JavaScript without them.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';

/** Where the agent's run-time files live in the image (the bundle maps the repo root here). */
export const AGENT_ROOT = '/usr/local/lib/flotilla';
/** The executable in the image. */
export const AGENT_BIN = '/usr/local/bin/flotilla';

/** Files and directories (relative to the repository root) the bundled code reads at run time. */
export const AGENT_ASSETS = ['templates', 'node_modules/etcd3/proto'] as const;

export interface AgentBundle {
  /** The executable file's text: `#!/usr/bin/node` then the CommonJS bundle. */
  script: string;
  /** Asset files: path relative to the repository root -> contents. */
  assets: Map<string, Buffer>;
  /** sha256 over the script and every asset (path and contents), hex. */
  hash: string;
}

/** The repository root: the directory holding Flotilla's package.json. */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if ((JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'flotilla') return dir;
      } catch {
        /* not ours; keep looking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new FlotillaError('internal', `cannot find Flotilla's package.json above ${__dirname}`);
    dir = up;
  }
}

function listFiles(root: string, rel: string): string[] {
  const abs = path.join(root, rel);
  const st = fs.statSync(abs);
  if (st.isFile()) return [rel];
  const out: string[] = [];
  for (const e of fs.readdirSync(abs).sort()) out.push(...listFiles(root, path.join(rel, e)));
  return out;
}

/** Bundles the agent entry (src/cli/agent-main.ts: fleetd only) with esbuild, minified, for node18. */
export async function bundleAgent(root = repoRoot()): Promise<AgentBundle> {
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch (err) {
    throw new FlotillaError('missing-tool', `esbuild is not installed (run scripts/setup-host.sh): ${(err as Error).message}`);
  }
  const mapDirname: import('esbuild').Plugin = {
    name: 'flotilla-dirname',
    setup(build) {
      build.onLoad({ filter: /\.(ts|js|cjs)$/ }, async (args) => {
        const text = await fs.promises.readFile(args.path, 'utf8');
        const loader = args.path.endsWith('.ts') ? 'ts' : 'js';
        if (!/\b__(dirname|filename)\b/.test(text)) return { contents: text, loader };
        const rel = path.relative(root, args.path);
        if (rel.startsWith('..')) return { contents: text, loader };
        const mapped = path.posix.join(AGENT_ROOT, rel.split(path.sep).join('/'));
        // Declared on the first line so that line numbers stay as they were; a shebang stays first.
        const decl = `var __dirname = ${JSON.stringify(path.posix.dirname(mapped))}, __filename = ${JSON.stringify(mapped)};`;
        const contents = text.startsWith('#!') ? text.replace(/^(#![^\n]*\n)/, `$1${decl}`) : `${decl}${text}`;
        return { contents, loader };
      });
    },
  };
  let result: import('esbuild').BuildResult<{ write: false }>;
  try {
    result = await esbuild.build({
      absWorkingDir: root,
      entryPoints: [path.join(root, 'src/cli/agent-main.ts')],
      minify: true,
      bundle: true,
      platform: 'node',
      target: 'node18',
      format: 'cjs',
      write: false,
      outfile: 'flotilla.js',
      external: ['*.node'],
      banner: { js: '#!/usr/bin/node' },
      legalComments: 'none',
      logLevel: 'silent',
      plugins: [mapDirname],
    });
  } catch (err) {
    throw new FlotillaError('internal', `bundling the Flotilla agent failed: ${(err as Error).message}`);
  }
  const out = result.outputFiles.find((f) => f.path.endsWith('flotilla.js'));
  if (!out) throw new FlotillaError('internal', 'esbuild produced no flotilla.js');
  const script = out.text;
  const assets = new Map<string, Buffer>();
  for (const a of AGENT_ASSETS) for (const f of listFiles(root, a)) assets.set(f.split(path.sep).join('/'), fs.readFileSync(path.join(root, f)));
  const h = createHash('sha256').update(script);
  for (const [p, data] of [...assets].sort(([a], [b]) => (a < b ? -1 : 1))) h.update(`\0${p}\0${data.length}\0`).update(data);
  return { script, assets, hash: h.digest('hex') };
}

/** Writes the bundle into a root filesystem: the executable and its run-time files. */
export function installAgent(bundle: AgentBundle, rootfs: string): void {
  const bin = path.join(rootfs, AGENT_BIN);
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  fs.writeFileSync(bin, bundle.script, { mode: 0o755 });
  fs.chmodSync(bin, 0o755);
  for (const [rel, data] of bundle.assets) {
    const dest = path.join(rootfs, AGENT_ROOT, rel);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(dest, data, { mode: 0o644 });
  }
}
