/** Placement by resources (spread, pack, never over-commit), failure avoidance, and per-copy content during a rollout. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { planSchedule, type SchedulableJob, type SchedulableMachine, type ScheduleInput } from '../../src/units/scheduler';
import { parseUnitFile } from '../../src/units/unit-file';
import { parseUnitPolicy } from '../../src/units/unit-policy';
import { parseXFleet } from '../../src/units/xfleet';

const H1 = '1'.repeat(64);

/** mulberry32: a small seeded generator with well-mixed low bits; rand(n) is in [0, n). */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n | 0;
  };
}
const H2 = '2'.repeat(64);

function job(name: string, lines: { service?: string[]; xfleet?: string[] } = {}, hash = H1): SchedulableJob {
  const text = ['[Service]', 'ExecStart=/bin/true', ...(lines.service ?? []), ...(lines.xfleet?.length ? ['[X-Fleet]', ...lines.xfleet] : [])].join('\n');
  const unit = parseUnitFile(text, name);
  const options = parseXFleet(unit);
  const policy = parseUnitPolicy(unit, options);
  return { name, hash, desiredState: 'launched', options, resources: policy.resources, placement: policy.placement };
}

const M = (id: string, cpus: number, memoryMiB: number, metadata: Record<string, string> = {}): SchedulableMachine => ({ id, metadata, capacity: { cpus, memoryMiB } });

function where(input: ScheduleInput): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const t of planSchedule(input).target) (out[t.unit] ??= []).push(t.machineId);
  for (const v of Object.values(out)) v.sort();
  return out;
}

test('spread puts each request where the most room is left; pack fills one machine first', () => {
  const machines = [M('m1', 4, 4096), M('m2', 2, 2048)];
  const spread = ['a', 'b', 'c'].map((n) => job(`${n}.service`, { xfleet: ['X-Flotilla-CPU=1'] }));
  // m1 (4 CPUs) takes a (share 1/4), then b (2/4 vs 1/2: tie on share, fewer units wins: m2), then c (2/4 vs 2/2): m1.
  assert.deepEqual(where({ jobs: spread, machines, schedule: [] }), { 'a.service': ['m1'], 'b.service': ['m2'], 'c.service': ['m1'] });
  const pack = ['a', 'b', 'c'].map((n) => job(`${n}.service`, { xfleet: ['X-Flotilla-CPU=1', 'X-Flotilla-Placement=pack'] }));
  // Pack: the machine most used after placing that still fits: m2 (1/2) beats m1 (1/4), then m2 is full (2/2), then m1.
  assert.deepEqual(where({ jobs: pack, machines, schedule: [] }), { 'a.service': ['m2'], 'b.service': ['m2'], 'c.service': ['m1'] });
});

test('an over-committing request stays unplaced and says what is missing where', () => {
  const machines = [M('m1', 1, 1024), M('m2', 2, 512)];
  const plan = planSchedule({
    machines,
    schedule: [],
    jobs: [job('big.service', { service: ['CPUQuota=200%', 'MemoryMax=1G'] }), job('huge.service', { xfleet: ['X-Flotilla-CPU=8'] })],
  });
  assert.deepEqual(plan.target, []);
  assert.equal(
    plan.unplaceable.get('big.service'),
    'no eligible machine among 2: m1: needs 2 CPUs, 1024 MiB: 1 of 1 CPUs free; m2: needs 2 CPUs, 1024 MiB: 512 of 512 MiB free',
  );
  assert.match(plan.unplaceable.get('huge.service')!, /m1: needs 8 CPUs: 1 of 1 CPUs free; m2: needs 8 CPUs: 2 of 2 CPUs free/);
});

