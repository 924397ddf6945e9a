/**
 * The layering of src/, read from the code's own imports (static, `export … from`, dynamic
 * `import()`, `require()`; type-only imports count too): each top-level folder may import only
 * its own layer or lower ones, and no module imports itself through a chain (no cycles).
 *
 *   util, errors  <-  ssh  <-  config  <-  units, discovery  <-  cluster  <-  provision (platforms)
 *   <-  verify, chaos  <-  cli  <-  index
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

const SRC = path.join(__dirname, '..', 'src');

/** The layer of each top-level entry of src/ (lower numbers are lower layers). */
export const LAYERS: Readonly<Record<string, number>> = {
  'util': 0,
  'errors.ts': 0,
  // SSH is a transport: keys, pinned connections, waits. It knows no spec or cluster, and the
  // spec's key checks use its one key parser.
  'ssh': 0.5,
  'config': 1,
  'units': 2,
  'discovery': 2,
  'cluster': 3,
  'provision': 4,
  'verify': 5,
  'chaos': 5,
  'cli': 6,
  'index.ts': 7,
};

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile() && d.name.endsWith('.ts'))
    .map((d) => path.join(d.parentPath, d.name))
    .sort();
}

function resolveModule(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined; // a package
  const base = path.resolve(path.dirname(from), spec);
  for (const candidate of [base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile() && candidate.endsWith('.ts')) return candidate;
  }
  return undefined;
}

/** Every src/ module's imports of other src/ modules. */
export function importGraph(files: readonly string[] = sourceFiles(SRC)): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const info = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true);
    const targets = info.importedFiles.flatMap((i) => resolveModule(file, i.fileName) ?? []);
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

function layerOf(file: string): { name: string; layer: number } {
  const top = path.relative(SRC, file).split(path.sep)[0]!;
  const layer = LAYERS[top];
  assert.ok(layer !== undefined, `src/${top} has no layer: add it to LAYERS in test/layering.test.ts`);
  return { name: top, layer };
}

/** Imports that point up the layers. */
export function upwardImports(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const out: string[] = [];
  for (const [from, targets] of graph) {
    for (const to of targets) {
      const a = layerOf(from);
      const b = layerOf(to);
      if (b.layer > a.layer) out.push(`src/${path.relative(SRC, from)} -> src/${path.relative(SRC, to)} (${a.name} may not import ${b.name})`);
    }
  }
  return out;
}

/** Each import cycle once, as the chain of modules. */
export function cycles(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const found: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (m: string): void => {
    state.set(m, 'open');
    stack.push(m);
    for (const t of graph.get(m) ?? []) {
      if (state.get(t) === 'open') found.push([...stack.slice(stack.indexOf(t)), t].map((f) => `src/${path.relative(SRC, f)}`).join(' -> '));
      else if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(m, 'done');
  };
  for (const m of graph.keys()) if (!state.has(m)) visit(m);
  return found;
}

test('imports point down the layers', () => {
  assert.deepEqual(upwardImports(importGraph()), []);
});

test('no import cycles', () => {
  assert.deepEqual(cycles(importGraph()), []);
});

test('the checks find an upward import and a cycle', () => {
  const f = (p: string) => path.join(SRC, p);
  const graph = new Map([
    [f('config/a.ts'), [f('units/b.ts')]],
    [f('units/b.ts'), [f('units/c.ts')]],
    [f('units/c.ts'), [f('units/b.ts')]],
  ]);
  assert.deepEqual(upwardImports(graph), ['src/config/a.ts -> src/units/b.ts (config may not import units)']);
  assert.deepEqual(cycles(graph), ['src/units/b.ts -> src/units/c.ts -> src/units/b.ts']);
});
