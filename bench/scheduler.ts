/**
 * Scheduler benchmarks against a real local etcd (Debian's etcd 3.4):
 *
 *   scale:    10,000 units onto 1,000 agents. The agents share this process and one etcd
 *             connection, but each has its own lease, its own assignment watch and its own
 *             runner; the runner starts units instantly, so this measures the control plane
 *             (engine, registry, agents, etcd), not process spawning. Goal: all running <= 10 s.
 *   failover: a fleetd process is SIGKILLed while it runs a unit; time until the unit is
 *             active on the standby machine. 20 trials at the default TTL. Goal: p95 <= 5 s.
 *   plan:     the pure placement function alone, 10,000 units onto 1,000 machines, in one
 *             run: units with no request (the fast path) against units each requesting CPU
 *             and memory (every machine is scored), and a second pass where all are placed.
 *   moves:    a unit crash-looping on a live machine (StartLimitBurst=3, RestartSec=100ms):
 *             time from its start until it is active on another machine; and a rolling
 *             update of a global unit over 3 machines (min-ready 0): time per copy.
 *
 * Run: npx tsx bench/scheduler.ts [scale] [failover] [plan] [moves] [--agents N] [--units N] [--trials N]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from '../src/units/agent';
import { Engine } from '../src/units/engine';
import { startFleetd } from '../src/units/fleetd';
import { Registry } from '../src/units/registry';
import { updateUnit } from '../src/units/rollout';
import { planSchedule, type SchedulableJob } from '../src/units/scheduler';
import { emptyXFleetOptions } from '../src/units/xfleet';
import { DEFAULTS } from '../src/config/spec';
import { mapLimit, sleep } from '../src/util/async';
import { startEtcd } from '../test/fixtures/etcd';
import { FleetFixture } from '../test/fixtures/fleet';
import { InstantRunner } from '../test/fixtures/instant-runner';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { agents: { type: 'string', default: '1000' }, units: { type: 'string', default: '10000' }, trials: { type: 'string', default: '20' } },
});
const parts = positionals.length ? positionals : ['scale', 'failover'];

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

async function scale(): Promise<void> {
  const agentCount = Number(values.agents);
  const unitCount = Number(values.units);
  const etcd = await startEtcd({ heartbeatMs: 100, electionMs: 1000 });
  const reg = await Registry.connect({ endpoints: [etcd.endpoint], cluster: 'bench', requestTimeoutMs: 30_000 });
  const agents: Agent[] = [];
  try {
    let t = Date.now();
    await mapLimit(Array.from({ length: agentCount }, (_, i) => i), 50, async (i) => {
      const a = new Agent({ registry: reg, runner: new InstantRunner(), ttlSeconds: 10, machine: { id: `m${i}`, metadata: { rack: `r${i % 20}` }, address: '127.0.0.1', capacity: { cpus: 1, memoryMiB: 1024 } } });
      await a.start();
      agents.push(a);
    });
    console.log(`${agentCount} agents registered, each with its own lease and watch: ${secs(Date.now() - t)}`);
    // Like `fleetctl start app@{1..10000}.service`: instances of one template, one body.
    const body = '[Service]\nExecStart=/bin/sh -c \'exec sleep infinity\'\n';
    t = Date.now();
    await mapLimit(Array.from({ length: unitCount }, (_, i) => i), 64, (i) => reg.submitUnit(`app@${i}.service`, body, { desiredState: 'launched' }));
    const submitted = Date.now() - t;
    // The engine starts only now, so what follows times placement + start + report alone.
    const engine = new Engine({ registry: reg, candidateId: 'engine', leaderTtlSeconds: 10, reconcileIntervalMs: 5000 });
    const reconciles: Array<{ assigned: number; ms: number }> = [];
    engine.on('reconciled', (r) => reconciles.push(r));
    const t0 = Date.now();
    engine.start();
    let assignedAt = 0;
    let running = 0;
    while (Date.now() - t0 < 120_000) {
      if (!assignedAt && reconciles.some((r) => r.assigned > 0)) assignedAt = Date.now() - t0;
      running = (await reg.listStates()).filter((st) => st.active === 'active').length;
      if (running === unitCount) break;
      await sleep(200);
    }
    const total = Date.now() - t0;
    const perMachine = new Map<string, number>();
    for (const a of await reg.listSchedule()) perMachine.set(a.machineId, (perMachine.get(a.machineId) ?? 0) + 1);
    const loads = [...perMachine.values()];
    console.log(`${unitCount} units submitted before the engine starts: ${secs(submitted)} (${Math.round(unitCount / (submitted / 1000))}/s)`);
    console.log(`engine start -> first plan written: ${secs(assignedAt)}; -> all ${unitCount} reported running: ${secs(total)} (${running}/${unitCount}) — goal <= 10 s`);
    console.log(`engine passes: ${reconciles.length}, largest ${Math.max(...reconciles.map((r) => r.assigned))} assignments in ${secs(Math.max(...reconciles.map((r) => r.ms)))}`);
    console.log(`units per machine: min ${Math.min(...loads)}, max ${Math.max(...loads)} over ${perMachine.size} machines`);
    t = Date.now();
    await engine.stop();
    await Promise.all(agents.map((a) => a.stop()));
    console.log(`shutdown: ${secs(Date.now() - t)}`);
  } finally {
    await reg.close();
    await etcd.stop();
  }
}

async function failover(): Promise<void> {
  const trials = Number(values.trials);
  const ttl = DEFAULTS.agentTtlSeconds;
  const etcd = await startEtcd({ heartbeatMs: 100, electionMs: 1000 });
  const f = new FleetFixture([etcd.endpoint], 'failover', ttl, DEFAULTS.reconcileIntervalMs);
  const times: number[] = [];
  try {
    // The engine runs on a machine that never fails (as in a cluster with other nodes).
    await f.start({ id: 'steady', metadata: { pool: 'none' } });
    const c = await f.units();
    for (let i = 0; i < trials; i++) {
      const victim = f.spawn({ id: `victim${i}`, metadata: { pool: 'p' } });
      while (!(await c.listMachines()).some((m) => m.id === `victim${i}`)) await sleep(50);
      const unit = `svc${i}.service`;
      await c.setState([f.writeUnit(unit, f.markerUnit(['MachineMetadata=pool=p']))], 'launched');
      await f.waitRows((rows) => rows.some((r) => r.unit === unit && r.machine === `victim${i}` && r.active === 'active'), 30_000);
      const standby = await startFleetd(f.config({ id: `standby${i}`, metadata: { pool: 'p' } }));
      const t0 = Date.now();
      await victim.kill();
      await f.waitRows((rows) => rows.some((r) => r.unit === unit && r.machine === `standby${i}` && r.active === 'active'), 30_000);
      times.push(Date.now() - t0);
      process.stdout.write(`  trial ${i + 1}: ${secs(times[times.length - 1]!)}\n`);
      await c.destroy([unit]);
      await standby.stop();
    }
    const sorted = [...times].sort((a, b) => a - b);
    const pick = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
    console.log(`failover after SIGKILL (TTL ${ttl} s, ${trials} trials): median ${secs(pick(0.5))}, p95 ${secs(pick(0.95))}, min ${secs(sorted[0]!)}, max ${secs(sorted[sorted.length - 1]!)} — goal <= 5 s`);
  } finally {
    await f.stop();
    await etcd.stop();
  }
}

function plan(): void {
  const unitCount = Number(values.units);
  const machineCount = Number(values.agents);
  const machines = Array.from({ length: machineCount }, (_, i) => ({ id: `m${i}`, metadata: {}, capacity: { cpus: 64, memoryMiB: 262_144 } }));
  const jobs = (requests: boolean): SchedulableJob[] =>
    Array.from({ length: unitCount }, (_, i) => ({
      name: `app@${i}.service`,
      hash: 'a'.repeat(64),
      desiredState: 'launched' as const,
      options: emptyXFleetOptions(),
      ...(requests ? { resources: { cpuMilli: 500, memoryMiB: 256 } } : {}),
    }));
  const time = (label: string, fn: () => ReturnType<typeof planSchedule>) => {
    const t = performance.now();
    const p = fn();
    const ms = performance.now() - t;
    console.log(`plan ${label}: ${ms.toFixed(0)} ms (${p.target.length} placed, ${p.unplaceable.size} unplaceable)`);
    return { ms, p };
  };
  const plain = time(`${unitCount} units, no requests, ${machineCount} machines`, () => planSchedule({ jobs: jobs(false), machines, schedule: [] }));
  const req = time(`${unitCount} units, each 0.5 CPU + 256 MiB, ${machineCount} machines`, () => planSchedule({ jobs: jobs(true), machines, schedule: [] }));
  const again = time(`second pass, all ${unitCount} with requests placed`, () => planSchedule({ jobs: jobs(true), machines, schedule: req.p.target }));
  console.log(`ratio requests/no requests: ${(req.ms / plain.ms).toFixed(1)}x; second pass/first: ${(again.ms / req.ms).toFixed(2)}x`);
}

async function moves(): Promise<void> {
  const etcd = await startEtcd({ heartbeatMs: 100, electionMs: 1000 });
  const f = new FleetFixture([etcd.endpoint], 'moves', 4, DEFAULTS.reconcileIntervalMs);
  try {
    for (const id of ['m1', 'm2', 'm3']) await f.start({ id });
    const c = await f.units();
    const stop = path.join(f.dir, 'stop-all');
    const flaky = [
      '[Unit]', 'StartLimitBurst=3', 'StartLimitIntervalSec=30s',
      '[Service]',
      `ExecStart=/bin/sh -c 'if [ "$$FLOTILLA_MACHINE_ID" = m1 ]; then exit 1; fi; while [ ! -e ${stop} ]; do sleep 0.1; done'`,
      'Restart=always', 'RestartSec=100ms',
      '', // placed by load: m1 first (ties by machine ID)
    ].join('\n');
    const t0 = Date.now();
    await c.setState([f.writeUnit('flaky.service', flaky)], 'launched');
    await f.waitRows((rows) => rows.some((r) => r.unit === 'flaky.service' && r.machine !== 'm1' && r.active === 'active'), 60_000);
    console.log(`crash loop on m1 (3 starts, 100 ms apart) -> active on another machine: ${secs(Date.now() - t0)}`);
    const body = (v: string) => `[Service]\nExecStart=/bin/sh -c 'while [ ! -e ${stop} ]; do echo ${v} >/dev/null; sleep 0.1; done'\n[X-Fleet]\nGlobal=true\n`;
    await c.setState([f.writeUnit('web.service', body('v1'))], 'launched');
    await f.waitRows((rows) => rows.filter((r) => r.unit === 'web.service' && r.active === 'active').length === 3, 60_000);
    const t1 = Date.now();
    const out = await updateUnit(c.registry, 'web.service', body('v2'), { maxUnavailable: 1, timeoutMs: 60_000, minReadyMs: 0, rollbackOnFailure: false });
    const ms = Date.now() - t1;
    console.log(`rolling update of a global unit, 3 copies one at a time (min-ready 0): ${secs(ms)} (${secs(ms / 3)} per copy), ${out?.rollout.phase}`);
  } finally {
    await f.stop();
    await etcd.stop();
  }
}

(async () => {
  console.log(`host: ${os.cpus().length} cores, node ${process.version}`);
  if (parts.includes('scale')) await scale();
  if (parts.includes('failover')) await failover();
  if (parts.includes('plan')) plan();
  if (parts.includes('moves')) await moves();
  fs.rmSync(path.join(os.tmpdir(), 'flotilla-bench-none'), { force: true });
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
