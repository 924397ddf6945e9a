/**
 * Checks written in TypeScript, in the manner of kola's register.Test:
 *
 *   import { registerTest } from 'flotilla/src/verify/checks/api';
 *   registerTest({
 *     name: 'etcd.keys-survive',
 *     clusterSize: 3,
 *     tags: ['etcd'],
 *     timeoutMs: 60_000,
 *     async run(c) {
 *       await c.mustSsh(c.nodes[0]!, 'etcdctl put /x 1');
 *       const etcd = await c.etcd();            // etcd3 client (host side, TLS from the inventory)
 *       const units = await c.units();          // UnitsClient over the Registry
 *       const r = await c.ssh('core2', 'systemctl is-active flotilla-fleetd');
 *       if (r.stdout.trim() !== 'active') c.fail('agent not active on core2');
 *     },
 *   });
 *
 * `flotilla verify --tests FILE.ts` loads such a module (bin/flotilla runs through tsx);
 * it may call registerTest or export `tests` (or a default) array.
 */
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import type { VerifyCluster } from '../cluster';
import { CheckFailed, CheckSkipped, type Check } from '../types';

/** What a test gets: the cluster (ssh, mustSsh, etcd(), registry(), units(), nodes) plus fail/skip/log. */
export interface TestCluster extends Pick<VerifyCluster, 'ssh' | 'mustSsh' | 'etcd' | 'registry' | 'units' | 'nodes' | 'node' | 'conn' | 'inventory' | 'name'> {
  /** Fails the test with a message (throws). */
  fail(message: string): never;
  /** Skips the test (throws). */
  skip(message: string): never;
  /** Notes shown with the result. */
  log(message: string): void;
  /** Aborted at the test's deadline. */
  signal: AbortSignal;
}

export interface ClusterTest {
  name: string;
  /** Skipped when the inventory has fewer nodes. */
  clusterSize?: number;
  tags?: string[];
  timeoutMs?: number;
  /** Retry until the deadline (for converging state). */
  retry?: boolean;
  run(cluster: TestCluster): Promise<void>;
}

const registered: ClusterTest[] = [];

/** Registers a test (kola's register.RegisterTest); names must be unique. */
export function registerTest(t: ClusterTest): void {
  if (!t.name || typeof t.run !== 'function') throw new FlotillaError('invalid-input', 'registerTest: a test needs a name and a run function');
  if (registered.some((r) => r.name === t.name)) throw new FlotillaError('conflict', `registerTest: a test named ${t.name} is already registered`);
  registered.push(t);
}

export function registeredTests(): readonly ClusterTest[] {
  return registered;
}

/** Loads test modules (registerTest calls, or `tests`/default exports); returns the tests they define. */
export function loadTestModules(files: readonly string[]): ClusterTest[] {
  const before = registered.length;
  const out: ClusterTest[] = [];
  for (const f of files) {
    let mod: Record<string, unknown>;
    try {
      mod = require(path.resolve(f)) as Record<string, unknown>;
    } catch (err) {
      throw new FlotillaError('invalid-input', `--tests ${f}: cannot load: ${(err as Error).message.split('\n')[0]}`);
    }
    const exported = (mod.tests ?? mod.default) as unknown;
    if (Array.isArray(exported)) out.push(...(exported as ClusterTest[]));
  }
  return [...registered.slice(before), ...out];
}

/** Turns tests into checks (suite `custom`), filtered by tags when given. */
export function testsToChecks(tests: readonly ClusterTest[], cluster: VerifyCluster, opts: { tags?: string[] } = {}): Check[] {
  return tests
    .filter((t) => !opts.tags?.length || (t.tags ?? []).some((x) => opts.tags!.includes(x)))
    .map(
      (t): Check => ({
        suite: 'custom',
        id: `test:${t.name}`,
        name: t.name,
        ...(t.timeoutMs ? { timeoutMs: t.timeoutMs } : {}),
        ...(t.retry ? { retry: true } : {}),
        run: async (ctx) => {
          if (t.clusterSize !== undefined && cluster.nodes.length < t.clusterSize) throw new CheckSkipped(`needs ${t.clusterSize} nodes, the inventory has ${cluster.nodes.length}`);
          const notes: string[] = [];
          const tc: TestCluster = {
            inventory: cluster.inventory,
            name: cluster.name,
            nodes: cluster.nodes,
            node: (n) => cluster.node(n),
            conn: (n) => cluster.conn(n),
            ssh: (n, cmd, o) => cluster.ssh(n, cmd, { signal: ctx.signal, ...o }),
            mustSsh: (n, cmd, o) => cluster.mustSsh(n, cmd, { signal: ctx.signal, ...o }),
            etcd: () => cluster.etcd(),
            registry: () => cluster.registry(),
            units: () => cluster.units(),
            fail: (m) => {
              throw new CheckFailed(m);
            },
            skip: (m) => {
              throw new CheckSkipped(m);
            },
            log: (m) => void notes.push(m),
            signal: ctx.signal,
          };
          await t.run(tc);
          return notes.length ? notes.join('; ') : 'ok';
        },
      }),
    );
}
