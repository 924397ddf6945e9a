import { CONFIG_FORMATS } from '../../config/spec';
import { lazyCommand } from '../command';

/** The implementation, loaded when the command runs. */
const impl = () => require('./convert.run') as typeof import('./convert.run');

export const convertCommand = lazyCommand(
  {
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
  },
  () => impl().run,
);
