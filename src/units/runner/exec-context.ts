/**
 * What a service's commands run with, resolved as each start attempt begins
 * (systemd.exec(5)): the environment (a base of PATH only, then Environment=, then
 * EnvironmentFile= files read from disk) and the working directory.
 */
import * as fs from 'node:fs';
import { parseEnvironmentFile } from './environment';
import type { ServiceConfig } from './service-config';

/** systemd's default PATH for services. */
export const DEFAULT_SERVICE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `base`, then Environment=, then EnvironmentFile= (which overrides it, as in systemd). */
export function serviceEnvironment(base: Readonly<Record<string, string>>, cfg: ServiceConfig): Record<string, string> {
  const env: Record<string, string> = { ...base };
  for (const [k, v] of cfg.environment) env[k] = v;
  for (const f of cfg.environmentFiles) {
    let text: string;
    try {
      text = fs.readFileSync(f.path, 'utf8');
    } catch (err) {
      if (f.optional && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new Error(`EnvironmentFile=${f.path}: ${(err as Error).message}`);
    }
    for (const [k, v] of parseEnvironmentFile(text, f.path)) env[k] = v;
  }
  return env;
}

/** WorkingDirectory=, or / without one or when an optional (`-`) one is missing. */
export function serviceWorkingDirectory(cfg: ServiceConfig): string {
  const wd = cfg.workingDirectory;
  if (!wd) return '/';
  try {
    if (fs.statSync(wd.path).isDirectory()) return wd.path;
  } catch {
    /* missing: handled below */
  }
  if (wd.optional) return '/';
  throw new Error(`WorkingDirectory=${wd.path} does not exist or is not a directory`);
}
