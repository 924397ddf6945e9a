/**
 * JUnit XML as CI servers read it: <testsuites> with one <testsuite> per suite, one
 * <testcase> per check (the node in its name), <failure>/<error>/<skipped> elements,
 * times in seconds. Everything is escaped (see xml.ts).
 */
import type { CheckResult, Report } from '../types';
import { escapeAttr, escapeText } from './xml';

const secs = (ms: number): string => (ms / 1000).toFixed(3);

function testcase(r: CheckResult, cluster: string): string {
  const name = `${r.name}${r.node ? ` [${r.node}]` : ''}`;
  const open = `    <testcase classname="${escapeAttr(`flotilla.${cluster}.${r.suite}`)}" name="${escapeAttr(name)}" time="${secs(r.durationMs)}"`;
  const props = `      <system-out>${escapeText(`${r.id}${r.node ? ` on ${r.node}` : ''}: ${r.message}${r.attempts > 1 ? ` (${r.attempts} attempts)` : ''}`)}</system-out>\n`;
  switch (r.status) {
    case 'pass':
      return `${open}>\n${props}    </testcase>`;
    case 'skip':
      return `${open}>\n      <skipped message="${escapeAttr(r.message)}"/>\n    </testcase>`;
    case 'fail':
      return `${open}>\n      <failure message="${escapeAttr(r.message.split('\n')[0]!.slice(0, 500))}" type="${escapeAttr(r.id)}">${escapeText(r.message)}</failure>\n${props}    </testcase>`;
    case 'error':
      return `${open}>\n      <error message="${escapeAttr(r.message.split('\n')[0]!.slice(0, 500))}" type="${escapeAttr(r.id)}">${escapeText(r.message)}</error>\n${props}    </testcase>`;
  }
}

export function junitReport(report: Report): string {
  const suites = [...new Set(report.results.map((r) => r.suite))];
  const s = report.summary;
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${escapeAttr(`flotilla verify ${report.cluster}`)}" tests="${s.total}" failures="${s.fail}" errors="${s.error}" skipped="${s.skip}" time="${secs(report.durationMs)}" timestamp="${escapeAttr(report.startedAt)}">`,
  ];
  for (const suite of suites) {
    const rs = report.results.filter((r) => r.suite === suite);
    const count = (st: CheckResult['status']): number => rs.filter((r) => r.status === st).length;
    const time = rs.reduce((a, r) => a + r.durationMs, 0);
    out.push(`  <testsuite name="${escapeAttr(suite)}" tests="${rs.length}" failures="${count('fail')}" errors="${count('error')}" skipped="${count('skip')}" time="${secs(time)}" timestamp="${escapeAttr(report.startedAt)}">`);
    for (const r of rs) out.push(testcase(r, report.cluster));
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return `${out.join('\n')}\n`;
}
