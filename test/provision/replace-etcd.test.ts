/**
 * The etcd half of `flotilla replace` against real etcd 3.4 members on 127.0.0.1 (no VMs): the
 * parsers read real `etcdctl -w simple` output; memberAction allows each member of a healthy
 * 3-member cluster and refuses once another member is down; the leader's member is replaced
 * the way replace.ts does it — move-leader to leaderSuccessor, member remove, member add,
 * a fresh member with joinMembership's ETCD_INITIAL_CLUSTER and state `existing` on the same
 * peer URL — and the cluster ends with 3 healthy members, a new ID, and the key written
 * before (read from the new member's own copy). A 2-member cluster is refused: etcd itself would
 * accept the remove and the add, and then lose its quorum until the replacement boots.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { ETCD_BIN, etcdctl, startEtcdCluster, type EtcdCluster } from '../fixtures/etcd';
import { ManagedProcess, makeTempDir, removeTempDir, sleep } from '../fixtures/proc';
import { joinMembership, leaderSuccessor, memberAction, parseEndpointStatus, parseMemberList } from '../../src/provision/replace-plan';

async function view(cl: { endpoints: readonly string[] }) {
  const members = parseMemberList(await etcdctl(cl, ['member', 'list', '-w', 'simple']));
  const eps = members.filter((m) => m.started).map((m) => m.clientUrls[0]!);
  const statuses = parseEndpointStatus(await etcdctl({ endpoints: eps }, ['endpoint', 'status', '-w', 'simple']).catch(() => ''));
  let health: Array<{ endpoint: string; health: boolean }> = [];
  try {
    health = JSON.parse(await etcdctl({ endpoints: eps }, ['endpoint', 'health', '-w', 'json']));
  } catch (err) {
    // etcdctl exits 1 when an endpoint is unhealthy but still prints the JSON.
    const out = String((err as { stdout?: string }).stdout ?? (err as Error).message);
    const m = /\[.*\]/.exec(out);
    health = m ? JSON.parse(m[0]) : [];
  }
  const healthyIds = new Set(members.filter((m) => health.some((h) => h.health && m.clientUrls.includes(h.endpoint))).map((m) => m.id));
  return { members, statuses, healthyIds, leaderId: statuses.find((s) => s.isLeader)?.id };
}

/** A membership change, retried while etcd says "unhealthy cluster" (its 5 s connectivity window after a start or change), as replace.ts does. */
async function membership(endpoints: string[], args: string[]): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await etcdctl({ endpoints }, args);
      return;
    } catch (err) {
      if (!/unhealthy cluster/.test((err as Error).message) || i > 30) throw err;
      await sleep(1000);
    }
  }
}

