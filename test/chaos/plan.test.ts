import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { makeFault, type ChaosControl, type ChaosNode, type Observation } from '../../src/chaos/faults';
import { FAULT_KINDS, parseFaultKinds, planFaults } from '../../src/chaos/plan';
import { mulberry32, pickBy } from '../../src/chaos/prng';
import { chaosWorkload, metadataConstraint } from '../../src/chaos/workload';
import { checkUnitText } from '../../src/units/client';
import { FlotillaError } from '../../src/errors';

describe('chaos fault plan', () => {
  it('is the same for the same seed and differs between seeds', () => {
    assert.deepEqual(planFaults(7, 12), planFaults(7, 12));
    assert.notDeepEqual(planFaults(7, 12), planFaults(8, 12));
    // A longer plan starts with the shorter one: K only cuts it.
    assert.deepEqual(planFaults(7, 12).slice(0, 5), planFaults(7, 5));
  });

  it('deals every kind once per round, in a seeded order', () => {
    for (const seed of [0, 1, 2, 3, 4294967295]) {
      const plan = planFaults(seed, 10);
      assert.deepEqual(plan.map((p) => p.index), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.deepEqual([...plan.slice(0, 5).map((p) => p.kind)].sort(), [...FAULT_KINDS].sort());
      assert.deepEqual([...plan.slice(5).map((p) => p.kind)].sort(), [...FAULT_KINDS].sort());
      for (const p of plan) assert.ok(p.pick >= 0 && p.pick < 1);
    }
    const orders = new Set([0, 1, 2, 3, 4, 5, 6, 7].map((s) => planFaults(s, 5).map((p) => p.kind).join(',')));
    assert.ok(orders.size > 1, 'different seeds give different orders');
  });

  it('draws only from the kinds asked for, and refuses bad input', () => {
    const plan = planFaults(3, 4, ['partition', 'agent-kill']);
    assert.deepEqual(new Set(plan.map((p) => p.kind)), new Set(['partition', 'agent-kill']));
    assert.deepEqual(parseFaultKinds('power-off, etcd-kill'), ['power-off', 'etcd-kill']);
    assert.throws(() => parseFaultKinds('power-off,reboot'), (e: unknown) => FlotillaError.is(e) && e.code === 'usage' && /unknown reboot/.test(e.message));
    assert.throws(() => planFaults(1, 0), /at least 1/);
    assert.throws(() => planFaults(-1, 3), /seed must be/);
    assert.throws(() => planFaults(1.5, 3), /seed must be/);
  });

  it('mulberry32 is the published sequence (stable across Node versions)', () => {
    // First outputs of mulberry32 seeded with 0 and 1, as unsigned 32-bit integers.
    const ints = (seed: number) => {
      const r = mulberry32(seed);
      return [r(), r(), r()].map((x) => Math.round(x * 4294967296));
    };
    assert.deepEqual(ints(1), ints(1));
    assert.notDeepEqual(ints(0), ints(1));
    assert.deepEqual(pickBy(['a', 'b', 'c'], 0), 'a');
    assert.deepEqual(pickBy(['a', 'b', 'c'], 0.999999), 'c');
    assert.equal(pickBy([], 0.5), undefined);
  });
});

describe('chaos fault targets', () => {
  const nodes: ChaosNode[] = [
    { name: 'n1', machineId: 'm1', etcdMember: true, address: '10.0.0.1', metadata: {} },
    { name: 'n2', machineId: 'm2', etcdMember: true, address: '10.0.0.2', metadata: {} },
    { name: 'n3', machineId: 'm3', etcdMember: true, address: '10.0.0.3', metadata: {} },
    { name: 'n4', machineId: 'm4', etcdMember: false, address: '10.0.0.4', metadata: {} },
  ];
  const control = (ns: ChaosNode[]): ChaosControl => ({
    nodes: ns,
    exec: async () => ({ code: 0, stdout: '', stderr: '' }),
    setClusterLink: async () => undefined,
    powerOff: async () => undefined,
    powerOn: async () => undefined,
  });
  const before = (leader: string | undefined): Observation => ({
    at: 0,
    running: new Map(),
    snapshot: {
      jobs: [], schedule: [], states: [],
      machines: nodes.map((n) => ({ id: n.machineId, metadata: {}, address: n.address, capacity: { cpus: 1, memoryMiB: 1 }, startedAt: 't0', version: 'dev' })),
      leader: leader ? { candidateId: leader, leaseId: '1', since: 't0', createRevision: '5' } : undefined,
    },
  });
  const target = (kind: (typeof FAULT_KINDS)[number], pick: number, ns = nodes, leader: string | null = 'm2') => {
    const f = makeFault({ index: 1, kind, pick }, { control: control(ns), before: before(leader ?? undefined), ttlSeconds: 10 });
    return 'skipped' in f ? `skipped: ${f.skipped}` : f.target.name;
  };

  it('kills the leader for leader-kill and never the leader for agent-kill', () => {
    for (const pick of [0, 0.3, 0.6, 0.99]) {
      assert.equal(target('leader-kill', pick), 'n2');
      assert.notEqual(target('agent-kill', pick), 'n2');
    }
    assert.match(target('leader-kill', 0, nodes, null), /skipped: no engine leader/);
  });

  it('picks the same target for the same pick, and different ones across picks', () => {
    assert.equal(target('partition', 0.1), target('partition', 0.1));
    assert.deepEqual(new Set([0, 0.3, 0.6, 0.9].map((p) => target('power-off', p))), new Set(['n1', 'n2', 'n3', 'n4']));
  });

  it('never takes an etcd member away when that would lose the quorum', () => {
    const two = [nodes[0]!, nodes[1]!, nodes[3]!]; // two members, one plain node
    for (const pick of [0, 0.5, 0.99]) {
      assert.equal(target('power-off', pick, two), 'n4');
      assert.equal(target('partition', pick, two), 'n4');
    }
    assert.match(target('etcd-kill', 0, two), /skipped: 2 etcd members/);
    assert.deepEqual(new Set([0, 0.4, 0.8].map((p) => target('etcd-kill', p))), new Set(['n1', 'n2', 'n3']));
  });

  it('states what has to happen before the fault has had its effect', () => {
    const f = makeFault({ index: 1, kind: 'partition', pick: 0 }, { control: control(nodes), before: before('m2'), ttlSeconds: 10 });
    assert.ok(!('skipped' in f));
    const b = before('m2');
    assert.match(f.pendingDuring(b) ?? '', /still registered/);
    const gone = { ...b, snapshot: { ...b.snapshot, machines: b.snapshot.machines.filter((m) => m.id !== 'm1') } };
    assert.equal(f.pendingDuring(gone), undefined);
    assert.match(f.pendingAfter(gone) ?? '', /not registered/);
    assert.match(f.pendingAfter(b) ?? '', /not registered anew/);
    const back = { ...b, snapshot: { ...b.snapshot, machines: b.snapshot.machines.map((m) => (m.id === 'm1' ? { ...m, startedAt: 't1' } : m)) } };
    assert.equal(f.pendingAfter(back), undefined);
  });
});

describe('chaos workload', () => {
  it('is valid units covering every rule, with a metadata constraint that survives one node down', () => {
    const machines = [{ metadata: { region: 'east', disk: 'ssd' } }, { metadata: { region: 'east', disk: 'hdd' } }, { metadata: { region: 'west', disk: 'ssd' } }];
    const units = chaosWorkload(machines, 'r1');
    for (const u of units) checkUnitText(u.name, u.text);
    const opts = new Map(units.map((u) => [u.name.replace(/^flotilla-chaos-|\.service$/g, ''), checkUnitText(u.name, u.text).options]));
    assert.ok(opts.get('global')!.global);
    assert.deepEqual(opts.get('follower')!.machineOf, ['flotilla-chaos-anchor.service']);
    assert.deepEqual(opts.get('conflict-a')!.conflicts, ['flotilla-chaos-conflict-*.service']);
    // disk=ssd is shared by two of three machines (keys are tried in order: disk before region).
    assert.deepEqual(opts.get('meta')!.machineMetadata, [{ key: 'disk', values: ['ssd'] }]);
  });

  it('chooses the metadata constraint from what the machines have', () => {
    assert.deepEqual(metadataConstraint([{ metadata: { index: '1' } }, { metadata: { index: '2' } }, { metadata: { index: '3' } }]), { key: 'index', values: ['1', '2'] });
    assert.deepEqual(metadataConstraint([{ metadata: { a: 'x' } }, { metadata: { a: 'x' } }]), { key: 'a', values: ['x'] });
    assert.equal(metadataConstraint([{ metadata: {} }, { metadata: {} }]), undefined);
    assert.equal(chaosWorkload([{ metadata: {} }], 'r').some((u) => u.name.includes('meta')), false);
  });
});
