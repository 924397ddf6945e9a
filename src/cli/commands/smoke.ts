import { lazyCommand } from '../command';
import { BOOT_OPTION, REPORT_FORMATS } from './constants';

/** The implementation, loaded when the command runs. */
const impl = () => require('./smoke.run') as typeof import('./smoke.run');

export const smokeCommand = lazyCommand(
  {
    name: 'smoke',
    summary: 'CI smoke test: up a local cluster, verify it, keep the artifacts, take it down',
    options: {
      spec: { type: 'string', description: 'cluster spec (default: --nodes N generic nodes)', valueName: 'FILE' },
      nodes: { type: 'string', description: 'number of nodes without a spec (default 3)', valueName: 'N' },
      name: { type: 'string', description: "cluster name (default: the spec's, or 'smoke')", valueName: 'NAME' },
      format: { type: 'string', short: 'f', description: `report format: ${REPORT_FORMATS.join(', ')} (default junit)`, valueName: 'FORMAT' },
      out: { type: 'string', short: 'o', description: 'write the report here too', valueName: 'FILE' },
      artifacts: { type: 'string', description: 'artifacts directory (default ./flotilla-artifacts)', valueName: 'DIR' },
      keep: { type: 'boolean', description: 'leave the cluster up when a check fails' },
      'leave-up': { type: 'boolean', description: 'leave the cluster up whatever the result (more checks to run; flotilla down when done)' },
      ...BOOT_OPTION,
    },
    details: 'Exit status: 0 when the cluster came up and every check passed; artifacts are kept either way.',
  },
  () => impl().run,
);
