/** Which kernel modules the image keeps: the ones named by the recipe and everything they depend on (modules.dep). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';

/** Module name as the kernel knows it: file stem with '-' as '_'. */
export function moduleName(file: string): string {
  return path.basename(file).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

export interface ModuleIndex {
  /** module name -> path relative to lib/modules/KVER */
  files: Map<string, string>;
  /** module path -> dependency paths (from modules.dep) */
  deps: Map<string, string[]>;
  builtin: Set<string>;
}

export function readModuleIndex(kdir: string): ModuleIndex {
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
