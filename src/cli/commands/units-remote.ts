/**
 * fleetctl's SSH verbs over the verifier's pinned connections: `units journal UNIT` and
 * `units ssh MACHINE|UNIT|NODE [-- CMD]`. Where a unit runs comes from the registry; how to
 * reach that machine (address, port, host key, private key) from the inventory.
 */
import { lazyCommand, type CommandSpec, type OptionSpec } from '../command';

/** The implementations, loaded when a command runs. */
const impl = () => require('./units-remote.run') as typeof import('./units-remote.run');

const options: Record<string, OptionSpec> = {
  inventory: { type: 'string', short: 'i', description: 'inventory file (nodes, SSH keys, etcd) (env FLOTILLA_INVENTORY)', valueName: 'FILE' },
};

export const unitsRemoteCommands: CommandSpec[] = [
  lazyCommand(
    {
      name: 'units journal',
      summary: "Print a unit's journal from the machine it runs on (over the pinned SSH connection)",
      args: 'UNIT',
      options: { ...options, lines: { type: 'string', short: 'n', description: 'number of lines (default 50)', valueName: 'N' } },
    },
    () => impl().journal,
  ),
  lazyCommand(
    {
      name: 'units ssh',
      summary: 'Open a shell (or run -- CMD) on a machine, by node name, unit or machine ID',
      args: 'MACHINE|UNIT|NODE [-- CMD...]',
      options,
    },
    () => impl().ssh,
  ),
];
