/** Runs the CLI in-process with captured output, or as a real process through bin/flotilla. */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { runCli } from '../../src/cli/main';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function cli(...argv: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { out: (t) => void (stdout += t), err: (t) => void (stderr += t), isTTY: false });
  return { code, stdout, stderr };
}

export const BIN = path.join(__dirname, '..', '..', 'bin', 'flotilla');

export function cliProcess(argv: string[], opts: { cwd?: string; input?: string; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...argv], { encoding: 'utf8', cwd: opts.cwd, input: opts.input, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
