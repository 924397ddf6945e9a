/**
 * The chaos report as a table (one row per fault: target, when, how long to recover,
 * how long to be whole again, each invariant) followed by every failure and note.
 */
import { table } from '../util/table';
import { INVARIANTS } from './invariants';
import type { ChaosReport, FaultRow } from './runner';

const secs = (s: number | undefined) => (s === undefined ? '-' : `${s.toFixed(1)}s`);

function cell(row: FaultRow, inv: (typeof INVARIANTS)[number]): string {
  if (row.skipped || row.injectedAt === undefined) return '-';
  const r = row.invariants[inv];
  if (!r.ok) return 'FAIL';
  return r.brokenFor > 0 ? `ok (${r.brokenFor.toFixed(0)}s)` : 'ok';
}

export function formatChaosReport(r: ChaosReport): string {
  const lines: string[] = [];
  const t = r.timings;
  lines.push(
    `Chaos run on cluster ${r.cluster}: seed ${r.seed}, ${r.faults.length} fault${r.faults.length === 1 ? '' : 's'}, ${r.seconds.toFixed(0)} s`,
    `Lease TTL ${t.ttlSeconds} s: fencing window ${(t.fencingWindowMs / 1000).toFixed(0)} s, recovery deadline ${(t.recoverDeadlineMs / 1000).toFixed(0)} s, stable for ${(t.stableMs / 1000).toFixed(0)} s`,
    `Workload: ${r.workload.map((w) => `${w.name.replace(/^flotilla-chaos-/, '').replace(/\.service$/, '')} (${w.role})`).join(', ')}${r.existingUnits.length ? `; also checked: ${r.existingUnits.join(', ')}` : ''}`,
    `Steady state: ${r.steady.ok ? `reached in ${secs(r.steady.seconds)}` : 'NOT REACHED'}`,
    '',
  );
  lines.push(
    table(
      ['#', 'FAULT', 'TARGET', 'INJECTED', 'RECOVERED', 'RESTORE', 'WHOLE', ...INVARIANTS.map((i) => i.toUpperCase()), 'RESULT'],
      r.faults.map((f) => [
        String(f.index),
        f.kind,
        f.target ?? '-',
        f.injectedAt === undefined ? '-' : `+${f.injectedAt.toFixed(0)}s`,
        secs(f.recoveredIn),
        secs(f.restoreTook),
        secs(f.rejoinedIn),
        ...INVARIANTS.map((i) => cell(f, i)),
        f.skipped ? 'skipped' : f.ok ? 'ok' : 'FAIL',
      ]),
    ).trimEnd(),
  );
  lines.push(
    '',
    'RECOVERED: injection until the invariants held again (with the fault in place) for good; RESTORE: time the undo took',
    '(a power-on includes the boot); WHOLE: start of the undo until every machine was back, etcd healthy and the invariants held.',
    'ok (Ns): the invariant was broken for N s while the cluster reacted, and recovered within the deadline.',
  );
  const details: string[] = [];
  for (const n of r.steady.notes) details.push(`steady state: ${n}`);
  for (const f of r.faults) {
    if (f.skipped) details.push(`#${f.index} ${f.kind}: skipped: ${f.skipped}`);
    for (const inv of INVARIANTS) for (const m of f.invariants[inv].failures) details.push(`#${f.index} ${f.kind} ${f.target ?? ''}: ${inv}: ${m}`);
    for (const n of f.notes) details.push(`#${f.index} ${f.kind} ${f.target ?? ''}: ${n}`);
  }
  if (details.length) lines.push('', ...details);
  lines.push('', r.ok ? 'All invariants held.' : 'INVARIANTS BROKEN (or the cluster did not recover): see above.');
  return `${lines.join('\n')}\n`;
}
