/**
 * The pure decisions of `flotilla replace`: order (workers, followers, leader last), when a
 * member may go (quorum while it is removed and while its replacement boots), the leader's
 * successor, the units a drain waits for, spec compatibility. The etcdctl parsers are also
 * run on real etcdctl output in replace-etcd.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadSpecObject } from '../../src/config/load';
import {
  leaderSuccessor,
  memberAction,
  parseEndpointStatus,
  parseMemberList,
  quorum,
  recordMismatchProblems,
  replacementOrder,
  specChangeProblems,
  unitsNotMoved,
  unitsToMove,
  type DrainView,
  type EtcdMember,
} from '../../src/provision/replace-plan';
import { makeSpec, nodes } from '../helpers/spec';

const member = (i: number, over: Partial<EtcdMember> = {}): EtcdMember => ({
  id: `${i}a${i}b`,
  started: true,
  name: `node${i}`,
  peerUrls: [`https://10.99.0.1${i}:2380`],
  clientUrls: [`https://10.99.0.1${i}:2379`],
  learner: false,
  ...over,
});
const peer = (i: number): string => `https://10.99.0.1${i}:2380`;
const ids = (ms: EtcdMember[]): Set<string> => new Set(ms.map((m) => m.id));

describe('replacementOrder', () => {
  it('puts workers first, then followers in the order asked, the leader last', () => {
    const t = [
      { name: 'node1', etcdMember: true },
      { name: 'node4', etcdMember: false },
      { name: 'node2', etcdMember: true },
      { name: 'node3', etcdMember: true },
    ];
    assert.deepEqual(replacementOrder(t, 'node1'), ['node4', 'node2', 'node3', 'node1']);
    assert.deepEqual(replacementOrder(t, 'node3'), ['node4', 'node1', 'node2', 'node3']);
  });

  it('keeps the order asked when the leader is not among the nodes or unknown', () => {
    const t = [
      { name: 'node3', etcdMember: true },
      { name: 'node2', etcdMember: true },
    ];
    assert.deepEqual(replacementOrder(t, 'node1'), ['node3', 'node2']);
    assert.deepEqual(replacementOrder(t, undefined), ['node3', 'node2']);
  });
});

describe('memberAction: quorum', () => {
  it('quorum is a strict majority', () => {
    assert.deepEqual([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3]);
  });

  it('allows replacing any member of a healthy 3-member cluster: remove, then add', () => {
    const ms = [member(1), member(2), member(3)];
    for (const i of [1, 2, 3]) {
      const d = memberAction({ node: `node${i}`, peerUrl: peer(i), members: ms, healthyIds: ids(ms) });
      assert.ok('action' in d, JSON.stringify(d));
      assert.equal(d.action.kind, 'remove-then-add');
      assert.equal(d.action.kind === 'remove-then-add' && d.action.member.id, ms[i - 1]!.id);
    }
  });

  it('refuses a one-member cluster', () => {
    const ms = [member(1)];
    const d = memberAction({ node: 'node1', peerUrl: peer(1), members: ms, healthyIds: ids(ms) });
    assert.ok('refused' in d);
    assert.match(d.refused, /only etcd member/);
  });

  it('refuses a two-member cluster: the one left cannot make quorum while the new member boots', () => {
    const ms = [member(1), member(2)];
    const d = memberAction({ node: 'node2', peerUrl: peer(2), members: ms, healthyIds: ids(ms) });
    assert.ok('refused' in d);
    assert.match(d.refused, /would lose etcd quorum: with node2 out, 1 healthy member cannot make the quorum of 2/);
  });

  it('refuses when another member is already unhealthy, naming it', () => {
    const ms = [member(1), member(2), member(3)];
    const d = memberAction({ node: 'node1', peerUrl: peer(1), members: ms, healthyIds: new Set([ms[0]!.id, ms[1]!.id]) });
    assert.ok('refused' in d);
    assert.match(d.refused, /only 1 of the other 2 members are healthy; not healthy: node3/);
  });

  it('allows replacing the one sick member of a 3-member cluster (the others keep quorum)', () => {
    const ms = [member(1), member(2), member(3)];
    const d = memberAction({ node: 'node3', peerUrl: peer(3), members: ms, healthyIds: new Set([ms[0]!.id, ms[1]!.id]) });
    assert.ok('action' in d && d.action.kind === 'remove-then-add');
  });

  it('a 5-member cluster tolerates one other sick member, not two', () => {
    const ms = [1, 2, 3, 4, 5].map((i) => member(i));
    const oneSick = new Set(ms.filter((m) => m.name !== 'node5').map((m) => m.id));
    assert.ok('action' in memberAction({ node: 'node1', peerUrl: peer(1), members: ms, healthyIds: oneSick }));
    const twoSick = new Set(ms.filter((m) => m.name !== 'node5' && m.name !== 'node4').map((m) => m.id));
    assert.ok('refused' in memberAction({ node: 'node1', peerUrl: peer(1), members: ms, healthyIds: twoSick }));
  });

  it('resumes: no member with the peer URL means add; an unstarted one means join it', () => {
    const two = [member(1), member(2)];
    const add = memberAction({ node: 'node3', peerUrl: peer(3), members: two, healthyIds: ids(two) });
    assert.ok('action' in add && add.action.kind === 'add');
    const added = [...two, member(3, { started: false, name: '', clientUrls: [] })];
    const join = memberAction({ node: 'node3', peerUrl: peer(3), members: added, healthyIds: ids(two) });
    assert.ok('action' in join && join.action.kind === 'join-added');
  });

  it('resuming still needs quorum from the others', () => {
    const two = [member(1), member(2)];
    const d = memberAction({ node: 'node3', peerUrl: peer(3), members: two, healthyIds: new Set([two[0]!.id]) });
    assert.ok('refused' in d);
    assert.match(d.refused, /not healthy: node2/);
  });

  it('refuses learners, duplicate peer URLs and a peer URL owned by another name', () => {
    const base = [member(1), member(2)];
    const learner = [...base, member(3, { learner: true })];
    assert.match((memberAction({ node: 'node3', peerUrl: peer(3), members: learner, healthyIds: ids(learner) }) as { refused: string }).refused, /learner/);
    const dup = [...base, member(3), member(4, { peerUrls: [peer(3)] })];
    assert.match((memberAction({ node: 'node3', peerUrl: peer(3), members: dup, healthyIds: ids(dup) }) as { refused: string }).refused, /2 etcd members have/);
    const other = [...base, member(3, { name: 'intruder' })];
    assert.match((memberAction({ node: 'node3', peerUrl: peer(3), members: other, healthyIds: ids(other) }) as { refused: string }).refused, /belongs to member intruder/);
  });

  it('learners do not count towards quorum', () => {
    const ms = [member(1), member(2), member(4, { learner: true, peerUrls: ['https://10.99.0.99:2380'] })];
    const d = memberAction({ node: 'node2', peerUrl: peer(2), members: ms, healthyIds: ids(ms) });
    assert.ok('refused' in d, 'two voters: replacing one loses quorum whatever the learner does');
  });
});

describe('leaderSuccessor', () => {
  it('picks the healthy follower with the highest raft index, by name on a tie', () => {
    const ms = [member(1), member(2), member(3)];
    const st = (i: number, raftIndex: number) => ({ endpoint: ms[i - 1]!.clientUrls[0]!, id: ms[i - 1]!.id, version: '3.4.23', isLeader: i === 1, learner: false, raftTerm: 2, raftIndex });
    assert.equal(leaderSuccessor([st(1, 10), st(2, 8), st(3, 9)], ms, ms[0]!.id, ids(ms))?.name, 'node3');
    assert.equal(leaderSuccessor([st(1, 10), st(2, 9), st(3, 9)], ms, ms[0]!.id, ids(ms))?.name, 'node2');
    assert.equal(leaderSuccessor([st(1, 10), st(2, 9), st(3, 9)], ms, ms[0]!.id, new Set([ms[0]!.id, ms[2]!.id]))?.name, 'node3', 'never a sick member');
    assert.equal(leaderSuccessor([], [ms[0]!], ms[0]!.id, ids(ms)), undefined);
  });
});

describe('drain', () => {
  const view: DrainView = {
    schedule: [
      { unit: 'a.service', machineId: 'm1' },
      { unit: 'b.service', machineId: 'm1' },
      { unit: 'g.service', machineId: 'm1' },
      { unit: 'p.service', machineId: 'm1' },
      { unit: 'c.service', machineId: 'm2' },
      { unit: 'g.service', machineId: 'm2' },
    ],
    states: [
      { unit: 'a.service', machineId: 'm1', active: 'active' },
      { unit: 'c.service', machineId: 'm2', active: 'active' },
    ],
    launched: new Map([
      ['a.service', { global: false }],
      ['b.service', { global: false }],
      ['c.service', { global: false }],
      ['g.service', { global: true }],
      ['p.service', { global: false, machineId: 'm1' }],
    ]),
  };

  it('waits for the launched units on the machine, not Global ones or ones pinned to it', () => {
    assert.deepEqual(unitsToMove(view, 'm1'), ['a.service', 'b.service']);
    assert.deepEqual(unitsToMove(view, 'm2'), ['c.service']);
    assert.deepEqual(unitsToMove(view, 'm3'), []);
  });

  it('a unit has moved once it is scheduled and active on another machine', () => {
    assert.deepEqual(unitsNotMoved(view, ['a.service', 'b.service'], 'm1'), ['a.service', 'b.service']);
    const moved: DrainView = {
      ...view,
      schedule: [...view.schedule.filter((a) => a.machineId !== 'm1'), { unit: 'a.service', machineId: 'm2' }, { unit: 'b.service', machineId: 'm3' }],
      states: [...view.states, { unit: 'a.service', machineId: 'm2', active: 'active' }, { unit: 'b.service', machineId: 'm3', active: 'activating' }],
    };
    assert.deepEqual(unitsNotMoved(moved, ['a.service', 'b.service'], 'm1'), ['b.service'], 'activating is not yet running');
  });
});

describe('parsers (etcdctl 3.4 simple output)', () => {
  it('reads member list lines, unstarted members and several URLs', () => {
    const text = [
      '2e1259d415f2a040, started, a, http://127.0.0.1:23800, http://127.0.0.1:23790, false',
      'e07787a84b1a9389, unstarted, , http://127.0.0.1:23801, , false',
      '8e9e05c52164694d, started, c, http://127.0.0.1:23802,http://10.0.0.3:2380, http://127.0.0.1:23792, true',
      '',
    ].join('\n');
    const ms = parseMemberList(text);
    assert.deepEqual(ms[1], { id: 'e07787a84b1a9389', started: false, name: '', peerUrls: ['http://127.0.0.1:23801'], clientUrls: [], learner: false });
    assert.deepEqual(ms[2]!.peerUrls, ['http://127.0.0.1:23802', 'http://10.0.0.3:2380']);
    assert.equal(ms[2]!.learner, true);
  });

  it('refuses lines of another shape instead of guessing', () => {
    assert.throws(() => parseMemberList('+----+\n| ID | STATUS |\n'), /unexpected 'etcdctl member list' line/);
    assert.throws(() => parseMemberList('{"members":[]}'), /unexpected/);
    assert.throws(() => parseEndpointStatus('Error: context deadline exceeded'), /unexpected 'etcdctl endpoint status' line/);
  });

  it('reads endpoint status with its trailing empty errors field', () => {
    const s = parseEndpointStatus('http://127.0.0.1:23790, 2e1259d415f2a040, 3.4.23, 20 kB, true, false, 2, 4, 4, \n');
    assert.deepEqual(s, [{ endpoint: 'http://127.0.0.1:23790', id: '2e1259d415f2a040', version: '3.4.23', isLeader: true, learner: false, raftTerm: 2, raftIndex: 4 }]);
  });
});

describe('spec checks', () => {
  const addr = (i: number) => ({ address: `10.99.0.${11 + i}` });
  const spec = loadSpecObject(makeSpec({ name: 'rc', nodes: nodes(3, addr) }));

  it('accepts a spec that changes per-node settings only', () => {
    const next = loadSpecObject(makeSpec({ name: 'rc', nodes: nodes(3, (i) => ({ ...addr(i), metadata: { disk: i === 0 ? 'ssd' : 'hdd' }, memoryMiB: 1536 })) }));
    assert.deepEqual(specChangeProblems(spec, next), []);
    assert.deepEqual(recordMismatchProblems(spec.nodes, next), []);
  });

  it('names every field that replace cannot change', () => {
    const next = loadSpecObject(makeSpec({ name: 'rc', nodes: nodes(3, (i) => (i === 1 ? { address: '10.99.0.200' } : addr(i))), etcd: { tls: false, peerPort: 2390 }, format: 'ignition' }));
    const paths = specChangeProblems(spec, next).map((p) => p.path);
    assert.deepEqual(paths.sort(), ['etcd.peerPort', 'etcd.tls', 'format', 'nodes[1].address'].sort());
    const fewer = loadSpecObject(makeSpec({ name: 'rc', nodes: nodes(2, addr) }));
    assert.match(specChangeProblems(spec, fewer).find((p) => p.path === 'nodes')!.message, /replace keeps the nodes/);
    assert.deepEqual(recordMismatchProblems(spec.nodes, next).map((p) => p.path), ['nodes[1].address']);
  });
});
