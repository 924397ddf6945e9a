/**
 * The real-world fleet units (test/fixtures/real-world/units/, public files kept byte for byte)
 * placed by a real engine onto real agents on a real etcd, one cluster per source repository,
 * every template started as several instances. The units' commands (docker, etcdctl) cannot run
 * here, so the agents run them with a runner that only records them: what is tested is where
 * the engine puts each instance. Every placement is then checked against every rule of its own
 * [X-Fleet] section (MachineOf, Conflicts, MachineMetadata, MachineID, Global), and every unit
 * left unplaced must have no machine where all its rules hold.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { Agent } from '../../src/units/agent';
import { checkUnitText, UnitsClient } from '../../src/units/client';
import { Engine } from '../../src/units/engine';
import { Registry } from '../../src/units/registry';
import { unitNameInfo } from '../../src/units/unit-file';
import { conflictsWith, matchesMetadata, type XFleetOptions } from '../../src/units/xfleet';
import { startEtcd, type SingleEtcd } from '../fixtures/etcd';
import { InstantRunner } from '../fixtures/instant-runner';
import { REAL_WORLD, REFUSED_UNITS } from '../helpers/real-world';
import { mapLimit, sleep } from '../../src/util/async';

const UNITS = path.join(REAL_WORLD, 'units');
const INSTANCES = ['1', '2', '3'];
const MACHINES = 4;

let etcd: SingleEtcd;
before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  await etcd?.stop();
});

interface Placed {
  name: string;
  options: XFleetOptions;
  machine: string | undefined;
  reason: string | undefined;
}

/** Machine metadata that lets the repository's MachineMetadata rules match somewhere (values spread over the machines). */
function machinesFor(units: ReadonlyArray<{ options: XFleetOptions }>): Array<{ id: string; metadata: Record<string, string> }> {
  const values = new Map<string, string[]>();
  for (const u of units) for (const r of u.options.machineMetadata) values.set(r.key, [...new Set([...(values.get(r.key) ?? []), ...r.values])]);
  return Array.from({ length: MACHINES }, (_, i) => ({
    id: `m${i + 1}`,
    metadata: Object.fromEntries([...values].map(([k, vs]) => [k, vs[i % vs.length]!])),
  }));
}

/** Why `u` may not run on `machine` given where the others run; undefined when every rule holds. */
function broken(u: Placed, machine: { id: string; metadata: Record<string, string> }, all: readonly Placed[]): string | undefined {
  if (u.options.machineId !== undefined && u.options.machineId !== machine.id) return `MachineID=${u.options.machineId}`;
  if (!matchesMetadata(u.options, machine.metadata)) return `MachineMetadata does not match ${JSON.stringify(machine.metadata)}`;
  const there = all.filter((o) => o.machine === machine.id && o.name !== u.name);
  const conflict = there.find((o) => conflictsWith(u, o));
  if (conflict) return `conflicts with ${conflict.name}`;
  const missing = u.options.machineOf.find((t) => !all.some((o) => o.name === t && o.machine === machine.id));
  if (missing) return `MachineOf ${missing} is not there`;
  return undefined;
}

