/**
 * The entry point bundled into node images: only `flotilla fleetd`. Kept apart from the
 * full CLI so the bundle Node.js parses at every fleetd start is small — under TCG,
 * parsing the whole CLI cost tens of seconds per start.
 */
import { FlotillaError } from '../errors';
import { commandHelp, parseCommand } from './command';
import { fleetdCommand } from './commands/fleetd';
import { exitCodeFor } from './exit-codes';
import { processIO } from './io';

async function main(argv: string[]): Promise<number> {
  try {
    if (argv[0] === '--version') {
      processIO.out(`flotilla ${process.env.FLOTILLA_VERSION ?? 'agent'}\n`);
      return 0;
    }
    if (argv[0] === '--help' || argv[0] === '-h') {
      processIO.out(`flotilla (node agent build): only 'flotilla fleetd' is available here.\n\n${commandHelp(fleetdCommand)}`);
      return 0;
    }
    if (argv[0] !== 'fleetd') throw new FlotillaError('usage', `this is the node agent build of flotilla: only 'flotilla fleetd' is available here`);
    const parsed = parseCommand(fleetdCommand, argv.slice(1));
    if (parsed.values.help) {
      processIO.out(commandHelp(fleetdCommand));
      return 0;
    }
    return (await fleetdCommand.run(parsed, processIO)) ?? 0;
  } catch (err) {
    processIO.err(`flotilla: ${FlotillaError.is(err) ? err.message : ((err as Error)?.stack ?? String(err))}\n`);
    return exitCodeFor(err);
  }
}

// grpc-js warns (DEP0123) whenever a TLS endpoint is an IP address, as etcd members' are.
process.noDeprecation = true;
void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