test('placed units keep their share: a new unit never takes it, even one that sorts first', () => {
  const machines = [M('m1', 1, 1024)];
  const placed = job('z-old.service', { xfleet: ['X-Flotilla-CPU=1'] });
  const plan = planSchedule({ machines, schedule: [{ unit: 'z-old.service', machineId: 'm1', hash: H1 }], jobs: [job('a-new.service', { xfleet: ['X-Flotilla-CPU=1'] }), placed] });
  assert.deepEqual(plan.target.map((t) => [t.unit, t.machineId]), [['z-old.service', 'm1']]);
  assert.match(plan.unplaceable.get('a-new.service')!, /needs 1 CPU: 0 of 1 CPUs free/);
  // A machine that shrank below what is placed on it keeps what fits, in placement order, and moves the rest.
  const shrunk = planSchedule({
    machines: [M('m1', 1, 1024), M('m2', 1, 1024)],
    schedule: [{ unit: 'x.service', machineId: 'm1', hash: H1 }, { unit: 'y.service', machineId: 'm1', hash: H1 }],
    jobs: [job('x.service', { xfleet: ['X-Flotilla-CPU=1'] }), job('y.service', { xfleet: ['X-Flotilla-CPU=1'] })],
  });
  assert.deepEqual(shrunk.target.map((t) => [t.unit, t.machineId, t.reason]), [['x.service', 'm1', 'kept'], ['y.service', 'm2', 'moved from m1 (m1: needs 1 CPU: 0 of 1 CPUs free)']]);
});

test('global units count against capacity and skip machines without room', () => {
  const machines = [M('m1', 1, 1024), M('m2', 1, 256)];
  const plan = planSchedule({ machines, schedule: [], jobs: [job('agent.service', { xfleet: ['Global=true', 'X-Flotilla-Memory=512M'] }), job('app.service', { xfleet: ['X-Flotilla-Memory=600M'] })] });
  assert.deepEqual(plan.target.map((t) => [t.unit, t.machineId]), [['agent.service', 'm1']]);
  assert.match(plan.unplaceable.get('app.service')!, /m1: needs 600 MiB: 512 of 1024 MiB free; m2: needs 600 MiB: 256 of 256 MiB free/);
});

test('a machine to avoid: the unit moves off it with the reason, and stays off it', () => {
  const machines = [M('m1', 1, 1024), M('m2', 1, 1024)];
  const avoid = new Map([['crash.service', new Map([['m1', 'failed on m1 once (start-limit-hit); avoided until 03:41:05Z']])]]);
  const plan = planSchedule({ machines, schedule: [{ unit: 'crash.service', machineId: 'm1', hash: H1 }], jobs: [job('crash.service')], avoid });
  assert.deepEqual(plan.target.map((t) => [t.machineId, t.reason]), [['m2', 'moved from m1 (failed on m1 once (start-limit-hit); avoided until 03:41:05Z)']]);
  assert.deepEqual(plan.unassign, [{ unit: 'crash.service', machineId: 'm1', reason: 'moved' }]);
  // Avoided everywhere: unplaced, saying why for each machine.
  const both = new Map([['crash.service', new Map([['m1', 'failed on m1 once (x)'], ['m2', 'failed on m2 once (x)']])]]);
  const none = planSchedule({ machines, schedule: [{ unit: 'crash.service', machineId: 'm2', hash: H1 }], jobs: [job('crash.service')], avoid: both });
  assert.deepEqual(none.target, []);
  assert.equal(none.unplaceable.get('crash.service'), 'no eligible machine among 2: failed on m1 once (x); failed on m2 once (x)');
  // A global unit's copy on an avoided machine stops there (and only there).
  const g = planSchedule({ machines, schedule: [], jobs: [job('g.service', { xfleet: ['Global=true'] })], avoid: new Map([['g.service', new Map([['m2', 'failed on m2 once (x)']])]]) });
  assert.deepEqual(g.target.map((t) => t.machineId), ['m1']);
});

test('during a rollout each copy gets the content the rollout names for its machine; others keep theirs; new copies get the job content', () => {
  const machines = [M('m1', 1, 1024), M('m2', 1, 1024), M('m3', 1, 1024)];
  const g = { ...job('g.service', { xfleet: ['Global=true'] }, H2), rollout: { hashOn: new Map([['m1', H2]]) } };
  const plan = planSchedule({ machines, schedule: [{ unit: 'g.service', machineId: 'm1', hash: H1 }, { unit: 'g.service', machineId: 'm2', hash: H1 }], jobs: [g] });
  assert.deepEqual(plan.target.map((t) => [t.machineId, t.hash]), [['m1', H2], ['m2', H1], ['m3', H2]]);
  assert.deepEqual(plan.assign.map((t) => t.machineId), ['m1', 'm3'], 'm2 is not touched until the rollout reaches it');
  // Without a rollout, every copy gets the job's content at once.
  const plain = planSchedule({ machines, schedule: [{ unit: 'g.service', machineId: 'm1', hash: H1 }], jobs: [job('g.service', { xfleet: ['Global=true'] }, H2)] });
  assert.deepEqual(plain.target.map((t) => t.hash), [H2, H2, H2]);
});

