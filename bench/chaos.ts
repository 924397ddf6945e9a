/**
 * The full chaos run against a local QEMU cluster (opt-in: it boots VMs and takes many
 * minutes under TCG): `flotilla chaos` with five faults by default, printing the table of
 * faults, recovery times and invariant results, plus the host's load, which the figures
 * depend on. Exits like the command (1 when an invariant broke).
 * Run: npx tsx bench/chaos.ts [--cluster NAME | --spec FILE | --nodes N] [--faults K] [--seed S] [--json]
 */
import * as os from 'node:os';
import { chaosCommand } from '../src/cli/commands/chaos';
import { parseCommand } from '../src/cli/command';

(async () => {
  const argv = process.argv.slice(2);
  if (!argv.some((a) => a === '--faults' || a === '-k' || a.startsWith('--faults='))) argv.push('--faults', '5');
  // A cluster of its own unless told which one (brought up, and taken down at the end).
  if (!argv.some((a) => ['--cluster', '-c', '--spec', '--nodes', '--name'].includes(a.split('=')[0]!))) argv.push('--name', 'bench-chaos');
  const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');
  console.log(`host: ${os.cpus().length} cores, load ${load()} at the start`);
  const t0 = Date.now();
  const code = await chaosCommand.run(parseCommand(chaosCommand, argv), {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    isTTY: false,
  });
  console.log(`bench/chaos: ${((Date.now() - t0) / 1000).toFixed(0)} s in all; host load ${load()} at the end`);
  process.exit(typeof code === 'number' ? code : 0);
})().catch((err: unknown) => {
  console.error(`bench/chaos: ${(err as Error).message}`);
  process.exit(1);
});
