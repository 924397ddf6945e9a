/** What an emulated (TCG) cluster raises in the spec, and what it leaves alone. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { loadSpecObject } from '../../src/config/load';
import { TCG_MIN_ELECTION_MS, TCG_MIN_HEARTBEAT_MS, TCG_MIN_TTL_SECONDS, tuneForEmulation } from '../../src/provision/local/tcg';
import { makeSpec } from '../helpers/spec';

test('TCG raises the agent TTL and etcd heartbeat/election to stall-proof values, each with a note', () => {
  const spec = loadSpecObject(makeSpec());
  const { spec: tuned, notes } = tuneForEmulation(spec);
  assert.equal(tuned.agent.ttlSeconds, TCG_MIN_TTL_SECONDS);
  assert.equal(tuned.etcd.heartbeatIntervalMs, TCG_MIN_HEARTBEAT_MS);
  assert.equal(tuned.etcd.electionTimeoutMs, TCG_MIN_ELECTION_MS);
  assert.equal(notes.length, 2);
  assert.match(notes[0]!, /etcd heartbeat\/election raised from 250\/2500 ms to 1000\/10000 ms/);
  assert.match(notes[1]!, /agent lease TTL raised from \d+ s to 30 s/);
  // Nothing else changes, and the input is not mutated.
  assert.deepEqual({ ...tuned, agent: spec.agent, etcd: spec.etcd }, spec);
  assert.equal(spec.etcd.heartbeatIntervalMs, 250);
});

test('TCG keeps the agent TTL at least 2.5 election timeouts: an etcd election must not fence every agent', () => {
  const spec = loadSpecObject(makeSpec({ agent: { ttlSeconds: 30 }, etcd: { heartbeatIntervalMs: 2000, electionTimeoutMs: 20_000 } } as never));
  const { spec: tuned, notes } = tuneForEmulation(spec);
  assert.equal(tuned.etcd.electionTimeoutMs, 20_000);
  assert.equal(tuned.agent.ttlSeconds, 50);
  assert.deepEqual(notes, ['agent lease TTL raised from 30 s to 50 s (failover takes up to the TTL)']);
});

test('TCG keeps larger values from the spec and keeps election >= 10 heartbeats', () => {
  const resolve = (etcd: object) => loadSpecObject(makeSpec({ agent: { ttlSeconds: 40 }, etcd } as never));
  const slowEnough = resolve({ heartbeatIntervalMs: 2000, electionTimeoutMs: 12_000 });
  assert.deepEqual(tuneForEmulation(slowEnough), { spec: slowEnough, notes: [] }, 'values already stall-proof are the user\'s choice');
  const { spec: tuned, notes } = tuneForEmulation(resolve({ heartbeatIntervalMs: 1500, electionTimeoutMs: 8000 }));
  assert.equal(tuned.agent.ttlSeconds, 40);
  assert.equal(tuned.etcd.heartbeatIntervalMs, 1500);
  assert.equal(tuned.etcd.electionTimeoutMs, 15_000, '10 x the kept heartbeat');
  assert.equal(notes.length, 1);
  assert.deepEqual(tuneForEmulation(tuned), { spec: tuned, notes: [] }, 'idempotent');
});
