import { CONFIG_FORMATS } from '../../config/spec';
import { lazyCommand, type CommandSpec } from '../command';
import { BOOT_OPTION } from './constants';

/** The implementations, loaded when a command runs. */
const impl = () => require('./cluster.run') as typeof import('./cluster.run');

const nameOption = { name: { type: 'string' as const, description: 'cluster name (default: the one local cluster)', valueName: 'NAME' } };
const platformOption = { platform: { type: 'string' as const, description: 'local (QEMU processes in a netns) | libvirt (domains on qemu:///system)', valueName: 'PLATFORM' } };

export const clusterCommands: CommandSpec[] = [
  lazyCommand(
    {
      name: 'up',
      summary: 'Build the node image if needed, boot a local QEMU cluster, and wait until it is healthy',
      options: {
        spec: { type: 'string', description: 'cluster spec (YAML); default: --nodes N generic nodes', valueName: 'FILE' },
        nodes: { type: 'string', description: 'number of nodes without a spec (default 3)', valueName: 'N' },
        name: { type: 'string', description: "cluster name (default: the spec's, or 'local')", valueName: 'NAME' },
        format: { type: 'string', description: `first-boot format: ${CONFIG_FORMATS.join(' | ')}`, valueName: 'FORMAT' },
        json: { type: 'boolean', description: 'print the cluster record as JSON' },
        ...BOOT_OPTION,
        ...platformOption,
      },
      details: 'Each phase prints its duration on stderr. Running up on a running cluster changes nothing.',
    },
    () => impl().up,
  ),
  lazyCommand(
    {
      name: 'down',
      summary: "Stop a local cluster's VMs and remove its disks, seeds, namespace and state (safe to repeat)",
      options: { ...nameOption, ...platformOption },
    },
    () => impl().down,
  ),
  lazyCommand(
    {
      name: 'ls',
      summary: 'List local clusters',
      options: { json: { type: 'boolean', description: 'machine-readable output' } },
    },
    () => impl().ls,
  ),
  lazyCommand(
    {
      name: 'status',
      summary: "Show a local cluster's nodes, processes, etcd members and registered machines",
      options: { ...nameOption, json: { type: 'boolean', description: 'machine-readable output' } },
    },
    () => impl().status,
  ),
  lazyCommand(
    {
      name: 'ssh',
      summary: 'Log in to a node of a local cluster with OpenSSH, host key pinned (or run CMD after --)',
      args: 'NODE [-- CMD...]',
      options: nameOption,
    },
    () => impl().ssh,
  ),
];
