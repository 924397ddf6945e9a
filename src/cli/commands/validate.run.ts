/** `flotilla validate`: the implementation, loaded when the command runs (declaration: validate.ts). */
import { FlotillaError, formatProblem } from '../../errors';
import { validateFile } from '../../config/validate-file';
import { summarizeWarnings } from '../../config/legacy/warnings';
import { checkUnitFile } from '../../units/client';
import { readTextFile } from '../../util/fs';
import type { CommandRun } from '../command';
import { EXIT_OK, exitStatus } from '../exit-codes';

export const run: CommandRun = async (p, io) => {
  if (p.positionals.length === 0) throw new FlotillaError('usage', 'flotilla validate: give at least one FILE');
  const results = p.positionals.map((file) => validateFile(file, readTextFile(file), { unitChecker: checkUnitFile }));
  if (p.values.json) io.out(`${JSON.stringify(results, null, 2)}\n`);
  else {
    for (const r of results) {
      const tools = `${r.kind}; checked by ${r.checks.join(', ')}${r.skipped.length ? `; not installed: ${r.skipped.join(', ')}` : ''}`;
      if (r.ok) io.out(`ok       ${r.file} (${tools})\n`);
      else {
        io.out(`invalid  ${r.file} (${tools})\n`);
        for (const pr of r.problems) io.out(`  ${formatProblem(pr)}\n`);
      }
      const summary = summarizeWarnings(r.warnings);
      for (const [i, line] of summary.entries()) io.out(i < summary.length - 1 ? `  warning: ${line}\n` : `  ${line}\n`);
    }
  }
  return results.every((r) => r.ok) ? EXIT_OK : exitStatus('invalid-input');
};
