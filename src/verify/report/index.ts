/** Report formats by name. */
import { FlotillaError } from '../../errors';
import type { Report } from '../types';
import { humanReport } from './human';
import { junitReport } from './junit';
import { tapReport } from './tap';

export const FORMATS = ['human', 'tap', 'junit', 'json'] as const;
export type ReportFormat = (typeof FORMATS)[number];

export function jsonReport(report: Report): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

export function formatReport(report: Report, format: ReportFormat): string {
  switch (format) {
    case 'human':
      return humanReport(report);
    case 'tap':
      return tapReport(report);
    case 'junit':
      return junitReport(report);
    case 'json':
      return jsonReport(report);
    default:
      throw new FlotillaError('usage', `unknown report format ${String(format)} (choose from ${FORMATS.join(', ')})`);
  }
}

export { HumanReporter, humanReport } from './human';
export { junitReport } from './junit';
export { tapReport } from './tap';
