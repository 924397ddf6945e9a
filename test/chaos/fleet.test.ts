/**
 * The invariant checker and the runner's recovery measurement against real etcd and real
 * fleetd processes (no VMs): the chaos workload reaches steady state, an agent is
 * SIGKILLed, the invariants break, and they hold again once its units moved; when the
 * agent comes back they hold with it included. Ground truth comes from the units'
 * marker files (a unit proves where it runs by writing one every 100 ms).
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Observation } from '../../src/chaos/faults';
import { checkInvariants, INVARIANTS, type JobDefinition } from '../../src/chaos/invariants';
import { watchPhase, type PhaseResult } from '../../src/chaos/runner';
import { chaosWorkload } from '../../src/chaos/workload';
import { checkUnitText } from '../../src/units/client';
import { startEtcd } from '../fixtures/etcd';
import { FleetFixture } from '../fixtures/fleet';
import { sleep } from '../fixtures/proc';

const MACHINES = [
  { id: 'm1', metadata: { zone: 'a' } },
  { id: 'm2', metadata: { zone: 'a' } },
  { id: 'm3', metadata: { zone: 'b' } },
];

function noFailures(r: PhaseResult, what: string): void {
  for (const inv of INVARIANTS) assert.deepEqual(r.failures[inv], [], `${what}: ${inv}`);
  assert.equal(r.pending, undefined, `${what}: ${r.pending}`);
  assert.notEqual(r.recoveredMs, undefined, `${what}: did not recover`);
}

test('chaos invariants against real fleetd agents: an agent SIGKILL breaks them, failover restores them', async () => {
  const etcd = await startEtcd();
  const ttl = 2;
  const f = new FleetFixture([etcd.endpoint], 'chaos', ttl, 300);
  try {
    for (const m of MACHINES) f.spawn(m);
    const c = await f.units();
    for (let i = 0; i < 300 && (await c.listMachines()).length < 3; i++) await sleep(100);
    const reg = c.registry;
    // The chaos workload's placement rules, with bodies that leave marker files (real evidence of where each runs).
    const workload = chaosWorkload(MACHINES, 'test');
    const defs: JobDefinition[] = [];
    for (const u of workload) {
      const xfleet = checkUnitText(u.name, u.text).options;
      const lines = u.text.split('\n');
      const text = f.markerUnit(lines.slice(lines.indexOf('[X-Fleet]') + 1).filter((l) => l.includes('=') && lines.includes('[X-Fleet]')));
      const { job } = await reg.submitUnit(u.name, text, { desiredState: 'launched' });
      defs.push({ name: job.name, hash: job.hash, desiredState: 'launched', options: xfleet });
      assert.deepEqual(checkUnitText(u.name, text).options.global, xfleet.global);
    }
    const all = new Set(MACHINES.map((m) => m.id));
    const observe = (asked: ReadonlySet<string>) => async (): Promise<Observation> => {
      const snapshot = await reg.snapshot();
      const running = new Map<string, Map<string, string>>();
      for (const m of asked) running.set(m, new Map(defs.map((d) => [d.name, f.runningOn(d.name, 600).includes(m) ? 'active' : 'inactive'])));
      return { at: Date.now(), snapshot, running };
    };
    const registered = (ids: ReadonlySet<string>) => (o: Observation) => {
      const missing = [...ids].filter((id) => !o.snapshot.machines.some((m) => m.id === id));
      return missing.length ? `not registered: ${missing.join(', ')}` : undefined;
    };
    const timing = { stableMs: 1500, deadlineMs: 45_000, fencingWindowMs: ttl * 1000, pollMs: 100 };

    const steady = await watchPhase({ observe: observe(all), live: all, definitions: defs, pending: registered(all), ...timing });
    noFailures(steady, 'steady state');
    const before = steady.last!;
    // The metadata-constrained unit went to a zone=a machine; the global unit runs on all three.
    assert.deepEqual(before.snapshot.schedule.filter((a) => a.unit.endsWith('global.service')).map((a) => a.machineId).sort(), ['m1', 'm2', 'm3']);

    // The victim: the machine with the most non-global units.
    const load = new Map<string, number>();
    for (const a of before.snapshot.schedule) if (!a.unit.endsWith('global.service')) load.set(a.machineId, (load.get(a.machineId) ?? 0) + 1);
    const victim = [...load].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1))[0]![0];
    const moved = before.snapshot.schedule.filter((a) => a.machineId === victim && !a.unit.endsWith('global.service')).map((a) => a.unit);
    assert.ok(moved.length > 0);
    await f.processes.get(victim)!.kill();
    const survivors = new Set([...all].filter((id) => id !== victim));

    // The cluster as it stood when the agent died: its units are placed on a machine that no longer serves.
    const broken = checkInvariants({ snapshot: before.snapshot, live: survivors, definitions: defs });
    assert.deepEqual(broken.filter((v) => v.invariant === 'placement').map((v) => v.key).sort(), moved.map((u) => `dead:${u}`).sort());

    // The copies the dead agent left behind are not asked about: its machine counts as gone.
    const failover = await watchPhase({ observe: observe(survivors), live: survivors, definitions: defs, pending: (o) => (o.snapshot.machines.some((m) => m.id === victim) ? 'victim still registered' : undefined), ...timing });
    noFailures(failover, 'after the SIGKILL');
    const after = failover.last!;
    for (const u of moved) {
      const where = after.snapshot.schedule.filter((a) => a.unit === u).map((a) => a.machineId);
      assert.equal(where.length, 1, `${u} scheduled once`);
      assert.notEqual(where[0], victim);
      assert.deepEqual(f.runningOn(u, 600).filter((m) => m !== victim), where, `${u} runs where it is scheduled`);
    }
    assert.ok(!after.snapshot.machines.some((m) => m.id === victim), 'the dead agent’s machine expired');

    // The agent comes back under a new process: the invariants hold with it included.
    f.spawn(MACHINES.find((m) => m.id === victim)!);
    const rejoin = await watchPhase({ observe: observe(survivors), live: all, definitions: defs, pending: registered(all), ...timing });
    noFailures(rejoin, 'after the agent came back');
    assert.ok(rejoin.last!.snapshot.schedule.some((a) => a.machineId === victim && a.unit.endsWith('global.service')));
  } finally {
    await f.stop();
    await etcd.stop();
  }
});
