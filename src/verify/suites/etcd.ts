/**
 * The `etcd` suite.
 *
 * On the nodes (etcdctl over each member's SSH connection, with the node's PKI files from
 * src/config/node-files.ts): every member healthy; exactly one leader that every member
 * agrees on; a key written through one member is read back from every other member with
 * serializable (member-local) reads; a client without a certificate is refused.
 *
 * From the host (directly, or tunnelled through a member's SSH connection): the member
 * list equals the inventory's members, and a TLS client without a certificate is refused.
 */
import type { Etcd3 } from 'etcd3';
import type { VerifyCluster } from '../cluster';
import { timeScale, type InventoryNode } from '../../cluster/inventory';
import { shq } from '../../ssh';
import { etcdctlCommand } from '../../cluster/etcdctl';
import { CheckFailed, CheckSkipped, expect, type Check, type CheckContext } from '../types';

/** etcdctl on `node`, against that member's own endpoint; `clientCert: false` leaves cert and key out. */
export function nodeEtcdctl(cluster: VerifyCluster, node: InventoryNode, args: string, opts: { clientCert?: boolean } = {}): string {
  const e = cluster.inventory.etcd;
  const scale = timeScale(cluster.inventory);
  return etcdctlCommand(args, {
    endpoints: [node.etcdEndpoint],
    dialTimeoutS: 3 * scale,
    commandTimeoutS: 5 * scale,
    program: e.etcdctl,
    ...(e.nodeTls ? { tls: e.nodeTls } : {}),
    ...(opts.clientCert === false ? { clientCert: false } : {}),
  });
}

async function etcdctl(cluster: VerifyCluster, node: InventoryNode, ctx: CheckContext, args: string, opts: { clientCert?: boolean } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await cluster.conn(node).exec(nodeEtcdctl(cluster, node, args, opts), { sudo: true, signal: ctx.signal, timeoutMs: Math.max(1, ctx.deadline - Date.now()) });
  if (r.code === 127 || /etcdctl: (command )?not found/.test(r.stderr)) throw new CheckFailed(`etcdctl not found on ${node.name} (${cluster.inventory.etcd.etcdctl}); install etcd-client or set etcd.etcdctl`);
  return r;
}

interface EndpointStatus {
  Endpoint: string;
  Status: { header: { member_id: number | string; cluster_id?: number | string }; leader: number | string; raftTerm?: number };
}