describe('replace: etcd membership steps against real etcd 3.4', { timeout: 120_000 }, () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('replaces the leader member: move-leader, remove, add, join as existing; key and quorum kept', async () => {
    const cl: EtcdCluster = await startEtcdCluster(3);
    cleanups.push(() => cl.stop());
    const all = { endpoints: cl.members.map((m) => m.endpoint) };
    await etcdctl(all, ['put', '/replace/sentinel', 'before']);

    const v0 = await view(all);
    assert.equal(v0.members.length, 3);
    assert.equal(v0.healthyIds.size, 3);
    for (const m of v0.members) {
      const d = memberAction({ node: m.name, peerUrl: m.peerUrls[0]!, members: v0.members, healthyIds: v0.healthyIds });
      assert.ok('action' in d && d.action.kind === 'remove-then-add', `${m.name}: ${JSON.stringify(d)}`);
    }
    const leader = v0.members.find((m) => m.id === v0.leaderId)!;
    const leaderProc = cl.members.find((m) => m.name === leader.name)!;
    const others = cl.members.filter((m) => m !== leaderProc).map((m) => m.endpoint);

    // move-leader, addressed to the leader's own endpoint.
    const to = leaderSuccessor(v0.statuses, v0.members, leader.id, v0.healthyIds)!;
    assert.notEqual(to.id, leader.id);
    await etcdctl({ endpoints: [leaderProc.endpoint] }, ['move-leader', to.id]);
    const v1 = await view({ endpoints: others });
    assert.equal(v1.leaderId, to.id, 'leadership moved to the chosen follower');

    // remove (from another member), the old process goes, its data with it.
    await membership(others, ['member', 'remove', leader.id]);
    await leaderProc.stop();
    const v2 = await view({ endpoints: others });
    assert.equal(v2.members.length, 2);

    // add before the new member starts: unstarted, nameless, and memberAction resumes into it.
    await membership(others, ['member', 'add', leader.name, `--peer-urls=${leader.peerUrls[0]}`]);
    const v3 = await view({ endpoints: others });
    const added = v3.members.find((m) => m.peerUrls.includes(leader.peerUrls[0]!))!;
    assert.equal(added.started, false);
    assert.equal(added.name, '');
    const resume = memberAction({ node: leader.name, peerUrl: leader.peerUrls[0]!, members: v3.members, healthyIds: v3.healthyIds });
    assert.ok('action' in resume && resume.action.kind === 'join-added');

    // The new member: a fresh data dir, the same peer and client URLs, joining as existing.
    const join = joinMembership(v3.members, leader.name, leader.peerUrls[0]!);
    const dir = makeTempDir('flotilla-replace-etcd-');
    cleanups.push(async () => removeTempDir(dir));
    const proc = new ManagedProcess(
      ETCD_BIN,
      [
        '--name', leader.name, '--data-dir', path.join(dir, 'data'),
        '--listen-client-urls', leader.clientUrls[0]!, '--advertise-client-urls', leader.clientUrls[0]!,
        '--listen-peer-urls', leader.peerUrls[0]!, '--initial-advertise-peer-urls', leader.peerUrls[0]!,
        '--initial-cluster', join.map((m) => `${m.name}=${m.peerUrl}`).join(','), '--initial-cluster-state', 'existing',
        '--heartbeat-interval', '100', '--election-timeout', '1000',
      ],
      path.join(dir, 'etcd.log'),
      { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    );
    cleanups.push(() => proc.stop());
    let v4 = await view({ endpoints: others });
    for (let i = 0; i < 100 && !(v4.members.every((m) => m.started) && v4.healthyIds.size === 3); i++) {
      await sleep(200);
      v4 = await view({ endpoints: others });
    }
    assert.equal(v4.members.length, 3);
    assert.equal(v4.healthyIds.size, 3, 'three healthy members');
    const fresh = v4.members.find((m) => m.name === leader.name)!;
    assert.notEqual(fresh.id, leader.id, 'a new member ID');
    assert.equal(fresh.id, added.id, 'the added member started');
    const local = await etcdctl({ endpoints: [leader.clientUrls[0]!] }, ['get', '/replace/sentinel', '--print-value-only', '--consistency=s']);
    assert.equal(local.trim(), 'before', "the key, from the new member's own copy");
  });

  it('refuses once another member is down, naming it', async () => {
    const cl = await startEtcdCluster(3);
    cleanups.push(() => cl.stop());
    await cl.members[2]!.stop();
    const v = await view({ endpoints: cl.members.slice(0, 2).map((m) => m.endpoint) });
    const d = memberAction({ node: cl.members[0]!.name, peerUrl: v.members.find((m) => m.name === cl.members[0]!.name)!.peerUrls[0]!, members: v.members, healthyIds: v.healthyIds });
    assert.ok('refused' in d);
    assert.match(d.refused, new RegExp(`not healthy: ${cl.members[2]!.name}`));
  });

  it('refuses a 2-member cluster: after remove and add, etcd has no quorum until the new member runs', async () => {
    const cl = await startEtcdCluster(2);
    cleanups.push(() => cl.stop());
    const all = { endpoints: cl.members.map((m) => m.endpoint) };
    const v = await view(all);
    const target = v.members[1]!;
    const d = memberAction({ node: target.name, peerUrl: target.peerUrls[0]!, members: v.members, healthyIds: v.healthyIds });
    assert.ok('refused' in d && /would lose etcd quorum/.test(d.refused));
    // What the refusal avoids: etcd accepts the add (1 started of 1 is its special case), and then
    // 1 started member of 2 cannot commit anything until the replacement has booted.
    const keep = cl.members.find((m) => m.name !== target.name)!;
    await membership([keep.endpoint], ['member', 'remove', target.id]);
    // If the removed member led, the one left must first win an election (randomised 1-2 election
    // timeouts, longer on a busy host); until then a put times out, so it is retried for a while.
    for (let i = 0; ; i++) {
      try {
        await etcdctl({ endpoints: [keep.endpoint] }, ['put', '/replace/one-member', 'ok']);
        break;
      } catch (err) {
        if (!/deadline exceeded|leader/.test((err as Error).message) || i >= 10) throw err;
        await sleep(1000);
      }
    }
    await membership([keep.endpoint], ['member', 'add', target.name, `--peer-urls=${target.peerUrls[0]}`]);
    await assert.rejects(etcdctl({ endpoints: [keep.endpoint] }, ['put', '/replace/while-booting', 'x']), /deadline exceeded|timed out|context/);
  });
});
