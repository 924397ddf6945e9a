/**
 * Whole-registry views for the engine: `snapshot` (everything at one revision) and
 * `watchAll` (notifications of every change, a 'resync' first and after any re-list).
 */
import type { IKeyValue, IRangeResponse } from 'etcd3';
import { decodeHealth, decodeJob, decodeLeader, decodeMachine, decodePlacement, decodeRollout, decodeState } from './codec';
import type { RegistryCore } from './core';
import { buf, keyOf, warn } from './etcd';
import type { RegistryChange, RegistrySnapshot, RegistryWatch, WatchOptions } from './model';
import { assignmentOf } from './schedule';
import { stateOf } from './states';
import { ResilientWatch } from './watch';

/** Everything at one revision; `states: false` skips unit states (the engine does not place by them). */
export async function snapshot(core: RegistryCore, opts: { states?: boolean } = {}): Promise<RegistrySnapshot> {
  const k = core.k;
  const jobs = await core.range('snapshot', k.jobs);
  const rev = jobs.header.revision;
  const [machines, schedule, states, placements, health, rollouts, leader] = await Promise.all([
    core.range('snapshot', k.machines, rev),
    core.range('snapshot', k.schedule, rev),
    opts.states === false ? Promise.resolve({ kvs: [] as IKeyValue[] } as unknown as IRangeResponse) : core.range('snapshot', k.states, rev),
    core.range('snapshot', k.placements, rev),
    core.range('snapshot', k.healthAll, rev),
    core.range('snapshot', k.rollouts, rev),
    core.call('snapshot', () => core.client.kv.range({ key: buf(k.leader), revision: rev })),
  ]);
  const leaderKv = leader.kvs[0];
  return {
    revision: rev,
    jobs: core.decodeMany(jobs.kvs, 'job', (_, o) => decodeJob(o)),
    machines: core.decodeMany(machines.kvs, 'machine', (_, o) => decodeMachine(o)),
    schedule: core.decodeMany(schedule.kvs, 'assignment', (kv, o) => assignmentOf(core.k, kv, o)),
    states: core.decodeMany(states.kvs, 'unit state', (kv, o) => stateOf(core.k, kv, o)),
    placements: core.decodeMany(placements.kvs, 'placement', (_, o) => decodePlacement(o)),
    health: core.decodeMany(health.kvs, 'health record', (_, o) => decodeHealth(o)),
    rollouts: core.decodeMany(rollouts.kvs, 'rollout', (kv, o) => decodeRollout(o, kv.mod_revision)),
    leader: leaderKv
      ? core.decode(leaderKv, 'leader record', (o) => decodeLeader(o, leaderKv.create_revision))
      : undefined,
  };
}

/**
 * Notifies of every change to jobs, machines, schedule, states and placements (not
 * bodies, references or the leader key). Starts with a 'resync'; a later 'resync'
 * means changes may have been missed: re-read with snapshot().
 */
export async function watchAll(core: RegistryCore, cb: (ev: RegistryChange) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
  const onError = opts.onError ?? warn;
  const w = new ResilientWatch(core, core.k.root, true, {
    snapshot: (_, revision) => cb({ type: 'resync', revision }),
    event: (type, kv, revision) => {
      const p = core.k.parse(keyOf(kv));
      if (p.kind === 'body' || p.kind === 'ref' || p.kind === 'leader' || p.kind === 'rollout-lock' || p.kind === 'unknown') return;
      const change: RegistryChange = { type, kind: p.kind, revision };
      if ('unit' in p) change.unit = p.unit;
      if ('machineId' in p) change.machineId = p.machineId;
      if (p.kind === 'state' && type === 'put') {
        try {
          change.state = core.decode(kv, 'unit state', (o) => decodeState(p.machineId, o));
        } catch (err) {
          onError(err as Error);
          return;
        }
      }
      cb(change);
    },
  }, onError, true);
  await w.start();
  return { close: () => w.close() };
}