async function memberStatus(cluster: VerifyCluster, node: InventoryNode, ctx: CheckContext): Promise<EndpointStatus> {
  const r = await etcdctl(cluster, node, ctx, 'endpoint status -w json');
  if (r.code !== 0) throw new CheckFailed(`${node.name}: etcdctl endpoint status failed: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  try {
    // 64-bit member IDs do not survive JSON.parse as numbers: keep them as the digits printed.
    const arr = JSON.parse(r.stdout.replace(/("(?:member_id|leader|cluster_id)":)(\d+)/g, '$1"$2"')) as EndpointStatus[];
    if (!arr[0]?.Status) throw new Error('no status');
    return arr[0];
  } catch {
    throw new CheckFailed(`${node.name}: etcdctl endpoint status printed no JSON status: ${r.stdout.slice(0, 200)}`);
  }
}

const id = (v: number | string): string => String(v);

export function etcdSuite(cluster: VerifyCluster, opts: { runId: string }): Check[] {
  const inv = cluster.inventory;
  const members = inv.nodes.filter((n) => n.etcdMember);
  const suite = 'etcd';
  if (members.length === 0) return [{ suite, id: 'etcd.members', name: 'etcd members', run: async () => { throw new CheckSkipped('no etcd members in the inventory'); } }];
  const checks: Check[] = [];
  for (const m of members) {
    checks.push({
      suite,
      node: m.name,
      id: 'etcd.health',
      name: 'member healthy',
      retry: true,
      run: async (ctx) => {
        const r = await etcdctl(cluster, m, ctx, 'endpoint health -w json');
        let health: Array<{ health: boolean; error?: string; took?: string }> = [];
        try {
          health = JSON.parse(r.stdout) as typeof health;
        } catch {
          /* reported below */
        }
        const h = health[0];
        expect(r.code === 0 && h?.health === true, `member ${m.name} (${m.etcdEndpoint}) unhealthy: ${h?.error ?? ((r.stderr || r.stdout).trim().slice(0, 300) || `exit ${r.code}`)}`);
        return `healthy (took ${h.took ?? '?'})`;
      },
    });
    checks.push({
      suite,
      node: m.name,
      id: 'etcd.tls-enforced',
      name: 'a client without a certificate is refused',
      retry: true,
      run: async (ctx) => {
        if (!inv.etcd.tls) throw new CheckSkipped('the inventory has no etcd TLS (plain HTTP cluster)');
        // The control first: with the certificate the same call works, so the refusal below is
        // about the missing certificate, not a wrong CA, address or a dead member.
        const withCert = await etcdctl(cluster, m, ctx, `get --prefix --keys-only --limit=1 ${shq(inv.keyPrefix)}`);
        expect(withCert.code === 0, `the control call with the client certificate failed too, so a refusal would prove nothing: ${(withCert.stderr || withCert.stdout).trim().split('\n').pop()?.slice(0, 200) ?? `exit ${withCert.code}`}`);
        const r = await etcdctl(cluster, m, ctx, `get --prefix --keys-only --limit=1 ${shq(inv.keyPrefix)}`, { clientCert: false });
        expect(r.code !== 0, `etcdctl without a client certificate succeeded against ${m.etcdEndpoint}: client-certificate auth is off`);
        const why = (r.stderr.trim().split('\n').pop() ?? '').slice(0, 200);
        return `refused: ${why}`;
      },
    });
  }
  checks.push({
    suite,
    id: 'etcd.leader',
    name: 'exactly one leader, agreed by every member',
    retry: true,
    run: async (ctx) => {
      const st = await Promise.all(members.map(async (m) => ({ m, s: await memberStatus(cluster, m, ctx) })));
      const leaders = new Set(st.map(({ s }) => id(s.Status.leader)));
      const self = st.filter(({ s }) => id(s.Status.leader) === id(s.Status.header.member_id)).map(({ m }) => m.name);
      expect(!leaders.has('0'), `no leader: ${st.filter(({ s }) => id(s.Status.leader) === '0').map(({ m }) => m.name).join(', ')} report none`);
      expect(leaders.size === 1, `members disagree on the leader: ${st.map(({ m, s }) => `${m.name} → ${id(s.Status.leader)}`).join(', ')}`);
      expect(self.length === 1, self.length === 0 ? `the leader ${[...leaders][0]} is not among the inventory's members` : `several members claim leadership: ${self.join(', ')}`);
      return `leader ${self[0]} (raft term ${st[0]!.s.Status.raftTerm ?? '?'})`;
    },
  });
  checks.push({
    suite,
    id: 'etcd.replication',
    name: 'a write on one member is readable on every other member',
    retry: true,
    timeoutMs: 30_000,
    run: async (ctx) => {
      const key = `/flotilla-verify/${inv.name}/${opts.runId}/replication`;
      const value = `written-on-${members[0]!.name}-attempt-${ctx.attempt}`;
      const [writer, ...readers] = members;
      const w = await etcdctl(cluster, writer!, ctx, `put ${shq(key)} ${shq(value)}`);
      expect(w.code === 0, `put on ${writer!.name} failed: ${(w.stderr || w.stdout).trim().slice(0, 300)}`);
      try {
        const missing: string[] = [];
        for (const r of readers.length ? readers : [writer!]) {
          // Serializable: answered by that member from its own copy, so this proves replication.
          const g = await etcdctl(cluster, r, ctx, `get ${shq(key)} --consistency=s --print-value-only`);
          if (g.code !== 0 || g.stdout.trim() !== value) missing.push(`${r.name}: ${g.code !== 0 ? (g.stderr.trim() || `exit ${g.code}`).slice(0, 200) : JSON.stringify(g.stdout.trim())}`);
        }
        expect(missing.length === 0, `written on ${writer!.name}, not (yet) read back on: ${missing.join('; ')}`);
        return `written on ${writer!.name}, read on ${readers.map((r) => r.name).join(', ') || writer!.name}`;
      } finally {
        await etcdctl(cluster, writer!, ctx, `del --prefix ${shq(`/flotilla-verify/${inv.name}/${opts.runId}/`)}`).catch(() => undefined);
      }
    },
  });
  checks.push({
    suite,
    id: 'etcd.members',
    name: 'member list equals the inventory (from the host)',
    retry: true,
    run: async () => {
      const etcd = await cluster.etcd();
      const res = await etcd.cluster.memberList({});
      const got = res.members.map((m) => m.name || `(unstarted ${m.peerURLs.join(',')})`).sort();
      const want = members.map((m) => m.name).sort();
      const extra = got.filter((g) => !want.includes(g));
      const missing = want.filter((w) => !got.includes(w));
      expect(extra.length === 0 && missing.length === 0, `member list ${JSON.stringify(got)} differs from the inventory's ${JSON.stringify(want)}${missing.length ? `; missing ${missing.join(', ')}` : ''}${extra.length ? `; unexpected ${extra.join(', ')}` : ''}`);
      return `members ${got.join(', ')}`;
    },
  });
  checks.push({
    suite,
    id: 'etcd.tls-host',
    name: 'TLS enforced from the host (no client certificate: refused)',
    run: async () => {
      if (!inv.etcd.tls) throw new CheckSkipped('the inventory has no etcd TLS (plain HTTP cluster)');
      const endpoints = await cluster.hostEtcdEndpoints();
      let bare: Etcd3 | undefined;
      try {
        bare = await cluster.etcdFor({ endpoints: [endpoints[0]!], clientCert: false });
        await bare.getAll().prefix(inv.keyPrefix).count();
      } catch (err) {
        return `refused without a client certificate: ${(err as Error).message.split('\n')[0]!.slice(0, 200)}`;
      } finally {
        bare?.close();
      }
      throw new CheckFailed(`a client without a certificate read from ${endpoints[0]}: client-certificate auth is off`);
    },
  });
  return checks;
}
