/**
 * `units journal` and `units ssh`: the implementations, loaded when a command runs
 * (declarations: units-remote.ts). Where a unit runs comes from the registry; how to reach
 * that machine (address, port, host key, private key) from the inventory.
 */
import { FlotillaError } from '../../errors';
import { VerifyCluster } from '../../verify/cluster';
import { findInventory } from '../../cluster/inventory';
import { shq } from '../../ssh';
import { fleetView } from '../../verify/suites/fleet';
import { intOpt, stringOpt, type CommandRun, type ParsedCommand } from '../command';
import { EXIT_OK, EXIT_REMOTE_NO_STATUS, exitStatus } from '../exit-codes';

async function open(p: ParsedCommand, cmd: string): Promise<VerifyCluster> {
  const file = stringOpt(p, 'inventory', cmd);
  return new VerifyCluster(await findInventory(file ? { file } : {}), { ssh: { readyTimeoutMs: 10_000 } });
}

/** The inventory node behind a node name, a unit name (where it is scheduled) or a machine ID (or unique prefix). */
export async function resolveTarget(cluster: VerifyCluster, what: string): Promise<{ node: string; machineId?: string }> {
  if (cluster.nodes.some((n) => n.name === what) && !what.includes('.')) return { node: what };
  const registry = await cluster.registry();
  const view = await fleetView(cluster, registry);
  const scheduled = view.snap.schedule.filter((a) => a.unit === what);
  if (scheduled.length > 0) {
    const a = scheduled[0]!;
    const node = view.machineNode.get(a.machineId);
    if (!node) throw new FlotillaError('not-found', `${what} runs on machine ${a.machineId}, which matches no inventory node`);
    return { node, machineId: a.machineId };
  }
  if (view.snap.jobs.some((j) => j.name === what)) throw new FlotillaError('not-found', `${what} is not scheduled on any machine`);
  const machines = [...view.machines.keys()].filter((id) => id.startsWith(what));
  if (machines.length > 1) throw new FlotillaError('usage', `machine ID prefix ${what} is ambiguous: ${machines.map((m) => m.slice(0, 12)).join(', ')}`);
  if (machines.length === 1) {
    const node = view.machineNode.get(machines[0]!);
    if (!node) throw new FlotillaError('not-found', `machine ${machines[0]} matches no inventory node`);
    return { node, machineId: machines[0]! };
  }
  throw new FlotillaError('not-found', `${what} is no inventory node, scheduled unit or registered machine`);
}

export const journal: CommandRun = async (p, io) => {
  const [unit] = p.positionals;
  if (!unit || p.positionals.length > 1) throw new FlotillaError('usage', 'flotilla units journal: give one unit name');
  const lines = intOpt(p, 'lines', 'units journal', 1, 1_000_000) ?? 50;
  const cluster = await open(p, 'units journal');
  try {
    const { node } = await resolveTarget(cluster, unit);
    const r = await cluster.ssh(node, `journalctl -u ${shq(unit)} -n ${lines} --no-pager`, { sudo: true, timeoutMs: 60_000 });
    io.out(r.stdout);
    if (r.stderr) io.err(r.stderr);
    // journalctl failed on the machine.
    return r.code === 0 ? EXIT_OK : exitStatus('external');
  } finally {
    await cluster.close();
  }
};

export const ssh: CommandRun = async (p, io) => {
  const [what] = p.positionals;
  if (!what || p.positionals.length > 1) throw new FlotillaError('usage', 'flotilla units ssh: give one machine ID, unit name or node name (then -- CMD)');
  const cluster = await open(p, 'units ssh');
  try {
    const { node } = await resolveTarget(cluster, what);
    const command = p.rest.length ? p.rest.map(shq).join(' ') : undefined;
    if (command !== undefined && !process.stdin.isTTY) {
      // Non-interactive: the command's output and its exit status, like ssh HOST CMD.
      const r = await cluster.ssh(node, command, { timeoutMs: 24 * 3600 * 1000 });
      io.out(r.stdout);
      if (r.stderr) io.err(r.stderr);
      return r.code ?? EXIT_REMOTE_NO_STATUS;
    }
    return await cluster.conn(node).interactive({ stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }, command);
  } finally {
    await cluster.close();
  }
};
