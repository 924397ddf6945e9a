import { FlotillaError } from '../../errors';
import { summarizeWarnings } from '../../config/legacy/warnings';
import { convertLegacy } from '../../config/legacy';
import { CONFIG_FORMATS } from '../../config/spec';
import { readTextFile, writeFileAtomic } from '../../util/fs';
import { choiceOpt, stringOpt, type CommandSpec } from '../command';
import { EXIT_OK, exitStatus } from '../exit-codes';

export const convertCommand: CommandSpec = {
  name: 'convert',
  summary: 'Translate a CoreOS-era cloud-config (coreos: etcd2/fleet/units) into modern cloud-config or Ignition',
  args: 'FILE',
  options: {
    format: { type: 'string', description: `target: ${CONFIG_FORMATS.join(' | ')}`, valueName: 'FORMAT' },
    out: { type: 'string', description: 'write the result here (default: stdout)', valueName: 'FILE' },
    json: { type: 'boolean', description: 'print {output, warnings} as JSON' },
    strict: { type: 'boolean', description: 'exit 2 if anything could not be translated' },
  },
  details:
    'Whatever has no modern equivalent is reported as a warning with its line, never dropped silently. ' +
    'Identical warnings are printed once with all their places, what is not carried over at all first, then a count; ' +
    '--json lists every occurrence.',
  async run(p, io) {
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
  },
};
