/**
 * One verification run: what `flotilla verify` does and what `flotilla smoke` calls after
 * `up`. Validates custom checks first (bad input fails before any connection), connects
 * to every node in parallel, runs the suites' and custom checks, builds the report, and
 * optionally fills an artifacts directory (report files, journals of failed units).
 */
import { randomBytes } from 'node:crypto';
import type { ResolvedSpec } from '../config/spec';
import { FlotillaError } from '../errors';
import { inventoryFromRecord } from '../provision/local/inventory';
import type { ClusterRecord } from '../cluster/store';
import { Artifacts } from './artifacts';
import { loadChecksFile, checksFromFile, type CheckFile } from './checks/yaml';
import { testsToChecks, type ClusterTest } from './checks/api';
import { VerifyCluster } from './cluster';
import { timeScale, type Inventory } from '../cluster/inventory';
import { makeReport, runChecks } from './runner';
import type { ConnectOptions } from '../ssh';
import { DEFAULT_SUITES, buildSuite, type SuiteName } from './suites';
import type { Check, CheckResult, Report } from './types';

export interface VerifyOptions {
  inventory: Inventory;
  /** Built-in suites; default: node, etcd, fleet, discovery — or none when only custom checks are given. */
  suites?: readonly SuiteName[];
  /** YAML check files (`--checks`). */
  checksFiles?: readonly string[];
  /** TypeScript tests (`--tests`, or registered in-process). */
  tests?: readonly ClusterTest[];
  tags?: string[];
  spec?: ResolvedSpec;
  /** Default per-check deadline (ms). */
  timeoutMs?: number;
  /** goss --retry-timeout: retry every failing check until this long (ms). */
  retryTimeoutMs?: number;
  failoverTimeoutMs?: number;
  ssh?: ConnectOptions;
  /** etcd dial/request deadline for the host's registry connection (ms, default 5000). */
  etcdTimeoutMs?: number;
  /** Reuse an open cluster (smoke keeps its connections for artifacts); it is not closed here. */
  cluster?: VerifyCluster;
  artifacts?: string | Artifacts;
  onStart?: (c: Check) => void;
  onResult?: (r: CheckResult) => void;
  /** Called with the checks before they run (reporters size their progress). */
  onPlan?: (checks: readonly Check[]) => void;
  signal?: AbortSignal;
}

export interface VerifyRun {
  report: Report;
  artifacts?: Artifacts;
}

export async function runVerify(opts: VerifyOptions): Promise<VerifyRun> {
  const started = Date.now();
  const inv = opts.inventory;
  const nodeNames = inv.nodes.map((n) => n.name);
  const checkFiles: CheckFile[] = (opts.checksFiles ?? []).map((f) => loadChecksFile(f, nodeNames));
  const custom = checkFiles.length > 0 || (opts.tests?.length ?? 0) > 0;
  const suites = [...(opts.suites ?? (custom ? [] : DEFAULT_SUITES))];
  const cluster = opts.cluster ?? new VerifyCluster(inv, { ...(opts.ssh ? { ssh: opts.ssh } : {}), ...(opts.spec ? { spec: opts.spec } : {}), ...(opts.etcdTimeoutMs ? { etcdTimeoutMs: opts.etcdTimeoutMs } : {}) });
  try {
    const connectStart = Date.now();
    const { failed } = await cluster.connect();
    const connections = inv.nodes.map((n) => {
      const err = failed.get(n.name);
      const c = cluster.pool.connections.get(n.name);
      return err ? { node: n.name, ok: false, error: err.message } : { node: n.name, ok: true, ms: c?.connectMs ?? Date.now() - connectStart };
    });
    const runId = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const checks: Check[] = [];
    for (const s of suites) checks.push(...buildSuite(s, cluster, { runId, ...(opts.failoverTimeoutMs !== undefined ? { failoverTimeoutMs: opts.failoverTimeoutMs } : {}) }));
    for (const cf of checkFiles) checks.push(...checksFromFile(cf, cluster));
    if (opts.tests?.length) checks.push(...testsToChecks(opts.tests, cluster, opts.tags ? { tags: opts.tags } : {}));
    opts.onPlan?.(checks);
    const results = await runChecks(checks, cluster, {
      timeScale: timeScale(inv),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.retryTimeoutMs !== undefined ? { retryTimeoutMs: opts.retryTimeoutMs } : {}),
      ...(opts.onResult ? { onResult: opts.onResult } : {}),
      ...(opts.onStart ? { onStart: opts.onStart } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const report = makeReport(inv.name, [...suites, ...(custom ? ['custom'] : [])], results, started, connections);
    let artifacts: Artifacts | undefined;
    if (opts.artifacts !== undefined) {
      artifacts = typeof opts.artifacts === 'string' ? new Artifacts(opts.artifacts) : opts.artifacts;
      await artifacts.collectJournals(cluster, report);
      artifacts.writeReport(report);
      artifacts.writeIndex({ cluster: inv.name, startedAt: report.startedAt, ok: report.ok });
    }
    return { report, ...(artifacts ? { artifacts } : {}) };
  } finally {
    if (!opts.cluster) await cluster.close();
  }
}

/**
 * The node, etcd and fleet suites after `flotilla replace --verify` replaced `node`: throws
 * naming the failed checks, else returns what passed (replaceNodes' `verify` hook).
 */
export async function verifyReplaced(record: ClusterRecord, node: string): Promise<string> {
  const names: SuiteName[] = ['node', 'etcd', 'fleet'];
  const { report } = await runVerify({ inventory: inventoryFromRecord(record), suites: names });
  const failed = report.results.filter((r) => r.status === 'fail' || r.status === 'error');
  if (failed.length) throw new FlotillaError('external', `flotilla verify after replacing ${node}: ${failed.length} check${failed.length === 1 ? '' : 's'} failed: ${failed.slice(0, 5).map((r) => `${r.name}${r.node ? ` [${r.node}]` : ''}: ${r.message ?? r.status}`).join('; ')}`);
  return `verify ${names.join(',')}: ${report.results.length} checks passed`;
}
