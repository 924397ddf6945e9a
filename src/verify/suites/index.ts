/** The built-in suites by name. `failover` is destructive and runs only when asked for. */
import { FlotillaError } from '../../errors';
import type { VerifyCluster } from '../cluster';
import type { Check } from '../types';
import { discoverySuite } from './discovery';
import { etcdSuite } from './etcd';
import { failoverSuite } from './failover';
import { fleetSuite } from './fleet';
import { nodeSuite } from './node';

export const SUITE_NAMES = ['node', 'etcd', 'fleet', 'discovery', 'failover'] as const;
export type SuiteName = (typeof SUITE_NAMES)[number];
/** What `flotilla verify` runs without --suite. */
export const DEFAULT_SUITES: readonly SuiteName[] = ['node', 'etcd', 'fleet', 'discovery'];

export interface SuiteOptions {
  /** Identifies this run (keys written by checks are namespaced by it). */
  runId: string;
  /** How long failover waits for units to move (ms, default 60 000). */
  failoverTimeoutMs?: number;
}

export function buildSuite(name: SuiteName, cluster: VerifyCluster, opts: SuiteOptions): Check[] {
  switch (name) {
    case 'node':
      return nodeSuite(cluster);
    case 'etcd':
      return etcdSuite(cluster, opts);
    case 'fleet':
      return fleetSuite(cluster);
    case 'discovery':
      return discoverySuite(cluster);
    case 'failover':
      return failoverSuite(cluster, opts.failoverTimeoutMs !== undefined ? { timeoutMs: opts.failoverTimeoutMs } : {});
  }
}

/** Parses `node,etcd` into suite names; unknown names are a usage error naming the choices. */
export function parseSuites(list: string): SuiteName[] {
  const names = list.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !(SUITE_NAMES as readonly string[]).includes(n));
  if (bad.length) throw new FlotillaError('usage', `unknown suite${bad.length > 1 ? 's' : ''} ${bad.join(', ')} (choose from ${SUITE_NAMES.join(', ')})`);
  return [...new Set(names)] as SuiteName[];
}