test('random clusters: capacity is never exceeded, avoided machines are never used, placed units are kept', () => {
  const rand = prng(42);
  for (let round = 0; round < 200; round++) {
    const machines = Array.from({ length: 1 + rand(5) }, (_, i) => M(`m${i}`, 1 + rand(4), 256 * (1 + rand(8))));
    const jobs = Array.from({ length: rand(25) }, (_, i) =>
      job(`u${i}.service`, { xfleet: [`X-Flotilla-CPU=${rand(3) * 0.5}`, `X-Flotilla-Memory=${rand(5) * 128}M`, ...(rand(3) === 0 ? ['X-Flotilla-Placement=pack'] : []), ...(rand(6) === 0 ? ['Global=true'] : [])] }),
    );
    const avoid = new Map<string, Map<string, string>>();
    for (const j of jobs) if (rand(4) === 0) avoid.set(j.name, new Map([[`m${rand(machines.length)}`, 'failed']]));
    const first = planSchedule({ jobs, machines, schedule: [], avoid });
    // Feed the result back (as the engine's next pass would): nothing placed moves.
    const second = planSchedule({ jobs, machines, schedule: first.target, avoid });
    for (const plan of [first, second]) {
      const used = new Map<string, { cpu: number; mem: number }>();
      for (const t of plan.target) {
        const j = jobs.find((x) => x.name === t.unit)!;
        const u = used.get(t.machineId) ?? { cpu: 0, mem: 0 };
        u.cpu += j.resources!.cpuMilli;
        u.mem += j.resources!.memoryMiB;
        used.set(t.machineId, u);
        assert.ok(!avoid.get(t.unit)?.has(t.machineId), `round ${round}: ${t.unit} placed on avoided ${t.machineId}`);
      }
      for (const m of machines) {
        const u = used.get(m.id) ?? { cpu: 0, mem: 0 };
        assert.ok(u.cpu <= m.capacity!.cpus * 1000 && u.mem <= m.capacity!.memoryMiB, `round ${round}: ${m.id} over-committed: ${JSON.stringify(u)} > ${JSON.stringify(m.capacity)}`);
      }
    }
    assert.deepEqual(second.assign, [], `round ${round}: a second pass changes nothing`);
    assert.deepEqual(second.unassign, []);
  }
});

test('random clusters: the heap path for resource-only units picks what scoring every machine picks', () => {
  const rand = prng(7);
  for (let round = 0; round < 200; round++) {
    // Few capacity classes, so several machines share a heap.
    const machines = Array.from({ length: 1 + rand(8) }, (_, i) => ({ ...M(`m${i}`, 1 + rand(2) * 3, 512 * (1 + rand(2))), metadata: { any: 'yes' } }));
    // Sizes far apart, so the share in use and the number of units disagree about who is least used.
    const requests = Array.from({ length: rand(30) }, () => [`X-Flotilla-CPU=${[0.25, 0.5, 2, 3][rand(4)]}`, `X-Flotilla-Memory=${rand(4) * 100}M`]);
    // The same units, once unconstrained (heap path) and once with a constraint every machine meets (scan path).
    const fast = requests.map((x, i) => job(`u${String(i).padStart(2, '0')}.service`, { xfleet: x }));
    const scanned = requests.map((x, i) => job(`u${String(i).padStart(2, '0')}.service`, { xfleet: [...x, 'MachineMetadata=any=yes'] }));
    const placed = rand(2) === 0 ? [] : planSchedule({ jobs: fast.slice(0, rand(fast.length + 1)), machines, schedule: [] }).target;
    const a = planSchedule({ jobs: fast, machines, schedule: placed });
    const b = planSchedule({ jobs: scanned, machines, schedule: placed });
    assert.deepEqual(a.target.map((t) => [t.unit, t.machineId]), b.target.map((t) => [t.unit, t.machineId]), `round ${round}`);
    assert.deepEqual([...a.unplaceable.keys()], [...b.unplaceable.keys()], `round ${round}`);
  }
});
