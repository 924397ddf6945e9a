/**
 * Talking to libvirtd through `virsh -c URI`: argv only (no shell), documents passed as files
 * Flotilla wrote, errors turned into FlotillaErrors that say what failed. The one place that
 * runs virsh.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import { runTool } from '../exec';

/** The system daemon: domains run as libvirt-qemu, started and stopped by libvirtd. */
export const DEFAULT_URI = 'qemu:///system';

export interface VirshOptions {
  uri?: string;
  timeoutMs?: number;
}

/** libvirt's "no such object" errors (domain, pool, volume). */
const NOT_FOUND = /(failed to get|no) (domain|storage pool|storage vol|network)|Domain not found|Storage pool not found|Storage volume not found|no storage vol(ume)? with matching/i;

export class VirshError extends FlotillaError {
  constructor(
    readonly args: readonly string[],
    readonly stderr: string,
    notFound: boolean,
  ) {
    super(notFound ? 'not-found' : 'external', `virsh ${args.slice(0, 4).join(' ')}${args.length > 4 ? ' ...' : ''}: ${stderr.trim().split('\n').slice(-3).join(' ') || 'failed'}`);
  }
}

function checkUri(uri: string): string {
  if (!/^[a-z+]+:\/\/[A-Za-z0-9./_-]*$/.test(uri)) throw new FlotillaError('invalid-input', `not a libvirt URI: ${JSON.stringify(uri)}`);
  return uri;
}

/** Runs `virsh -c URI ARGS...`, resolving with stdout. */
export async function virsh(args: readonly string[], opts: VirshOptions = {}): Promise<string> {
  const uri = checkUri(opts.uri ?? DEFAULT_URI);
  try {
    return await runTool('virsh', ['-q', '-c', uri, ...args], { timeoutMs: opts.timeoutMs ?? 120_000, env: { ...process.env, LC_ALL: 'C' } });
  } catch (err) {
    if (!FlotillaError.is(err) || err.code !== 'external') throw err;
    const detail = err.message.split('\n').slice(1).join('\n');
    throw new VirshError(args, detail, NOT_FOUND.test(detail));
  }
}

/** Like `virsh`, but a "not found" answer resolves to undefined. */
export async function virshMaybe(args: readonly string[], opts: VirshOptions = {}): Promise<string | undefined> {
  try {
    return await virsh(args, opts);
  } catch (err) {
    if (err instanceof VirshError && err.code === 'not-found') return undefined;
    throw err;
  }
}

/** Runs a virsh command that takes an XML file (define, pool-define, vol-create), via a private temp file. */
export async function virshWithXml(verb: string, before: readonly string[], xml: string, after: readonly string[] = [], opts: VirshOptions = {}): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-virsh-'));
  try {
    const file = path.join(dir, 'doc.xml');
    fs.writeFileSync(file, xml, { mode: 0o600 });
    return await virsh([verb, ...before, file, ...after], opts);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
