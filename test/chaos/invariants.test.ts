import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { byInvariant, checkInvariants, type InvariantInput, type JobDefinition } from '../../src/chaos/invariants';
import { checkUnitText } from '../../src/units/client';
import type { ChaosSnapshot } from '../../src/chaos/faults';
import type { Assignment, MachineInfo, UnitState } from '../../src/units/registry';

// Snapshots shaped exactly as Registry.snapshot() returns them.
const T = '2026-11-22T03:00:00.000Z';
const machine = (id: string, metadata: Record<string, string> = {}): MachineInfo => ({ id, metadata, address: `10.99.0.${id.length}`, capacity: { cpus: 1, memoryMiB: 1024 }, startedAt: T, version: 'dev' });
const hashOf = (name: string) => name.replace(/[^a-f0-9]/g, 'a').padEnd(64, '0').slice(0, 64);

function def(name: string, xfleet: string[] = [], desiredState: JobDefinition['desiredState'] = 'launched'): JobDefinition {
  const text = ['[Service]', 'ExecStart=/bin/sleep infinity', '', ...(xfleet.length ? ['[X-Fleet]', ...xfleet] : []), ''].join('\n');
  return { name, hash: hashOf(name), desiredState, options: checkUnitText(name, text).options };
}

const sched = (machineId: string, d: JobDefinition): Assignment => ({ machineId, unit: d.name, hash: d.hash, desiredState: 'launched', assignedAt: T });
const state = (machineId: string, d: JobDefinition, active = 'active'): UnitState => ({ machineId, unit: d.name, hash: d.hash, active, sub: active === 'active' ? 'running' : 'dead', updatedAt: T });

function snapshot(parts: Partial<ChaosSnapshot>, defs: JobDefinition[]): ChaosSnapshot {
  return {
    jobs: defs.map((d) => ({ name: d.name, hash: d.hash, desiredState: d.desiredState, submittedAt: T })),
    machines: [],
    schedule: [],
    states: [],
    leader: undefined,
    ...parts,
  };
}

/** Every unit of `defs` scheduled on and reported active on the given machine. */
function placed(on: Record<string, JobDefinition[]>): Pick<ChaosSnapshot, 'schedule' | 'states'> {
  const schedule: Assignment[] = [];
  const states: UnitState[] = [];
  for (const [m, ds] of Object.entries(on)) for (const d of ds) schedule.push(sched(m, d)), states.push(state(m, d));
  return { schedule, states };
}

const keys = (input: InvariantInput) => checkInvariants(input).map((v) => `${v.invariant}/${v.tolerance}/${v.key}`).sort();