async function placeRepository(repo: string): Promise<{ units: Placed[]; machines: Array<{ id: string; metadata: Record<string, string> }> }> {
  const dir = path.join(UNITS, repo);
  const files = fs.readdirSync(dir).filter((f) => !REFUSED_UNITS[`${repo}/${f}`]).sort();
  // What is started: each plain unit, and each template as three instances.
  const started = files.flatMap((f) => {
    const info = unitNameInfo(f);
    return info.kind === 'template' ? INSTANCES.map((i) => `${info.prefix}@${i}.${info.type}`) : [f];
  });
  const text = (name: string) => {
    const info = unitNameInfo(name);
    return fs.readFileSync(path.join(dir, info.kind === 'instance' ? info.template! : name), 'utf8');
  };
  const options = new Map(started.map((n) => [n, checkUnitText(n, text(n)).options]));
  const machines = machinesFor([...options.values()].map((o) => ({ options: o })));
  const cluster = `rw-${repo.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`;
  const reg = await Registry.connect({ endpoints: [etcd.endpoint], cluster });
  const agents = machines.map((m) => new Agent({ registry: reg, runner: new InstantRunner(), ttlSeconds: 10, machine: { id: m.id, metadata: m.metadata, address: '127.0.0.1', capacity: { cpus: 1, memoryMiB: 1024 } } }));
  const engine = new Engine({ registry: reg, candidateId: 'engine', leaderTtlSeconds: 10, reconcileIntervalMs: 300 });
  try {
    for (const a of agents) await a.start();
    engine.start();
    const client = new UnitsClient(reg);
    // The files as they are, byte for byte: templates submitted, then instances and plain units started by name.
    await client.submit(files.map((f) => path.join(dir, f)));
    await client.setState(started, 'launched');
    // Settled: every unit placed or unplaceable with a reason, unchanged over a few engine passes.
    let rows = await client.listUnits();
    let last = '';
    let stableSince = Date.now();
    const deadline = Date.now() + 30_000;
    for (;;) {
      rows = (await client.listUnits()).filter((r) => started.includes(r.unit));
      const key = JSON.stringify(rows.map((r) => [r.unit, r.machine, r.reason]));
      const settled = started.every((n) => rows.some((r) => r.unit === n && (r.machine || r.reason)));
      if (key !== last || !settled) {
        last = key;
        stableSince = Date.now();
      } else if (Date.now() - stableSince > 1500) break;
      assert.ok(Date.now() < deadline, `${repo}: placement did not settle: ${key}`);
      await sleep(100);
    }
    // A unit placed on several machines is a global unit: one row per copy.
    const units: Placed[] = started.flatMap((n) => {
      const copies = rows.filter((r) => r.unit === n);
      return copies.length ? copies.map((r) => ({ name: n, options: options.get(n)!, machine: r.machine, reason: r.reason })) : [{ name: n, options: options.get(n)!, machine: undefined, reason: undefined }];
    });
    return { units, machines };
  } finally {
    await engine.stop();
    await Promise.all(agents.map((a) => a.stop()));
    await reg.close();
  }
}

test('the real-world units land where their own [X-Fleet] rules say, instance by instance', async () => {
  const repos = fs.readdirSync(UNITS).sort();
  const violations: string[] = [];
  let placed = 0;
  let sidekicks = 0;
  await mapLimit(repos, 4, async (repo) => {
    const { units, machines } = await placeRepository(repo);
    for (const u of units) {
      if (u.machine) {
        placed++;
        const why = broken(u, machines.find((m) => m.id === u.machine)!, units);
        if (why) violations.push(`${repo}: ${u.name} on ${u.machine}: ${why}`);
        if (u.options.machineOf.length && unitNameInfo(u.name).kind === 'instance') sidekicks++;
      } else if (!u.options.global) {
        // Unplaced: there must be no machine where every rule holds.
        const fits = machines.filter((m) => broken(u, m, units) === undefined).map((m) => m.id);
        if (fits.length) violations.push(`${repo}: ${u.name} unplaced (${u.reason ?? 'no reason'}) though ${fits.join(', ')} would do`);
        if (!u.reason) violations.push(`${repo}: ${u.name} unplaced without a reason`);
      }
      if (u.options.global) {
        const on = new Set(units.filter((o) => o.name === u.name && o.machine).map((o) => o.machine));
        for (const m of machines) {
          if (!on.has(m.id) && broken(u, m, units) === undefined) violations.push(`${repo}: global ${u.name} missing on ${m.id}`);
        }
      }
    }
    // Instances of a template follow their own instance, never the first one's.
    for (const u of units) {
      for (const t of u.options.machineOf) {
        const info = unitNameInfo(u.name);
        if (info.kind === 'instance' && t.includes('@')) assert.equal(unitNameInfo(t).instance, info.instance, `${repo}: ${u.name} follows ${t}`);
      }
    }
  });
  assert.deepEqual(violations, []);
  assert.ok(placed >= 100, `${placed} copies placed`);
  assert.ok(sidekicks >= 15, `${sidekicks} sidekick instances placed beside their target`);
});
