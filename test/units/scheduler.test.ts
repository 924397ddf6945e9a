import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { planSchedule, type SchedulableJob, type ScheduleInput } from '../../src/units/scheduler';
import { parseUnitFile } from '../../src/units/unit-file';
import { parseXFleet } from '../../src/units/xfleet';

function job(name: string, xfleet = '', desiredState: SchedulableJob['desiredState'] = 'launched'): SchedulableJob {
  const text = `[Service]\nExecStart=/bin/true\n${xfleet ? `[X-Fleet]\n${xfleet}\n` : ''}`;
  return { name, hash: 'h'.repeat(64), desiredState, options: parseXFleet(parseUnitFile(text, name)) };
}

const M = (id: string, metadata: Record<string, string> = {}) => ({ id, metadata });

function where(input: ScheduleInput): Record<string, string[]> {
  const plan = planSchedule(input);
  const out: Record<string, string[]> = {};
  for (const t of plan.target) (out[t.unit] ??= []).push(t.machineId);
  for (const v of Object.values(out)) v.sort();
  return out;
}

test('least loaded placement spreads units; inactive units are not placed', () => {
  const jobs = ['a', 'b', 'c', 'd'].map((n) => job(`${n}.service`)).concat(job('off.service', '', 'inactive'));
  const w = where({ jobs, machines: [M('m1'), M('m2')], schedule: [] });
  assert.deepEqual(w, { 'a.service': ['m1'], 'b.service': ['m2'], 'c.service': ['m1'], 'd.service': ['m2'] });
});

test('MachineMetadata: different keys AND, repeated key OR', () => {
  const machines = [M('east-ssd', { region: 'east', disk: 'ssd' }), M('east-hdd', { region: 'east', disk: 'hdd' }), M('west-ssd', { region: 'west', disk: 'ssd' })];
  const w = where({
    machines,
    schedule: [],
    jobs: [
      job('and.service', 'MachineMetadata=region=east\nMachineMetadata=disk=ssd'),
      job('or.service', 'MachineMetadata=region=west region=nowhere'),
      job('none.service', 'MachineMetadata=gpu=yes'),
    ],
  });
  assert.deepEqual(w['and.service'], ['east-ssd']);
  assert.deepEqual(w['or.service'], ['west-ssd']);
  const plan = planSchedule({ machines, schedule: [], jobs: [job('none.service', 'MachineMetadata=gpu=yes')] });
  assert.match(plan.unplaceable.get('none.service')!, /no eligible machine among 3: MachineMetadata gpu=yes does not match/);
});

test('MachineID pins; an unknown MachineID is unplaceable with the reason', () => {
  assert.deepEqual(where({ machines: [M('m1'), M('m2')], schedule: [], jobs: [job('p.service', 'MachineID=m2')] }), { 'p.service': ['m2'] });
  const plan = planSchedule({ machines: [M('m1')], schedule: [], jobs: [job('p.service', 'MachineID=gone')] });
  assert.equal(plan.unplaceable.get('p.service'), 'MachineID=gone is not registered');
});

test('Conflicts (globs) never co-locate; too few machines leaves the rest unplaceable', () => {
  const jobs = [1, 2, 3].map((i) => job(`web@${i}.service`, 'Conflicts=web@*.service'));
  const plan = planSchedule({ machines: [M('m1'), M('m2')], schedule: [], jobs });
  const machinesUsed = plan.target.map((t) => t.machineId);
  assert.equal(new Set(machinesUsed).size, machinesUsed.length);
  assert.equal(plan.target.length, 2);
  assert.match(plan.unplaceable.get('web@3.service')!, /conflicts with web@[12]\.service/);
});

test('MachineOf follows its target; a missing target makes it wait', () => {
  const w = where({ machines: [M('m1'), M('m2'), M('m3')], schedule: [{ unit: 'db.service', machineId: 'm3', hash: 'h'.repeat(64) }], jobs: [job('db.service'), job('backup.service', 'MachineOf=db.service')] });
  assert.deepEqual(w, { 'db.service': ['m3'], 'backup.service': ['m3'] });
  const plan = planSchedule({ machines: [M('m1')], schedule: [], jobs: [job('backup.service', 'MachineOf=db.service')] });
  assert.match(plan.unplaceable.get('backup.service')!, /waiting for MachineOf target db\.service \(not submitted or not loaded\)/);
});

