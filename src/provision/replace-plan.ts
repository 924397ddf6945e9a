/**
 * Pure decisions of `flotilla replace` (src/provision/replace.ts): which order keeps etcd's
 * quorum, whether a member may go now, what etcdctl printed, which units a drain must see
 * moved, and whether a new spec can replace nodes of a running cluster. No I/O here.
 *
 * A replaced node keeps its name and address, so its member must be removed before the new one
 * is added (etcd refuses two members with one peer URL). Between the two the cluster has one
 * voting member fewer, and while the new node boots one member of the full count is not
 * started: both states must keep a quorum with the members that are healthy now.
 */
import type { Problem } from '../errors';
import type { ResolvedSpec } from '../config/spec';

/** One line of `etcdctl member list -w simple` (3.4: ID, status, name, peer URLs, client URLs, is learner). */
export interface EtcdMember {
  /** Hex, as etcdctl prints and takes it (JSON output loses uint64 precision in JavaScript). */
  id: string;
  /** False for a member added but not yet started (etcd prints an empty name for it). */
  started: boolean;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  learner: boolean;
}

/** One line of `etcdctl endpoint status -w simple`. */
export interface EndpointStatus {
  endpoint: string;
  id: string;
  version: string;
  isLeader: boolean;
  learner: boolean;
  raftTerm: number;
  raftIndex: number;
}

/** etcdctl's simple output joins fields with ", " and the URLs inside one field with "," alone. */
function simpleLines(text: string): string[][] {
  return text
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.trim() !== '')
    .map((l) => l.split(', '));
}

function urls(field: string): string[] {
  return field.trim() === '' ? [] : field.trim().split(',');
}

/** Parses `etcdctl member list -w simple`; a line of any other shape is refused, not guessed at. */
export function parseMemberList(text: string): EtcdMember[] {
  return simpleLines(text).map((f) => {
    if (f.length !== 6 || !/^[0-9a-f]{1,16}$/.test(f[0]!) || (f[1] !== 'started' && f[1] !== 'unstarted') || (f[5]!.trim() !== 'true' && f[5]!.trim() !== 'false')) {
      throw new Error(`unexpected 'etcdctl member list' line: ${JSON.stringify(f.join(', '))}`);
    }
    return { id: f[0]!, started: f[1] === 'started', name: f[2]!, peerUrls: urls(f[3]!), clientUrls: urls(f[4]!), learner: f[5]!.trim() === 'true' };
  });
}

/** Parses `etcdctl endpoint status -w simple` (3.4: endpoint, ID, version, DB size, is leader, is learner, raft term, raft index, applied index, errors). */
export function parseEndpointStatus(text: string): EndpointStatus[] {
  return simpleLines(text).map((f) => {
    if (f.length < 9 || !/^[0-9a-f]{1,16}$/.test(f[1]!) || (f[4] !== 'true' && f[4] !== 'false') || !/^\d+$/.test(f[7] ?? '')) {
      throw new Error(`unexpected 'etcdctl endpoint status' line: ${JSON.stringify(f.join(', '))}`);
    }
    return { endpoint: f[0]!, id: f[1]!, version: f[2]!, isLeader: f[4] === 'true', learner: f[5] === 'true', raftTerm: Number(f[6]), raftIndex: Number(f[7]) };
  });
}

