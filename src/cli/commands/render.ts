import { CONFIG_FORMATS } from '../../config/spec';
import { lazyCommand } from '../command';

/** The implementation, loaded when the command runs. */
const impl = () => require('./render.run') as typeof import('./render.run');

export const renderCommand = lazyCommand(
  {
    name: 'render',
    summary: "Render every node's first-boot config (cloud-config or Ignition) from a cluster spec",
    options: {
      spec: { type: 'string', description: 'cluster spec (YAML)', valueName: 'FILE' },
      node: { type: 'string', multiple: true, description: 'only this node (repeatable)', valueName: 'NAME' },
      format: { type: 'string', description: `output format: ${CONFIG_FORMATS.join(' | ')} (default: the spec's)`, valueName: 'FORMAT' },
      out: { type: 'string', description: 'write one file per node (plus secrets.json, host-keys.json) into DIR', valueName: 'DIR' },
      secrets: { type: 'string', description: 'secrets file to reuse or create (default: DIR/secrets.json)', valueName: 'FILE' },
      validate: { type: 'boolean', description: 'run cloud-init schema / ignition-validate on every output before writing' },
      json: { type: 'boolean', description: 'print the report as JSON' },
    },
    details:
      'Nothing is written unless every node renders (and, with --validate, passes the real validator).\n' +
      'Without --out, the user-data of the single selected node (--node) is printed.',
  },
  () => impl().run,
);
