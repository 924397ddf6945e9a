/**
 * What `flotilla replace` asks etcd, over an SSH connection to a member: etcdctl as root with the
 * cluster's client certificate, the live view (membership, health per endpoint, the leader) and
 * membership changes, retried while etcd says its cluster is not healthy long enough yet.
 */
import { FlotillaError } from '../errors';
import { etcdctlCommand, memberEtcdctl } from '../cluster/etcdctl';
import { nodeSshTarget, type ClusterRecord, type NodeRecord } from '../cluster/store';
import { NodeConnection, type ExecResult } from '../ssh';
import { sleep } from '../util/async';
import { nodeRunning } from './up';
import { parseEndpointStatus, parseMemberList, type EtcdMember } from './replace-plan';

/** etcdctl on a node as root, against `endpoints` (default its own member), with the cluster's client certificate. */
export function etcdctl(conn: NodeConnection, record: Pick<ClusterRecord, 'tls' | 'clientPort'>, args: string, opts: { endpoints?: string[]; timeoutMs?: number } = {}): Promise<ExecResult> {
  const command = etcdctlCommand(args, memberEtcdctl(record, { ...(opts.endpoints ? { endpoints: opts.endpoints } : {}), commandTimeoutS: 20, dialTimeoutS: 10 }));
  return conn.exec(command, { sudo: true, timeoutMs: opts.timeoutMs ?? 60_000 });
}

export function clientUrl(record: Pick<ClusterRecord, 'tls' | 'clientPort'>, node: Pick<NodeRecord, 'address'>): string {
  return `${record.tls ? 'https' : 'http'}://${node.address}:${record.clientPort}`;
}

/** The command's stdout; a non-zero exit fails `what` with the last lines it printed. */
export async function must(result: Promise<ExecResult>, what: string): Promise<string> {
  const r = await result;
  if (r.code !== 0) throw new FlotillaError('external', `${what} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  return r.stdout;
}

/** An SSH connection to one of the cluster's nodes (the caller closes it). */
export function connectNode(record: ClusterRecord, node: NodeRecord): NodeConnection {
  return new NodeConnection(nodeSshTarget(record, node), { readyTimeoutMs: 30_000 });
}

/** The live etcd view from one member: membership, which members answer healthy, who leads. */
export interface EtcdView {
  members: EtcdMember[];
  healthyIds: Set<string>;
  leaderId: string | undefined;
  statuses: ReturnType<typeof parseEndpointStatus>;
}

export async function etcdView(record: Pick<ClusterRecord, 'tls' | 'clientPort'>, anchor: NodeConnection): Promise<EtcdView> {
  const members = parseMemberList(await must(etcdctl(anchor, record, 'member list -w simple'), 'etcdctl member list'));
  // Per endpoint, so one dead member does not hide the others' answers (--cluster fails as a whole).
  const eps = members.filter((m) => m.started && m.clientUrls.length > 0).map((m) => m.clientUrls[0]!);
  const statusRun = eps.length ? await etcdctl(anchor, record, 'endpoint status -w simple', { endpoints: eps, timeoutMs: 90_000 }) : undefined;
  let statuses: EtcdView['statuses'] = [];
  try {
    statuses = statusRun ? parseEndpointStatus(statusRun.stdout) : [];
  } catch {
    statuses = [];
  }
  const healthRun = eps.length ? await etcdctl(anchor, record, 'endpoint health -w json', { endpoints: eps, timeoutMs: 90_000 }) : undefined;
  const healthyUrls = new Set<string>();
  try {
    for (const h of JSON.parse(healthRun?.stdout || '[]') as Array<{ endpoint: string; health: boolean }>) if (h.health) healthyUrls.add(h.endpoint);
  } catch {
    /* no JSON: nobody healthy */
  }
  const healthyIds = new Set(members.filter((m) => m.clientUrls.some((u) => healthyUrls.has(u))).map((m) => m.id));
  const leaderId = statuses.find((s) => s.isLeader)?.id;
  return { members, healthyIds, leaderId, statuses };
}

/** An SSH connection to a running etcd member other than `not` (the node being replaced). */
export async function connectAnchor(record: ClusterRecord, not: string): Promise<{ node: NodeRecord; conn: NodeConnection }> {
  const errors: string[] = [];
  for (const n of record.nodes.filter((x) => x.etcdMember && x.name !== not && nodeRunning(x))) {
    const conn = connectNode(record, n);
    try {
      await conn.connect();
      return { node: n, conn };
    } catch (err) {
      await conn.close();
      errors.push(`${n.name}: ${(err as Error).message}`);
    }
  }
  throw new FlotillaError('external', `no other etcd member of ${record.name} answers SSH${errors.length ? `: ${errors.join('; ')}` : ' (none is running)'}`);
}

/**
 * A membership change through etcdctl. etcd refuses one ("unhealthy cluster") until it has been
 * connected to the members it counts on for 5 s (its HealthInterval), which a restart or the
 * previous change may have reset: that refusal is retried for two minutes, anything else fails.
 */
export async function membershipChange(record: ClusterRecord, anchor: NodeConnection, args: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const r = await etcdctl(anchor, record, args, { timeoutMs: 90_000 });
    if (r.code === 0) return;
    const why = (r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? '';
    if (!/unhealthy cluster/.test(why) || Date.now() > deadline) throw new FlotillaError('external', `etcdctl ${args} failed (exit ${r.code}): ${why}`);
    await sleep(2000);
  }
}
