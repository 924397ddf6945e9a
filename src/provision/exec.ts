/** Running host tools for local provisioning: output to a log file, located errors. */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { FlotillaError } from '../errors';

export interface RunOptions {
  /** Appends stdout and stderr here; without it output is captured for the error message. */
  logFile?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  input?: string;
}

/** Runs a command to completion; resolves with stdout (when no log file), rejects with an `external` error. */
export function runTool(command: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    let fd: number | undefined;
    if (opts.logFile) {
      fd = fs.openSync(opts.logFile, 'a');
      fs.writeSync(fd, `$ ${[command, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(' ')}\n`);
    }
    const child = spawn(command, [...args], {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', fd ?? 'pipe', fd ?? 'pipe'],
    });
    if (fd !== undefined) fs.closeSync(fd);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.once('error', (err) => {
      if (timer) clearTimeout(timer);
      const code = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing-tool' : 'external';
      reject(new FlotillaError(code, `${command}: ${err.message}${code === 'missing-tool' ? ' (run scripts/setup-host.sh)' : ''}`));
    });
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (code === 0) return resolve(stdout);
      const how = code !== null ? `exit status ${code}` : `killed by ${signal}${opts.timeoutMs ? ` (timeout ${opts.timeoutMs} ms?)` : ''}`;
      const detail = opts.logFile ? `see ${opts.logFile}` : (stderr || stdout).trim().split('\n').slice(-15).join('\n');
      reject(new FlotillaError('external', `${command} ${args.slice(0, 6).join(' ')}${args.length > 6 ? ' ...' : ''}: ${how}\n${detail}`));
    });
    if (child.stdin) {
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input);
    }
  });
}

/** True if `command` is found on PATH (or is an existing absolute path). */
export function haveTool(command: string): boolean {
  if (command.includes('/')) return fs.existsSync(command);
  return spawnSync('sh', ['-c', `command -v "$1" >/dev/null 2>&1`, 'sh', command]).status === 0;
}

/** Mount points at or below `dir`, deepest first (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
  let text = '';
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const base = dir.replace(/\/+$/, '');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    // mountinfo escapes space, tab, newline and backslash as octal.
    const p = mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (p === base || p.startsWith(`${base}/`)) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * Removes a directory tree, first unmounting anything mounted below it (a failed debootstrap
 * can leave /proc or /sys mounted in its target). Refuses to delete while mounts remain.
 */
export function removeTree(dir: string): void {
  for (const mp of mountsUnder(dir)) spawnSync('umount', ['-l', mp]);
  const left = mountsUnder(dir);
  if (left.length > 0) throw new FlotillaError('external', `refusing to delete ${dir}: still mounted below it: ${left.join(', ')}`);
  fs.rmSync(dir, { recursive: true, force: true });
}
