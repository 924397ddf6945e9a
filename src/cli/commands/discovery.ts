/**
 * Service discovery commands on the host: `flotilla announce` (connection as for `flotilla
 * units`, local clusters included) and `flotilla services`.
 */
import { lazyCommand, type CommandSpec } from '../command';
import { announceDeclaration, discoveryConnectionOptions } from './announce';

/** The implementations, loaded when a command runs. */
const impl = () => require('./discovery.run') as typeof import('./discovery.run');

const servicesCommand = lazyCommand(
  {
    name: 'services',
    summary: 'List announced service instances (SERVICE INSTANCE ENDPOINT), or follow them with --watch',
    args: '[SERVICE]',
    options: {
      ...discoveryConnectionOptions,
      json: { type: 'boolean', description: 'machine-readable output (with --watch: one JSON object per line)' },
      watch: { type: 'boolean', short: 'w', description: 'print the instances, then "+"/"-" lines as they come and go, until interrupted' },
    },
    details: 'Exit 3 when SERVICE is given and no instance of it is announced. Malformed entries are reported on stderr (and under "problems" with --json).',
  },
  () => impl().services,
);

export const discoveryCommands: CommandSpec[] = [lazyCommand(announceDeclaration, () => impl().announce), servicesCommand];
