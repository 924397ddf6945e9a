/**
 * The check engine: runs checks concurrently (across nodes and within a node, each node's
 * commands sharing its one connection), each under its own deadline, retrying converging
 * checks until the deadline (like goss --retry-timeout). Exclusive checks (destructive
 * ones such as failover) run alone, after the rest.
 */
import { FlotillaError } from '../errors';
import { raceAbort, sleep } from '../util/async';
import type { VerifyCluster } from './cluster';
import { HostKeyMismatchError, SshError } from '../ssh';
import { CheckFailed, CheckSkipped, summarize, type Check, type CheckContext, type CheckOutcome, type CheckResult, type Report } from './types';

export interface RunOptions {
  /** Default deadline per check (ms, default 30 000 × timeScale). */
  timeoutMs?: number;
  /** Multiplies the default deadline and each check's own `timeoutMs` (slow, emulated nodes). */
  timeScale?: number;
  /**
   * Retry every failing check until this long after it started (ms), not only the
   * checks marked `retry` (goss --retry-timeout). The deadline becomes the larger of the two.
   */
  retryTimeoutMs?: number;
  /** Checks in flight at once (default 64; each node's connection also queues its channels). */
  concurrency?: number;
  /** Called as each result is known (progress reporting). */
  onResult?: (r: CheckResult) => void;
  /** Called when a check starts. */
  onStart?: (c: Check) => void;
  /** Aborts the whole run: checks in flight end as `error`. */
  signal?: AbortSignal;
}

/** Errors that no retry can fix: wrong host key, unusable inventory. */
function permanent(err: unknown): boolean {
  return err instanceof HostKeyMismatchError || (err instanceof SshError && (err.kind === 'auth' || err.kind === 'host-key')) || (FlotillaError.is(err) && (err.code === 'invalid-input' || err.code === 'usage'));
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Runs one check to its final result. */
export async function runCheck(check: Check, cluster: VerifyCluster, opts: RunOptions = {}): Promise<CheckResult> {
  const started = Date.now();
  const scale = opts.timeScale ?? 1;
  const timeoutMs = check.timeoutMs !== undefined ? check.timeoutMs * scale : opts.timeoutMs ?? 30_000 * scale;
  const retrying = check.retry === true || (opts.retryTimeoutMs ?? 0) > 0;
  const budget = Math.max(timeoutMs, check.retry ? 0 : opts.retryTimeoutMs ?? 0);
  const deadline = started + budget;
  const interval = check.retryIntervalMs ?? 500;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`deadline of ${budget} ms passed`)), budget);
  const onOuter = (): void => ac.abort(opts.signal?.reason ?? new Error('run aborted'));
  opts.signal?.addEventListener('abort', onOuter, { once: true });
  const node = check.node !== undefined ? cluster.inventory.nodes.find((n) => n.name === check.node) : undefined;
  const base = { id: check.id, suite: check.suite, name: check.name, ...(check.node !== undefined ? { node: check.node } : {}), startedAt: new Date(started).toISOString() };
  let attempt = 0;
  let last: { status: 'fail' | 'error'; message: string; details?: CheckOutcome['details'] } = { status: 'error', message: 'not run' };
  try {
    for (;;) {
      attempt++;
      const ctx: CheckContext = {
        cluster,
        node,
        signal: ac.signal,
        deadline,
        attempt,
        conn: () => {
          if (!check.node) throw new FlotillaError('internal', `check ${check.id} is not a per-node check`);
          return cluster.conn(check.node);
        },
        exec: (command, eo = {}) => {
          if (!check.node) throw new FlotillaError('internal', `check ${check.id} is not a per-node check`);
          // The check's deadline (the signal) ends the command; its own timeout is only a backstop.
          return cluster.conn(check.node).exec(command, { timeoutMs: Math.max(1, deadline - Date.now()) + 1000, ...eo, signal: ac.signal });
        },
      };
      try {
        if (check.node !== undefined && !node) throw new FlotillaError('not-found', `no node ${check.node} in the inventory`);
        const out = await raceAbort(check.run(ctx), ac.signal);
        const outcome: CheckOutcome = typeof out === 'object' && out !== null ? out : { status: 'pass', message: typeof out === 'string' ? out : 'ok' };
        if (outcome.status !== 'fail') return { ...base, status: outcome.status, message: outcome.message, durationMs: Date.now() - started, attempts: attempt, ...(outcome.details ? { details: outcome.details } : {}) };
        last = { status: 'fail', message: outcome.message, ...(outcome.details ? { details: outcome.details } : {}) };
      } catch (err) {
        if (err instanceof CheckSkipped) return { ...base, status: 'skip', message: err.message, durationMs: Date.now() - started, attempts: attempt };
        if (ac.signal.aborted) {
          // The deadline (or the run) ended this attempt: report what the check was doing.
          const what = err === ac.signal.reason ? '' : `: ${messageOf(err)}`;
          const prev = attempt > 1 && last.message !== 'not run' ? ` (previous attempt: ${last.message})` : '';
          const reason = opts.signal?.aborted ? `run aborted${what}` : `${messageOf(ac.signal.reason)}${what}${prev}`;
          return { ...base, status: opts.signal?.aborted ? 'error' : 'fail', message: reason, durationMs: Date.now() - started, attempts: attempt, ...(last.details ? { details: last.details } : {}) };
        }
        if (err instanceof CheckFailed) last = { status: 'fail', message: err.message, ...(err.details ? { details: err.details } : {}) };
        else if (err instanceof SshError && err.kind === 'timeout') {
          // A command that ran out of the check's time is the node failing the check, not the
          // harness; an earlier attempt's own verdict says more than "timed out", so it stays.
          if (last.status !== 'fail') last = { status: 'fail', message: messageOf(err) };
        } else {
          last = { status: 'error', message: messageOf(err) };
          if (permanent(err)) break;
        }
      }
      if (!retrying || Date.now() + interval >= deadline) break;
      await sleep(interval, ac.signal);
      if (ac.signal.aborted) break;
    }
    const tries = attempt > 1 ? ` (${attempt} attempts in ${Date.now() - started} ms)` : '';
    return { ...base, status: last.status, message: `${last.message}${tries}`, durationMs: Date.now() - started, attempts: attempt, ...(last.details ? { details: last.details } : {}) };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onOuter);
  }
}


