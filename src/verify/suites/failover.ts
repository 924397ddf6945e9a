/**
 * The opt-in, destructive `failover` suite: stop one node's agent, assert its units are
 * active elsewhere (on machines that satisfy their constraints) within the deadline, then
 * restore the agent and wait for its machine to register again.
 *
 * The victim is the node running the most movable launched units (not Global, not pinned
 * by MachineID). Stopping and restoring use each node's `agent.stopCommand` /
 * `agent.startCommand` (default: systemctl stop/start flotilla-fleetd), run with sudo.
 */
import type { VerifyCluster } from '../cluster';
import { CheckFailed, CheckSkipped, type Check } from '../types';
import { fleetView, placementViolations } from './fleet';
import { sleep } from '../../util/async';


export function failoverSuite(cluster: VerifyCluster, opts: { timeoutMs?: number } = {}): Check[] {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return [
    {
      suite: 'failover',
      id: 'failover.agent-stop',
      name: "units move when a node's agent stops",
      exclusive: true,
      // Moving (timeoutMs) plus the restore.
      timeoutMs: timeoutMs + 45_000,
      run: async (ctx) => {
        const registry = await cluster.registry();
        const before = await fleetView(cluster, registry, ctx.signal);
        const active = new Set(before.snap.states.filter((s) => s.active === 'active').map((s) => `${s.unit}\0${s.machineId}`));
        const movable = new Map<string, string[]>();
        for (const a of before.snap.schedule) {
          const job = before.snap.jobs.find((j) => j.name === a.unit);
          const o = before.options.get(a.unit);
          if (!job || job.desiredState !== 'launched' || !o || o.global || o.machineId !== undefined || !active.has(`${a.unit}\0${a.machineId}`)) continue;
          const node = before.machineNode.get(a.machineId);
          if (node) movable.set(node, [...(movable.get(node) ?? []), a.unit]);
        }
        const ranked = [...movable.entries()].sort((x, y) => y[1].length - x[1].length || (x[0] < y[0] ? -1 : 1));
        if (ranked.length === 0) throw new CheckSkipped('no movable launched unit is active on any inventory node');
        if (before.machines.size < 2) throw new CheckSkipped('one machine: nowhere to fail over to');
        const [victim, units] = ranked[0]!;
        const node = cluster.node(victim);
        const victimMachine = before.nodeMachine.get(victim)!;
        const conn = cluster.conn(node);
        const t0 = Date.now();
        const stop = await conn.exec(node.agent.stopCommand, { sudo: true, signal: ctx.signal });
        if (stop.code !== 0) throw new CheckFailed(`could not stop the agent on ${victim}: \`${node.agent.stopCommand}\` exited ${stop.code}: ${stop.stderr.trim().slice(0, 200)}`);
        let moved: string | undefined;
        let lastProblem = '';
        let restoreError: string | undefined;
        try {
          const until = Math.min(t0 + timeoutMs, ctx.deadline - 15_000);
          while (Date.now() < until) {
            const v = await fleetView(cluster, registry, ctx.signal);
            const now = new Map(v.snap.states.filter((s) => s.active === 'active').map((s) => [`${s.unit}\0${s.machineId}`, s]));
            const where = units.map((u) => ({ u, on: v.snap.schedule.filter((a) => a.unit === u && a.machineId !== victimMachine && now.has(`${u}\0${a.machineId}`)).map((a) => a.machineId) }));
            const pending = where.filter((w) => w.on.length === 0).map((w) => w.u);
            const bad = Object.values(placementViolations(v)).flat().filter((p) => units.some((u) => p.includes(u)));
            if (pending.length === 0 && bad.length === 0) {
              moved = `${units.length} unit${units.length === 1 ? '' : 's'} (${units.join(', ')}) moved off ${victim} in ${((Date.now() - t0) / 1000).toFixed(1)} s`;
              break;
            }
            lastProblem = pending.length ? `not yet active elsewhere: ${pending.join(', ')}` : bad.join('; ');
            await sleep(200);
          }
        } finally {
          // Restore, whatever happened, and wait for the machine to come back.
          try {
            const start = await conn.exec(node.agent.startCommand, { sudo: true, timeoutMs: 15_000 });
            if (start.code !== 0) restoreError = `\`${node.agent.startCommand}\` exited ${start.code}: ${start.stderr.trim().slice(0, 200)}`;
            else {
              const back = Date.now() + 30_000;
              let registered = false;
              while (!registered && Date.now() < back) {
                registered = (await registry.listMachines()).some((m) => m.id === victimMachine);
                if (!registered) await sleep(250);
              }
              if (!registered) restoreError = `machine ${victimMachine.slice(0, 12)} did not register again within 30 s`;
            }
          } catch (err) {
            restoreError = (err as Error).message;
          }
        }
        if (!moved) throw new CheckFailed(`units of ${victim} did not move within ${timeoutMs} ms: ${lastProblem}${restoreError ? `; restoring the agent failed too: ${restoreError}` : ''}`);
        if (restoreError) throw new CheckFailed(`${moved}, but restoring the agent on ${victim} failed: ${restoreError}`);
        return `${moved}; agent restored`;
      },
    },
  ];
}
