import { lazyCommand } from '../command';

/** The implementation, loaded when the command runs. */
const impl = () => require('./validate.run') as typeof import('./validate.run');

export const validateCommand = lazyCommand(
  {
    name: 'validate',
    summary: 'Check cluster specs, cloud-config, Ignition, network-config and unit files (own checks + real validators)',
    args: 'FILE...',
    options: {
      json: { type: 'boolean', description: 'print results as JSON' },
    },
    details: 'The kind of each file is detected from its content. Exit status 2 if any file is invalid.',
  },
  () => impl().run,
);