/** Runs checks; results come back in the order the checks were given. */
export async function runChecks(checks: readonly Check[], cluster: VerifyCluster, opts: RunOptions = {}): Promise<CheckResult[]> {
  const results: CheckResult[] = new Array(checks.length);
  const shared = checks.map((c, i) => [c, i] as const).filter(([c]) => !c.exclusive);
  const alone = checks.map((c, i) => [c, i] as const).filter(([c]) => c.exclusive);
  const one = async ([c, i]: readonly [Check, number]): Promise<void> => {
    opts.onStart?.(c);
    const r = await runCheck(c, cluster, opts).catch((err: unknown) => ({
      id: c.id, suite: c.suite, name: c.name, ...(c.node !== undefined ? { node: c.node } : {}),
      status: 'error' as const, message: `internal: ${messageOf(err)}`, durationMs: 0, attempts: 0, startedAt: new Date().toISOString(),
    }));
    results[i] = r;
    opts.onResult?.(r);
  };
  let next = 0;
  const limit = Math.max(1, opts.concurrency ?? 64);
  await Promise.all(
    Array.from({ length: Math.min(limit, shared.length) }, async () => {
      while (next < shared.length) await one(shared[next++]!);
    }),
  );
  for (const x of alone) await one(x);
  return results;
}

/** Builds the report from results. */
export function makeReport(cluster: string, suites: string[], results: CheckResult[], startedAt: number, connections: Report['connections'] = []): Report {
  const summary = summarize(results);
  return {
    cluster,
    startedAt: new Date(startedAt).toISOString(),
    durationMs: Date.now() - startedAt,
    suites,
    results,
    summary,
    ok: summary.fail === 0 && summary.error === 0,
    connections,
  };
}