describe('chaos invariants: placement', () => {
  const a = def('a.service');
  const machines = [machine('m1'), machine('m2')];
  const live = new Set(['m1', 'm2']);

  it('holds when a launched unit runs on exactly one live machine', () => {
    assert.deepEqual(keys({ snapshot: snapshot({ machines, ...placed({ m1: [a] }) }, [a]), live, definitions: [a] }), []);
  });

  it('is broken while a unit is not scheduled, scheduled on a dead machine, or not active', () => {
    assert.deepEqual(keys({ snapshot: snapshot({ machines }, [a]), live, definitions: [a] }), ['placement/converge/sched:a.service']);
    // m2 is registered (its lease has not expired) but no longer live: partitioned or powered off.
    assert.deepEqual(keys({ snapshot: snapshot({ machines, ...placed({ m2: [a] }) }, [a]), live: new Set(['m1']), definitions: [a] }), ['placement/converge/dead:a.service']);
    const failed = snapshot({ machines, schedule: [sched('m1', a)], states: [state('m1', a, 'failed')] }, [a]);
    assert.deepEqual(keys({ snapshot: failed, live, definitions: [a] }), ['placement/converge/run:a.service']);
  });

  it('prefers the node’s own word to the agent’s report', () => {
    const snap = snapshot({ machines, ...placed({ m1: [a] }) }, [a]);
    // The registry says active, systemd on m1 says it is not running.
    assert.deepEqual(keys({ snapshot: snap, live, definitions: [a], running: new Map([['m1', new Map([['a.service', 'inactive']])]]) }), ['placement/converge/run:a.service']);
    assert.deepEqual(keys({ snapshot: snap, live, definitions: [a], running: new Map([['m1', new Map([['a.service', 'active']])]]) }), []);
  });

  it('flags a second running copy (fencing window) even where the registry no longer reports it', () => {
    const snap = snapshot({ machines, ...placed({ m1: [a] }) }, [a]);
    // m2's agent died: its states vanished with its lease, but systemd there still runs a copy.
    const running = new Map([['m1', new Map([['a.service', 'active']])], ['m2', new Map([['a.service', 'active']])]]);
    const v = checkInvariants({ snapshot: snap, live, definitions: [a], running });
    assert.deepEqual(v.map((x) => `${x.invariant}/${x.tolerance}/${x.key}`), ['placement/window/copies:a.service']);
    assert.match(v[0]!.message, /runs on 2 machines/);
  });

  it('checks MachineMetadata, MachineID and MachineOf', () => {
    const meta = def('meta.service', ['MachineMetadata=disk=ssd']);
    const ms = [machine('m1', { disk: 'ssd' }), machine('m2', { disk: 'hdd' })];
    assert.deepEqual(keys({ snapshot: snapshot({ machines: ms, ...placed({ m2: [meta] }) }, [meta]), live, definitions: [meta] }), ['placement/converge/ineligible:meta.service']);
    assert.deepEqual(keys({ snapshot: snapshot({ machines: ms, ...placed({ m1: [meta] }) }, [meta]), live, definitions: [meta] }), []);
    const pinned = def('pinned.service', ['MachineID=m2']);
    assert.deepEqual(keys({ snapshot: snapshot({ machines: ms, ...placed({ m1: [pinned] }) }, [pinned]), live, definitions: [pinned] }), ['placement/converge/ineligible:pinned.service']);
    const anchor = def('anchor.service');
    const follower = def('follower.service', ['MachineOf=anchor.service']);
    const split = snapshot({ machines: ms, ...placed({ m1: [anchor], m2: [follower] }) }, [anchor, follower]);
    assert.deepEqual(keys({ snapshot: split, live, definitions: [anchor, follower] }), ['placement/converge/machineof:follower.service']);
    const together = snapshot({ machines: ms, ...placed({ m1: [anchor, follower] }) }, [anchor, follower]);
    assert.deepEqual(keys({ snapshot: together, live, definitions: [anchor, follower] }), []);
  });

  it('expects a unit whose only eligible machine is down to run nowhere live', () => {
    const meta = def('meta.service', ['MachineMetadata=disk=ssd']);
    const ms = [machine('m1', { disk: 'ssd' }), machine('m2', { disk: 'hdd' })];
    // m1 is out: nothing may run meta, and not being scheduled is right.
    assert.deepEqual(keys({ snapshot: snapshot({ machines: ms }, [meta]), live: new Set(['m2']), definitions: [meta] }), []);
    const wrong = snapshot({ machines: ms, ...placed({ m2: [meta] }) }, [meta]);
    assert.deepEqual(keys({ snapshot: wrong, live: new Set(['m2']), definitions: [meta] }), ['placement/converge/ineligible:meta.service']);
  });

  it('expects loaded units to run nowhere', () => {
    const l = def('l.service', [], 'loaded');
    assert.deepEqual(keys({ snapshot: snapshot({ machines, states: [state('m1', l)] }, [l]), live, definitions: [l] }), ['placement/converge/stopped:l.service']);
    assert.deepEqual(keys({ snapshot: snapshot({ machines, states: [state('m1', l, 'inactive')] }, [l]), live, definitions: [l] }), []);
  });
});

describe('chaos invariants: global', () => {
  const g = def('g.service', ['Global=true', 'MachineMetadata=region=east']);
  const ms = [machine('m1', { region: 'east' }), machine('m2', { region: 'east' }), machine('m3', { region: 'west' })];

  it('holds when the global unit runs on every matching live machine', () => {
    const snap = snapshot({ machines: ms, ...placed({ m1: [g], m2: [g] }) }, [g]);
    assert.deepEqual(keys({ snapshot: snap, live: new Set(['m1', 'm2', 'm3']), definitions: [g] }), []);
  });

  it('is broken on a matching live machine without it, not on a dead one', () => {
    const snap = snapshot({ machines: ms, ...placed({ m1: [g] }) }, [g]);
    assert.deepEqual(keys({ snapshot: snap, live: new Set(['m1', 'm2', 'm3']), definitions: [g] }), ['global/converge/global:g.service:m2']);
    assert.deepEqual(keys({ snapshot: snap, live: new Set(['m1', 'm3']), definitions: [g] }), []);
  });

  it('is broken when it runs on a machine that does not match', () => {
    const snap = snapshot({ machines: ms, ...placed({ m1: [g], m2: [g], m3: [g] }) }, [g]);
    assert.deepEqual(keys({ snapshot: snap, live: new Set(['m1', 'm2', 'm3']), definitions: [g] }), ['global/converge/global-extra:g.service:m3']);
  });
});

