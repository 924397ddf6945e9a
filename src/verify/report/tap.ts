/** TAP version 13: a plan, one line per check, YAML diagnostics for failures and errors. */
import type { CheckResult, Report } from '../types';

function title(r: CheckResult): string {
  // '#' starts a directive in TAP; keep it out of descriptions.
  return `${r.suite}: ${r.name}${r.node ? ` [${r.node}]` : ''}`.replace(/#/g, '\\#').replace(/\s+/g, ' ');
}

function yamlString(s: string): string {
  return JSON.stringify(s); // JSON strings are valid YAML double-quoted scalars
}

export function tapReport(report: Report): string {
  const lines = ['TAP version 13', `1..${report.results.length}`];
  report.results.forEach((r, i) => {
    const n = i + 1;
    if (r.status === 'skip') {
      lines.push(`ok ${n} - ${title(r)} # SKIP ${r.message.replace(/\s+/g, ' ')}`);
      return;
    }
    lines.push(`${r.status === 'pass' ? 'ok' : 'not ok'} ${n} - ${title(r)}`);
    lines.push('  ---');
    lines.push(`  id: ${yamlString(r.id)}`);
    if (r.node) lines.push(`  node: ${yamlString(r.node)}`);
    lines.push(`  status: ${r.status}`);
    lines.push(`  message: ${yamlString(r.message)}`);
    lines.push(`  duration_ms: ${r.durationMs}`);
    if (r.attempts > 1) lines.push(`  attempts: ${r.attempts}`);
    lines.push('  ...');
  });
  const s = report.summary;
  lines.push(`# pass ${s.pass}`, `# fail ${s.fail}`, `# error ${s.error}`, `# skip ${s.skip}`, `# duration_ms ${report.durationMs}`);
  return `${lines.join('\n')}\n`;
}
