import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatChaosReport } from '../../src/chaos/report';
import { timingsFor, type ChaosReport, type FaultRow } from '../../src/chaos/runner';
import { cli } from '../helpers/cli';

describe('flotilla chaos: command line', () => {
  it('refuses bad flags before touching any cluster', async () => {
    const mixed = await cli('chaos', '--cluster', 'x', '--nodes', '3');
    assert.equal(mixed.code, 2);
    assert.match(mixed.stderr, /--cluster runs against an existing cluster/);
    const seed = await cli('chaos', '--cluster', 'x', '--seed', '-1');
    assert.equal(seed.code, 2);
    const kinds = await cli('chaos', '--cluster', 'x', '--kinds', 'agent-kill,meteor');
    assert.equal(kinds.code, 2);
    assert.match(kinds.stderr, /unknown meteor/);
    const none = await cli('chaos', '--cluster', 'no-such-cluster-here', '--seed', '3');
    assert.equal(none.code, 3);
    assert.match(none.stderr, /no local cluster named no-such-cluster-here/);
  });
});

describe('chaos report', () => {
  const ok = { ok: true, brokenFor: 0, failures: [] as string[] };
  const row = (r: Partial<FaultRow>): FaultRow => ({ index: 1, kind: 'partition', invariants: { placement: ok, global: ok, conflicts: ok, lost: ok }, notes: [], ok: true, ...r });
  const report = (faults: FaultRow[]): ChaosReport => ({
    seed: 42, cluster: 'demo', timings: timingsFor(10), workload: [{ name: 'flotilla-chaos-plain-1.service', role: 'plain' }], existingUnits: [],
    steady: { ok: true, seconds: 31.2, notes: [] }, faults, sentinelKeys: 15, ok: faults.every((f) => f.ok), startedAt: 't', seconds: 300,
  });

  it('tabulates each fault with its times and invariants', () => {
    const text = formatChaosReport(report([
      row({ target: 'core2', injectedAt: 95, recoveredIn: 14.2, restoreTook: 0.1, rejoinedIn: 21.3, invariants: { placement: { ok: true, brokenFor: 12, failures: [] }, global: ok, conflicts: ok, lost: ok } }),
      row({ index: 2, kind: 'etcd-kill', skipped: '2 etcd members: killing one would lose the quorum' }),
    ]));
    const lines = text.split('\n');
    const header = lines.find((l) => l.startsWith('#'))!;
    assert.match(header, /FAULT +TARGET +INJECTED +RECOVERED +RESTORE +WHOLE +PLACEMENT +GLOBAL +CONFLICTS +LOST +RESULT/);
    assert.match(lines.find((l) => l.startsWith('1 '))!, /partition +core2 +\+95s +14\.2s +0\.1s +21\.3s +ok \(12s\) +ok +ok +ok +ok/);
    assert.match(lines.find((l) => l.startsWith('2 '))!, /etcd-kill .*skipped/);
    assert.match(text, /seed 42/);
    assert.match(text, /fencing window 10 s, recovery deadline 100 s/);
    assert.match(text, /All invariants held/);
  });

  it('says which invariant failed and why', () => {
    const bad = row({ kind: 'agent-kill', target: 'core3', injectedAt: 10, ok: false, invariants: { placement: { ok: false, brokenFor: 40, failures: ['u runs on 2 machines for more than 10 s (the fencing window)'] }, global: ok, conflicts: ok, lost: ok } });
    const text = formatChaosReport(report([bad]));
    assert.match(text.split('\n').find((l) => l.startsWith('1 '))!, /FAIL +ok +ok +ok +FAIL/);
    assert.match(text, /#1 agent-kill core3: placement: u runs on 2 machines/);
    assert.match(text, /INVARIANTS BROKEN/);
  });
});