describe('chaos invariants: conflicts', () => {
  const a = def('c-a.service', ['Conflicts=c-*.service']);
  const b = def('c-b.service', ['Conflicts=c-*.service']);
  const ms = [machine('m1'), machine('m2')];
  const live = new Set(['m1', 'm2']);

  it('holds when the pair is apart', () => {
    assert.deepEqual(keys({ snapshot: snapshot({ machines: ms, ...placed({ m1: [a], m2: [b] }) }, [a, b]), live, definitions: [a, b] }), []);
  });

  it('is broken (fencing window) when the pair shares a machine, scheduled or only running', () => {
    assert.deepEqual(keys({ snapshot: snapshot({ machines: ms, ...placed({ m1: [a, b] }) }, [a, b]), live, definitions: [a, b] }), ['conflicts/window/conflict:m1:c-a.service:c-b.service']);
    // Scheduled apart, but an orphaned copy of b still runs beside a on m1.
    const snap = snapshot({ machines: ms, ...placed({ m1: [a], m2: [b] }) }, [a, b]);
    const running = new Map([['m1', new Map([['c-a.service', 'active'], ['c-b.service', 'active']])], ['m2', new Map([['c-b.service', 'active']])]]);
    const got = byInvariant(checkInvariants({ snapshot: snap, live, definitions: [a, b], running }));
    assert.deepEqual(got.conflicts.map((v) => v.key), ['conflict:m1:c-a.service:c-b.service']);
    assert.deepEqual(got.placement.map((v) => v.key), ['copies:c-b.service']);
  });
});

describe('chaos invariants: lost', () => {
  const a = def('a.service');
  const ms = [machine('m1')];
  const live = new Set(['m1']);

  it('holds when jobs, bodies and sentinel keys are all there', () => {
    const snap = snapshot({ machines: ms, ...placed({ m1: [a] }) }, [a]);
    const sentinels = { expected: new Map([['k1', 'v1']]), found: new Map([['k1', 'v1']]) };
    assert.deepEqual(keys({ snapshot: snap, live, definitions: [a], bodies: new Set([a.hash]), sentinels }), []);
  });

  it('is broken at once by a missing job, a changed job, a missing body or a lost key', () => {
    assert.deepEqual(keys({ snapshot: { ...snapshot({ machines: ms }, []), jobs: [] }, live, definitions: [a] }).filter((k) => k.startsWith('lost')), ['lost/never/job:a.service']);
    const changed = snapshot({ machines: ms, ...placed({ m1: [a] }) }, [a]);
    changed.jobs[0] = { ...changed.jobs[0]!, hash: 'f'.repeat(64) };
    assert.deepEqual(keys({ snapshot: changed, live, definitions: [a] }).filter((k) => k.startsWith('lost')), ['lost/never/job:a.service']);
    const ok = snapshot({ machines: ms, ...placed({ m1: [a] }) }, [a]);
    assert.deepEqual(keys({ snapshot: ok, live, definitions: [a], bodies: new Set() }), ['lost/never/body:a.service']);
    const sentinels = { expected: new Map([['k1', 'v1'], ['k2', 'v2']]), found: new Map([['k2', 'other']]) };
    assert.deepEqual(keys({ snapshot: ok, live, definitions: [a], sentinels }), ['lost/never/sentinels-changed', 'lost/never/sentinels-missing']);
  });

  it('counts templates for loss only', () => {
    const tpl: JobDefinition = { ...def('web@.service'), desiredState: 'loaded', template: true };
    assert.deepEqual(keys({ snapshot: snapshot({ machines: ms }, [tpl]), live, definitions: [tpl] }), []);
    assert.deepEqual(keys({ snapshot: snapshot({ machines: ms }, []), live, definitions: [tpl] }), ['lost/never/job:web@.service']);
  });
});