/** Votes a cluster of `voters` members needs to make progress. */
export function quorum(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

export interface ReplaceTarget {
  name: string;
  etcdMember: boolean;
}

/**
 * The order nodes are replaced in: nodes without an etcd member first (they cannot cost a
 * vote), then members that follow, the leader last — so leadership moves at most once and the
 * cluster keeps its leader while its followers are replaced. Otherwise the order asked for.
 */
export function replacementOrder(targets: readonly ReplaceTarget[], leader: string | undefined): string[] {
  const rank = (t: ReplaceTarget): number => (!t.etcdMember ? 0 : t.name === leader ? 2 : 1);
  return targets
    .map((t, i) => ({ t, i }))
    .sort((a, b) => rank(a.t) - rank(b.t) || a.i - b.i)
    .map((x) => x.t.name);
}

export type MemberAction =
  /** The node's member is in the cluster: remove it, then add the new one. */
  | { kind: 'remove-then-add'; member: EtcdMember }
  /** No member with the node's peer URL (an earlier run removed it): add it. */
  | { kind: 'add' }
  /** An added member that never started (an earlier run added it): boot the node into it. */
  | { kind: 'join-added'; member: EtcdMember };

export interface QuorumInput {
  node: string;
  peerUrl: string;
  members: readonly EtcdMember[];
  /** IDs of the members whose endpoint answered healthy just now. */
  healthyIds: ReadonlySet<string>;
}

/**
 * Whether the node's member may be replaced now, and how; `refused` says why not in words an
 * operator can act on. Learners neither vote nor count. The check is for the two risky states:
 * the member removed (one voter fewer) and the new member added but still booting.
 */
export function memberAction(input: QuorumInput): { action: MemberAction } | { refused: string } {
  const voters = input.members.filter((m) => !m.learner);
  const own = input.members.filter((m) => m.peerUrls.includes(input.peerUrl));
  if (own.length > 1) return { refused: `${own.length} etcd members have ${input.node}'s peer URL ${input.peerUrl} (${own.map((m) => m.id).join(', ')}); remove the extra ones with 'etcdctl member remove' first` };
  const mine = own[0];
  if (mine?.learner) return { refused: `${input.node}'s member ${mine.id} is a learner; Flotilla never adds learners: remove it with 'etcdctl member remove ${mine.id}' and run replace again` };
  if (mine && mine.started && mine.name !== input.node) return { refused: `peer URL ${input.peerUrl} belongs to member ${mine.name} (${mine.id}), not ${input.node}` };
  const others = voters.filter((m) => m !== mine);
  const healthyOthers = others.filter((m) => m.started && input.healthyIds.has(m.id));
  const sick = others.filter((m) => !healthyOthers.includes(m));
  const sickText = sick.length ? `; not healthy: ${sick.map((m) => m.name || `${m.id} (unstarted)`).join(', ')}` : '';
  if (others.length === 0) {
    return { refused: `${input.node} is the cluster's only etcd member: removing it loses every key; a one-member cluster cannot be replaced in place (make a new cluster)` };
  }
  // While the new member boots, the membership is the others plus it, and it does not vote yet.
  const full = others.length + 1;
  if (healthyOthers.length < quorum(full)) {
    const what = sick.length
      ? `only ${healthyOthers.length} of the other ${others.length} members are healthy${sickText}; fix them first`
      : `with ${input.node} out, ${healthyOthers.length} healthy member${healthyOthers.length === 1 ? '' : 's'} cannot make the quorum of ${quorum(full)} that ${full} members need while its replacement boots; grow the cluster to 3 members first`;
    return { refused: `replacing ${input.node} would lose etcd quorum: ${what}` };
  }
  if (!mine) return { action: { kind: 'add' } };
  if (!mine.started) return { action: { kind: 'join-added', member: mine } };
  return { action: { kind: 'remove-then-add', member: mine } };
}

/** The healthy member to hand leadership to before the leader goes: the most caught-up follower, first by name on a tie. */
export function leaderSuccessor(statuses: readonly EndpointStatus[], members: readonly EtcdMember[], leavingId: string, healthyIds: ReadonlySet<string>): EtcdMember | undefined {
  const candidates = members.filter((m) => m.id !== leavingId && m.started && !m.learner && healthyIds.has(m.id));
  const index = (m: EtcdMember): number => statuses.find((s) => s.id === m.id)?.raftIndex ?? -1;
  return [...candidates].sort((a, b) => index(b) - index(a) || (a.name < b.name ? -1 : 1))[0];
}

/**
 * The membership a replacement member starts with (ETCD_INITIAL_CLUSTER), from the member list
 * after `member add`: etcd requires every member with its peer URL, and an added member has no
 * name until it starts, so the one with the node's peer URL is named here.
 */
export function joinMembership(members: readonly EtcdMember[], node: string, peerUrl: string): Array<{ name: string; peerUrl: string }> {
  const nameless = members.filter((m) => !m.peerUrls.includes(peerUrl) && m.name === '');
  if (nameless.length) throw new Error(`members ${nameless.map((m) => m.id).join(', ')} were added but never started; remove them ('etcdctl member remove ID') before replacing ${node}`);
  if (!members.some((m) => m.peerUrls.includes(peerUrl))) throw new Error(`no member has ${node}'s peer URL ${peerUrl}; it was not added`);
  return members.map((m) => ({ name: m.peerUrls.includes(peerUrl) ? node : m.name, peerUrl: m.peerUrls.includes(peerUrl) ? peerUrl : m.peerUrls[0]! }));
}

/** What a drain looks at: the registry's schedule and states, and each launched unit's placement options. */
export interface DrainView {
  schedule: ReadonlyArray<{ unit: string; machineId: string }>;
  states: ReadonlyArray<{ unit: string; machineId: string; active: string }>;
  /** Launched units with what pins them: Global units run everywhere, MachineID units only on one machine. */
  launched: ReadonlyMap<string, { global: boolean; machineId?: string }>;
}

/** The launched units running on `machineId` that must run elsewhere once its agent stops (not Global, not pinned to it). */
export function unitsToMove(view: DrainView, machineId: string): string[] {
  return view.schedule
    .filter((a) => a.machineId === machineId)
    .map((a) => a.unit)
    .filter((u) => {
      const o = view.launched.get(u);
      return o !== undefined && !o.global && o.machineId === undefined;
    })
    .sort();
}

/** Of `units`, those not yet active on a machine other than `machineId` (and scheduled there). */
export function unitsNotMoved(view: DrainView, units: readonly string[], machineId: string): string[] {
  return units.filter((u) => !view.schedule.some((a) => a.unit === u && a.machineId !== machineId && view.states.some((s) => s.unit === u && s.machineId === a.machineId && s.active === 'active')));
}

/**
 * Why a spec cannot replace nodes of the running cluster `current` was made from: replacing
 * keeps every node's name, address and etcd role, and the cluster-wide settings that all nodes
 * must share (ports, TLS, network, key prefix, format). Everything else may change per node.
 */
export function specChangeProblems(current: ResolvedSpec, next: ResolvedSpec): Problem[] {
  const problems: Problem[] = [];
  const same = (path: string, a: unknown, b: unknown, why: string): void => {
    if (JSON.stringify(a) !== JSON.stringify(b)) problems.push({ path, message: `is ${JSON.stringify(b)}, the running cluster has ${JSON.stringify(a)}; ${why}` });
  };
  same('name', current.name, next.name, 'replace works on one cluster');
  same('format', current.format, next.format, 'every node of a cluster boots from the same format');
  same('network.cidr', current.network.cidr, next.network.cidr, 'nodes keep their addresses');
  same('etcd.clientPort', current.etcd.clientPort, next.etcd.clientPort, 'the other members and agents use it');
  same('etcd.peerPort', current.etcd.peerPort, next.etcd.peerPort, 'the other members use it');
  same('etcd.tls', current.etcd.tls, next.etcd.tls, 'members talk to each other with it');
  same('agent.keyPrefix', current.agent.keyPrefix, next.agent.keyPrefix, "the other agents' registry lives there");
  const names = (s: ResolvedSpec): string[] => s.nodes.map((n) => n.name);
  if (JSON.stringify(names(current)) !== JSON.stringify(names(next))) {
    problems.push({ path: 'nodes', message: `are ${names(next).join(', ')}, the running cluster has ${names(current).join(', ')}; replace keeps the nodes (add or remove nodes with a new cluster)` });
  }
  next.nodes.forEach((n, i) => {
    const c = current.nodes.find((x) => x.name === n.name);
    if (!c) return;
    same(`nodes[${i}].address`, c.address, n.address, 'a replaced node keeps its address');
    same(`nodes[${i}].etcdMember`, c.etcdMember, n.etcdMember, 'replace keeps the etcd membership');
  });
  return problems;
}

/** Why `spec` does not describe the running cluster's nodes (from its record): names, addresses, etcd roles. */
export function recordMismatchProblems(nodes: ReadonlyArray<{ name: string; address: string; etcdMember: boolean }>, spec: ResolvedSpec): Problem[] {
  const problems: Problem[] = [];
  const names = spec.nodes.map((n) => n.name);
  if (JSON.stringify(names) !== JSON.stringify(nodes.map((n) => n.name))) {
    problems.push({ path: 'nodes', message: `are ${names.join(', ')}; the running cluster has ${nodes.map((n) => n.name).join(', ')}` });
  }
  spec.nodes.forEach((n, i) => {
    const r = nodes.find((x) => x.name === n.name);
    if (!r) return;
    if (r.address !== n.address) problems.push({ path: `nodes[${i}].address`, message: `is ${n.address}; ${n.name} runs at ${r.address}` });
    if (r.etcdMember !== n.etcdMember) problems.push({ path: `nodes[${i}].etcdMember`, message: `${n.name} ${r.etcdMember ? 'runs' : 'does not run'} an etcd member; replace keeps that` });
  });
  return problems;
}
