import { lazyCommand, type CommandSpec } from '../command';

/** The implementations, loaded when a command runs. */
const impl = () => require('./image.run') as typeof import('./image.run');

export const imageCommands: CommandSpec[] = [
  lazyCommand(
    {
      name: 'image build',
      summary: 'Build (or reuse) the cached node image: debootstrap, agent bundle, kernel and initrd',
      options: { force: { type: 'boolean', description: 'rebuild even if an image for this recipe is cached' }, json: { type: 'boolean', description: 'print the image record as JSON' } },
    },
    () => impl().build,
  ),
  lazyCommand(
    {
      name: 'image ls',
      summary: 'List cached node images',
      options: { json: { type: 'boolean', description: 'machine-readable output' } },
    },
    () => impl().ls,
  ),
  lazyCommand(
    {
      name: 'image rm',
      summary: 'Remove cached node images (by id prefix)',
      args: 'IMAGE...',
      options: {},
    },
    () => impl().rm,
  ),
];
