import { FlotillaError } from '../errors';
import { commandHelp, parseCommand, type CliIO, type CommandSpec } from './command';
import { EXIT_OK, exitCodeFor, exitStatus } from './exit-codes';
import { commands } from './commands';
import { processIO } from './io';

export { processIO };

function topHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  return [
    'Usage: flotilla COMMAND [options]',
    '',
    'Stand up CoreOS-style clusters (etcd, systemd units, fleet-style scheduling) and prove they work.',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    "Run 'flotilla COMMAND --help' for a command's options.",
    '',
  ].join('\n');
}

/** Finds the longest command name that prefixes argv (`units submit` before `units`). */
function findCommand(argv: string[]): { cmd: CommandSpec; rest: string[] } | undefined {
  let best: { cmd: CommandSpec; rest: string[] } | undefined;
  for (const cmd of commands) {
    const words = cmd.name.split(' ');
    if (words.every((w, i) => argv[i] === w) && (!best || words.length > best.cmd.name.split(' ').length)) {
      best = { cmd, rest: argv.slice(words.length) };
    }
  }
  return best;
}

/** Runs the CLI; returns the exit status instead of exiting, so tests can call it in-process. */
export async function runCli(argv: string[], io: CliIO = processIO): Promise<number> {
  try {
    if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
      io.out(topHelp());
      return argv.length === 0 ? exitStatus('usage') : EXIT_OK;
    }
    if (argv[0] === '--version') {
      io.out(`flotilla ${require('../../package.json').version}\n`);
      return EXIT_OK;
    }
    const found = findCommand(argv);
    if (!found) {
      const group = commands.filter((c) => c.name.startsWith(`${argv[0]} `));
      if (group.length > 0 && (argv.length === 1 || argv[1] === '--help' || argv[1] === '-h')) {
        io.out(`Usage: flotilla ${argv[0]} VERB [options]\n\nVerbs:\n${group.map((c) => `  ${c.name.slice(argv[0]!.length + 1).padEnd(18)}${c.summary}`).join('\n')}\n`);
        return argv.length === 1 ? exitStatus('usage') : EXIT_OK;
      }
      throw new FlotillaError('usage', `unknown command "${argv.slice(0, group.length ? 2 : 1).join(' ')}"\nRun 'flotilla --help'.`);
    }
    const parsed = parseCommand(found.cmd, found.rest);
    if (parsed.values.help) {
      io.out(commandHelp(found.cmd));
      return EXIT_OK;
    }
    // Only now is the command's implementation (and everything it imports) loaded.
    const run = await found.cmd.load();
    const status = await run(parsed, io);
    return typeof status === 'number' ? status : EXIT_OK;
  } catch (err) {
    if (FlotillaError.is(err)) {
      io.err(`flotilla: ${err.message}\n`);
    } else {
      io.err(`flotilla: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    }
    return exitCodeFor(err);
  }
}

if (require.main === module) {
  // grpc-js warns (DEP0123) whenever a TLS endpoint is an IP address, as etcd members' are.
  process.noDeprecation = true;
  runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
