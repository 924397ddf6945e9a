/**
 * The entry point bundled into node images: only `flotilla fleetd` and `flotilla announce`
 * (so a sidekick unit can announce its service). Kept apart from the
 * full CLI so the bundle Node.js parses at every fleetd start is small — under TCG,
 * parsing the whole CLI cost tens of seconds per start.
 */
import { FlotillaError } from '../errors';
import { commandHelp, parseCommand, type CommandSpec } from './command';
import { agentAnnounceCommand } from './commands/announce';
import { fleetdCommand } from './commands/fleetd';
import { EXIT_OK, exitCodeFor } from './exit-codes';
import { processIO } from './io';

const AGENT_COMMANDS: readonly CommandSpec[] = [fleetdCommand, agentAnnounceCommand];
const ONLY = `only ${AGENT_COMMANDS.map((c) => `'flotilla ${c.name}'`).join(' and ')} are available here`;

async function main(argv: string[]): Promise<number> {
  try {
    if (argv[0] === '--version') {
      processIO.out(`flotilla ${process.env.FLOTILLA_VERSION ?? 'agent'}\n`);
      return EXIT_OK;
    }
    if (argv[0] === '--help' || argv[0] === '-h') {
      processIO.out(`flotilla (node agent build): ${ONLY}.\n\n${AGENT_COMMANDS.map((c) => commandHelp(c)).join('\n')}`);
      return EXIT_OK;
    }
    const cmd = AGENT_COMMANDS.find((c) => c.name === argv[0]);
    if (!cmd) throw new FlotillaError('usage', `this is the node agent build of flotilla: ${ONLY}`);
    const parsed = parseCommand(cmd, argv.slice(1));
    if (parsed.values.help) {
      processIO.out(commandHelp(cmd));
      return EXIT_OK;
    }
    const run = await cmd.load();
    return (await run(parsed, processIO)) ?? EXIT_OK;
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
