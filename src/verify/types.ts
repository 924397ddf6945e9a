/** The check model shared by the runner, the suites, custom checks and the reporters. */
import type { InventoryNode } from '../cluster/inventory';
import type { ExecOptions, ExecResult, NodeConnection } from '../ssh';
import type { VerifyCluster } from './cluster';

export type CheckStatus = 'pass' | 'fail' | 'skip' | 'error';

export interface CheckResult {
  /** Stable identifier, e.g. `node.hostname` or `custom.file:/etc/hosts`. */
  id: string;
  suite: string;
  /** Human name. */
  name: string;
  /** The node it ran on, for per-node checks. */
  node?: string;
  status: CheckStatus;
  /** Why (fail/skip/error) or what was seen (pass). */
  message: string;
  durationMs: number;
  attempts: number;
  /** ISO 8601. */
  startedAt: string;
  /** Structured extras: failed systemd units, unit placements, ... (artifacts use `failedUnits`). */
  details?: CheckDetails;
}

export interface CheckDetails {
  /** systemd units found failed, per node: artifacts fetch their journals. */
  failedUnits?: Array<{ node: string; unit: string }>;
  [key: string]: unknown;
}

/** What a check's run() may return instead of a plain message. */
export interface CheckOutcome {
  status: 'pass' | 'fail' | 'skip';
  message: string;
  details?: CheckDetails;
}

export interface Check {
  id: string;
  suite: string;
  name: string;
  /** Per-node check: its node (the runner gives it that node's connection). */
  node?: string;
  /** Deadline for the whole check, every attempt included (default: the run's timeoutMs). */
  timeoutMs?: number;
  /** Converging state: retry failed attempts until the deadline (goss --retry-timeout). */
  retry?: boolean;
  /** Pause between attempts (default 500 ms). */
  retryIntervalMs?: number;
  /** Runs alone after every other check (destructive checks such as failover). */
  exclusive?: boolean;
  /**
   * Pass: return (optionally a message or an outcome). Fail: throw CheckFailed or return
   * {status:'fail'}. Skip: throw CheckSkipped. Any other exception is an `error`.
   */
  run(ctx: CheckContext): Promise<string | void | CheckOutcome>;
}

export interface CheckContext {
  cluster: VerifyCluster;
  /** The check's node (per-node checks). */
  node: InventoryNode | undefined;
  /** Aborted at the deadline; pass it on to long waits. */
  signal: AbortSignal;
  /** Epoch ms when the check's deadline passes. */
  deadline: number;
  /** 1 for the first attempt. */
  attempt: number;
  /** The node's connection (throws for cluster-wide checks). */
  conn(): NodeConnection;
  /** exec on the check's node, bounded by the check's deadline. */
  exec(command: string, opts?: ExecOptions): Promise<ExecResult>;
}

/** Thrown by a check when what it checks does not hold. */
export class CheckFailed extends Error {
  override readonly name = 'CheckFailed';
  constructor(
    message: string,
    readonly details?: CheckDetails,
  ) {
    super(message);
  }
}

/** Thrown by a check that does not apply (e.g. TLS checks on a plain-HTTP cluster). */
export class CheckSkipped extends Error {
  override readonly name = 'CheckSkipped';
}

/** Fails the check with `message` unless `cond` holds. */
export function expect(cond: unknown, message: string, details?: CheckDetails): asserts cond {
  if (!cond) throw new CheckFailed(message, details);
}

export interface ReportSummary {
  total: number;
  pass: number;
  fail: number;
  skip: number;
  error: number;
}

export interface Report {
  cluster: string;
  /** ISO 8601. */
  startedAt: string;
  durationMs: number;
  suites: string[];
  results: CheckResult[];
  summary: ReportSummary;
  /** True only when no check failed or errored (skips do not count against). */
  ok: boolean;
  /** Connection setup per node (ms), for the report and the boot timeline. */
  connections: Array<{ node: string; ok: boolean; ms?: number; error?: string }>;
}

export function summarize(results: readonly CheckResult[]): ReportSummary {
  const s: ReportSummary = { total: results.length, pass: 0, fail: 0, skip: 0, error: 0 };
  for (const r of results) s[r.status]++;
  return s;
}
