/**
 * The human reporter: one line per check as it finishes (status, suite, name, node,
 * timing, and why when it did not pass), then a summary. Colours only on a TTY.
 */
import type { Check, CheckResult, Report } from '../types';

const COLORS = { pass: '\x1b[32m', fail: '\x1b[31m', error: '\x1b[35m', skip: '\x1b[33m', dim: '\x1b[2m', bold: '\x1b[1m', reset: '\x1b[0m' };
const LABEL: Record<CheckResult['status'], string> = { pass: 'PASS', fail: 'FAIL', error: 'ERR ', skip: 'SKIP' };

export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

export class HumanReporter {
  private done = 0;
  constructor(
    private readonly write: (text: string) => void,
    private readonly color: boolean,
    private total = 0,
  ) {}

  /** How many checks will run (for the [n/total] progress prefix). */
  plan(total: number): void {
    this.total = total;
  }

  private c(k: keyof typeof COLORS, s: string): string {
    return this.color ? `${COLORS[k]}${s}${COLORS.reset}` : s;
  }

  started(_c: Check): void {
    /* progress is per result; a TTY could show the running set here */
  }

  line(r: CheckResult): string {
    const where = r.node ? ` ${this.c('dim', `[${r.node}]`)}` : '';
    const head = `${this.c(r.status, LABEL[r.status])} ${r.suite}: ${r.name}${where} ${this.c('dim', `(${formatMs(r.durationMs)}${r.attempts > 1 ? `, ${r.attempts} tries` : ''})`)}`;
    const why = r.status === 'pass' ? '' : `\n       ${r.message.split('\n').join('\n       ')}`;
    return `${head}${why}\n`;
  }

  result(r: CheckResult): void {
    this.done++;
    const progress = this.color ? this.c('dim', `[${String(this.done).padStart(String(this.total).length)}/${this.total}] `) : '';
    this.write(`${progress}${this.line(r)}`);
  }

  summary(report: Report): void {
    const s = report.summary;
    const parts = [`${s.pass} passed`, `${s.fail} failed`, `${s.error} errors`, `${s.skip} skipped`];
    const verdict = report.ok ? this.c('pass', 'OK') : this.c('fail', 'FAILED');
    this.write(`\n${this.c('bold', verdict)} ${report.cluster}: ${parts.join(', ')} in ${formatMs(report.durationMs)}\n`);
    const slow = [...report.results].sort((a, b) => b.durationMs - a.durationMs).slice(0, 3).filter((r) => r.durationMs >= 1000);
    if (slow.length) this.write(this.c('dim', `slowest: ${slow.map((r) => `${r.id}${r.node ? `[${r.node}]` : ''} ${formatMs(r.durationMs)}`).join(', ')}\n`));
  }
}

/** The whole report as text, as the human reporter prints it (for --out and artifacts). */
export function humanReport(report: Report): string {
  let out = '';
  const h = new HumanReporter((t) => void (out += t), false, report.results.length);
  for (const r of report.results) out += h.line(r);
  h.summary(report);
  return out;
}