test('Global units run on every matching machine, including machines that join later', () => {
  const g = job('log.service', 'Global=true\nMachineMetadata=role=worker');
  const w1 = where({ machines: [M('m1', { role: 'worker' }), M('m2', { role: 'ctl' })], schedule: [], jobs: [g] });
  assert.deepEqual(w1, { 'log.service': ['m1'] });
  const plan = planSchedule({ machines: [M('m1', { role: 'worker' }), M('m2', { role: 'ctl' }), M('m3', { role: 'worker' })], schedule: [{ unit: 'log.service', machineId: 'm1', hash: 'h'.repeat(64) }], jobs: [g] });
  assert.deepEqual(plan.assign.map((a) => a.machineId), ['m3']);
  assert.deepEqual(plan.unassign, []);
});

test("Replaces takes the replaced unit's machine and pushes it elsewhere, without ping-pong", () => {
  const machines = [M('m1'), M('m2')];
  const H = 'h'.repeat(64);
  const first = planSchedule({ machines, schedule: [{ unit: 'old.service', machineId: 'm1', hash: H }], jobs: [job('old.service'), job('new.service', 'Replaces=old.service')] });
  const w = Object.fromEntries(first.target.map((t) => [t.unit, t.machineId]));
  assert.deepEqual(w, { 'new.service': 'm1', 'old.service': 'm2' });
  // Applying the plan and planning again changes nothing.
  const again = planSchedule({ machines, schedule: first.target, jobs: [job('old.service'), job('new.service', 'Replaces=old.service')] });
  assert.deepEqual([again.assign, again.unassign], [[], []]);
});

test('a dead machine: its units move; healthy placements stay put', () => {
  const H = 'h'.repeat(64);
  const jobs = [job('a.service'), job('b.service'), job('c.service')];
  const schedule = [
    { unit: 'a.service', machineId: 'm1', hash: H },
    { unit: 'b.service', machineId: 'm2', hash: H },
    { unit: 'c.service', machineId: 'm3', hash: H },
  ];
  const plan = planSchedule({ jobs, machines: [M('m1'), M('m3')], schedule });
  assert.deepEqual(plan.unassign, [{ unit: 'b.service', machineId: 'm2', reason: 'machine gone' }]);
  assert.equal(plan.assign.length, 1);
  assert.equal(plan.assign[0]!.unit, 'b.service');
  assert.ok(['m1', 'm3'].includes(plan.assign[0]!.machineId));
  assert.equal(plan.target.find((t) => t.unit === 'a.service')!.machineId, 'm1');
});

test('unloading and destroying remove assignments with the reason', () => {
  const H = 'h'.repeat(64);
  const plan = planSchedule({
    jobs: [job('a.service', '', 'inactive')],
    machines: [M('m1')],
    schedule: [{ unit: 'a.service', machineId: 'm1', hash: H }, { unit: 'gone.service', machineId: 'm1', hash: H }],
  });
  assert.deepEqual(plan.unassign, [
    { unit: 'a.service', machineId: 'm1', reason: 'unloaded' },
    { unit: 'gone.service', machineId: 'm1', reason: 'unit destroyed' },
  ]);
});

test('placement is deterministic and stable under input order', () => {
  const jobs = [
    ...Array.from({ length: 5 }, (_, i) => job(`c${i}.service`, 'Conflicts=c*.service')),
    ...Array.from({ length: 25 }, (_, i) => job(`u${i}.service`)),
  ];
  const machines = Array.from({ length: 7 }, (_, i) => M(`m${i}`));
  const a = planSchedule({ jobs, machines, schedule: [] }).target;
  const b = planSchedule({ jobs: [...jobs].reverse(), machines: [...machines].reverse(), schedule: [] }).target;
  const key = (t: { unit: string; machineId: string }) => `${t.unit}@${t.machineId}`;
  assert.deepEqual(a.map(key).sort(), b.map(key).sort());
  const loads = machines.map((m) => a.filter((t) => t.machineId === m.id).length);
  assert.ok(Math.max(...loads) - Math.min(...loads) <= 1, `loads ${loads}`);
  const conflictMachines = a.filter((t) => t.unit.startsWith('c')).map((t) => t.machineId);
  assert.equal(new Set(conflictMachines).size, 5);
});
