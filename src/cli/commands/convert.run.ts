/** `flotilla convert`: the implementation, loaded when the command runs (declaration: convert.ts). */
import { FlotillaError } from '../../errors';
import { summarizeWarnings } from '../../config/legacy/warnings';
import { convertLegacy } from '../../config/legacy';
import { CONFIG_FORMATS } from '../../config/spec';
import { readTextFile, writeFileAtomic } from '../../util/fs';
import { choiceOpt, stringOpt, type CommandRun } from '../command';
import { EXIT_OK, exitStatus } from '../exit-codes';

export const run: CommandRun = async (p, io) => {
  if (p.positionals.length !== 1) throw new FlotillaError('usage', 'flotilla convert: give exactly one FILE');
  const format = choiceOpt(p, 'format', 'convert', CONFIG_FORMATS);
  if (!format) throw new FlotillaError('usage', `flotilla convert: --format is required (${CONFIG_FORMATS.join(' or ')})`);
  const file = p.positionals[0]!;
  const result = convertLegacy(readTextFile(file), file, format);
  const out = stringOpt(p, 'out', 'convert');
  if (out) writeFileAtomic(out, result.output, 0o600);
  if (p.values.json) io.out(`${JSON.stringify(result, null, 2)}\n`);
  else if (!out) io.out(result.output);
  if (!p.values.json) {
    const summary = summarizeWarnings(result.warnings);
    for (const [i, line] of summary.entries()) io.err(i < summary.length - 1 ? `warning: ${line}\n` : `${line}\n`);
  }
  if (out && !p.values.json) io.err(`wrote ${out} (${result.format}, ${Buffer.byteLength(result.output)} bytes, ${result.warnings.length} warning${result.warnings.length === 1 ? '' : 's'})\n`);
  // --strict: whatever could not be translated makes the input unusable as it is.
  return p.values.strict && result.warnings.length > 0 ? exitStatus('invalid-input') : EXIT_OK;
};
