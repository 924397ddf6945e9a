/**
 * The real validators, run as host tools: `cloud-init schema` (cloud-init 22.4 on Debian 12)
 * and `ignition-validate` (Ignition 2.14). Both are installed by scripts/setup-host.sh.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlotillaError } from '../errors';

export interface ValidatorResult {
  tool: 'cloud-init schema' | 'ignition-validate';
  ok: boolean;
  /** The tool's own messages, trimmed; empty when ok. */
  messages: string[];
}

function which(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = path.join(dir, tool);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

export function hasTool(tool: 'cloud-init' | 'ignition-validate'): boolean {
  return which(tool) !== undefined;
}

function requireTool(tool: 'cloud-init' | 'ignition-validate'): string {
  const p = which(tool);
  if (!p) {
    throw new FlotillaError('missing-tool', `${tool} is not installed; run scripts/setup-host.sh (Debian package ${tool === 'cloud-init' ? 'cloud-init' : 'ignition'})`);
  }
  return p;
}

/** Runs `fn` with `content` in a temporary file, removed afterwards. */
function withTempFile<T>(content: string | Uint8Array, suffix: string, fn: (file: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-validate-'));
  const file = path.join(dir, `config${suffix}`);
  try {
    fs.writeFileSync(file, content);
    return fn(file);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** `cloud-init schema --config-file`: exit 0 and "Valid cloud-config" or a list of errors. */
export function cloudInitSchema(content: string): ValidatorResult {
  const bin = requireTool('cloud-init');
  return withTempFile(content, '.yaml', (file) => {
    const r = spawnSync(bin, ['schema', '--config-file', file], { encoding: 'utf8', timeout: 60_000 });
    const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    const ok = r.status === 0 && /Valid cloud-config/.test(text);
    const messages = ok
      ? []
      : text
          .split('\n')
          .map((l) => l.replaceAll(file, '<user-data>').trim())
          .filter((l) => l && !/^Valid cloud-config/.test(l));
    return { tool: 'cloud-init schema', ok, messages };
  });
}

/** `ignition-validate FILE`: exit 0 and silence when valid. */
export function ignitionValidate(content: string): ValidatorResult {
  const bin = requireTool('ignition-validate');
  return withTempFile(content, '.ign', (file) => {
    const r = spawnSync(bin, [file], { encoding: 'utf8', timeout: 60_000 });
    const text = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    const ok = r.status === 0;
    return { tool: 'ignition-validate', ok, messages: ok ? [] : text.split('\n').filter(Boolean) };
  });
}

/** Runs the real validator for each document, `concurrency` at a time, in worker processes. */
export async function validateMany(
  docs: ReadonlyArray<{ format: 'cloud-config' | 'ignition'; content: string }>,
  concurrency = 2,
): Promise<ValidatorResult[]> {
  const { execFile } = await import('node:child_process');
  const run = (d: { format: 'cloud-config' | 'ignition'; content: string }) =>
    new Promise<ValidatorResult>((resolve) => {
      const tool = d.format === 'ignition' ? 'ignition-validate' : 'cloud-init';
      const bin = requireTool(tool);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-validate-'));
      const file = path.join(dir, d.format === 'ignition' ? 'config.ign' : 'config.yaml');
      fs.writeFileSync(file, d.content);
      const args = d.format === 'ignition' ? [file] : ['schema', '--config-file', file];
      execFile(bin, args, { timeout: 60_000 }, (err, stdout, stderr) => {
        fs.rmSync(dir, { recursive: true, force: true });
        const text = `${stdout}${stderr}`;
        const ok = !err && (d.format === 'ignition' || /Valid cloud-config/.test(text));
        resolve({
          tool: d.format === 'ignition' ? 'ignition-validate' : 'cloud-init schema',
          ok,
          messages: ok ? [] : text.split('\n').map((l) => l.replaceAll(file, '<user-data>').trim()).filter(Boolean),
        });
      });
    });
  const results: ValidatorResult[] = new Array(docs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, docs.length) }, async () => {
      while (next < docs.length) {
        const i = next++;
        results[i] = await run(docs[i]!);
      }
    }),
  );
  return results;
}
