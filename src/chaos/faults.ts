/**
 * Faults as data: each planned fault becomes a `Fault` with a chosen target, what it does
 * (inject / restore), what "its effect has happened" means (pendingDuring) and what "the
 * node is back" means (pendingAfter). They act on a cluster only through `ChaosControl`,
 * so the same faults run against local QEMU clusters (local.ts) or anything else that
 * can run a root command on a node, cut its cluster link and power it off and on.
 */
import type { RegistrySnapshot } from '../units/registry';
import { FAULT_SUMMARY, type FaultKind, type PlannedFault } from './plan';
import { pickBy } from './prng';

export interface ChaosNode {
  name: string;
  machineId: string;
  etcdMember: boolean;
  /** Cluster-network address. */
  address: string;
  /** The metadata its agent announces (the workload's MachineMetadata unit is chosen from it). */
  metadata: Record<string, string>;
}

export interface NodeExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** What faults need from a cluster. */
export interface ChaosControl {
  readonly nodes: readonly ChaosNode[];
  /** Runs a shell command on a node over its management link (not the cluster network). */
  exec(node: string, command: string, timeoutMs?: number): Promise<NodeExecResult>;
  /** Takes the node's cluster NIC down or up, as a pulled cable would. */
  setClusterLink(node: string, up: boolean): Promise<void>;
  /** Cuts the node's power (its VM process is killed). */
  powerOff(node: string): Promise<void>;
  /** Boots the node again from its disk and waits until it answers SSH. */
  powerOn(node: string): Promise<void>;
}

/** The parts of a registry snapshot the invariants and faults read. */
export type ChaosSnapshot = Pick<RegistrySnapshot, 'jobs' | 'machines' | 'schedule' | 'states' | 'leader'>;

/** One look at the cluster. */
export interface Observation {
  /** Date.now() when the snapshot was read. */
  at: number;
  snapshot: ChaosSnapshot;
  /** Ground truth from the nodes that answered: machine ID → unit → systemd ActiveState. */
  running: Map<string, Map<string, string>>;
  /** etcd member health by node name, when it was asked for. */
  etcdHealth?: Map<string, boolean>;
}

export interface Fault {
  kind: FaultKind;
  index: number;
  target: ChaosNode;
  /** One line: what is done to whom. */
  description: string;
  /** True when the target's machine is not expected to serve while the fault holds. */
  targetOutOfService: boolean;
  /** The fault is held at least this long before it is restored (so slow effects show). */
  minHoldMs: number;
  /** True when restoring needs etcd membership checked (the target's member was affected). */
  touchesEtcd: boolean;
  inject(): Promise<void>;
  /** Why the fault has not had its whole effect yet; undefined once it has. */
  pendingDuring(obs: Observation): string | undefined;
  /** Undoes the fault; returns a note when something had to be done by hand. */
  restore(): Promise<string | undefined>;
  /** Why the target is not back yet, beyond the generic checks; undefined once it is. */
  pendingAfter(obs: Observation): string | undefined;
}

export class FaultError extends Error {}

const FLEETD = 'flotilla-fleetd.service';
const ETCD = 'flotilla-etcd.service';

async function mustExec(c: ChaosControl, node: string, command: string, what: string): Promise<string> {
  const r = await c.exec(node, command, 60_000);
  if (r.code !== 0) throw new FaultError(`${what} on ${node}: \`${command}\` exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  return r.stdout;
}

/** Restarts fleetd by hand if systemd gave up on it (start limit); returns a note if it had to. */
async function ensureFleetd(c: ChaosControl, node: string): Promise<string | undefined> {
  const r = await c.exec(node, `systemctl is-active ${FLEETD}`, 30_000);
  if (r.stdout.trim() === 'active' || r.stdout.trim() === 'activating') return undefined;
  await mustExec(c, node, `sudo systemctl reset-failed ${FLEETD}; sudo systemctl start ${FLEETD}`, 'starting fleetd');
  return `fleetd on ${node} was ${r.stdout.trim() || 'not running'} and had to be started by hand`;
}

function machine(obs: Observation, id: string) {
  return obs.snapshot.machines.find((m) => m.id === id);
}

export interface FaultSetup {
  control: ChaosControl;
  /** The cluster as it was just before the fault (steady state). */
  before: Observation;
  ttlSeconds: number;
}

/**
 * Turns a planned fault into a concrete one, or says why it cannot run on this cluster
 * (e.g. an etcd member kill needs three members so that a quorum is left).
 */
export function makeFault(p: PlannedFault, setup: FaultSetup): Fault | { skipped: string } {
  const { control: c, before, ttlSeconds } = setup;
  const nodes = [...c.nodes].sort((a, b) => (a.name < b.name ? -1 : 1));
  const members = nodes.filter((n) => n.etcdMember);
  // A node whose etcd member goes away may be chosen only if a quorum remains.
  const quorumSafe = (n: ChaosNode) => !n.etcdMember || members.length - 1 > members.length / 2;
  const leaderId = before.snapshot.leader?.candidateId;
  const startedBefore = (n: ChaosNode) => machine(before, n.machineId)?.startedAt;
  const reRegistered = (n: ChaosNode) => (obs: Observation) => {
    const m = machine(obs, n.machineId);
    if (!m) return `machine of ${n.name} not registered`;
    if (m.startedAt === startedBefore(n)) return `machine of ${n.name} not registered anew`;
    return undefined;
  };
  const gone = (n: ChaosNode) => (obs: Observation) => (machine(obs, n.machineId) ? `machine of ${n.name} still registered (its lease has not expired)` : undefined);
  const base = (target: ChaosNode, extra: Partial<Fault>) => ({
    kind: p.kind,
    index: p.index,
    target,
    description: `${FAULT_SUMMARY[p.kind]} [${target.name}]`,
    targetOutOfService: false,
    minHoldMs: 0,
    touchesEtcd: false,
    ...extra,
  });

  switch (p.kind) {
    case 'agent-kill':
    case 'leader-kill': {
      let target: ChaosNode | undefined;
      if (p.kind === 'leader-kill') {
        if (!leaderId) return { skipped: 'no engine leader in the registry' };
        target = nodes.find((n) => n.machineId === leaderId);
        if (!target) return { skipped: `the leader ${leaderId.slice(0, 12)} is not a node of this cluster` };
      } else {
        target = pickBy(nodes.filter((n) => n.machineId !== leaderId), p.pick);
        if (!target) return { skipped: 'no node other than the leader' };
      }
      const t = target;
      const oldLeader = before.snapshot.leader?.createRevision;
      return {
        ...base(t, {}),
        inject: async () => void (await mustExec(c, t.name, `sudo systemctl kill -s KILL ${FLEETD}`, 'SIGKILL fleetd')),
        pendingDuring: (obs) => {
          if (p.kind === 'leader-kill') {
            if (!obs.snapshot.leader) return 'no engine leader';
            if (obs.snapshot.leader.createRevision === oldLeader) return 'the killed leader still holds the leader key';
          }
          return reRegistered(t)(obs);
        },
        restore: () => ensureFleetd(c, t.name),
        pendingAfter: reRegistered(t),
      };
    }
    case 'etcd-kill': {
      if (members.length < 3) return { skipped: `${members.length} etcd member${members.length === 1 ? '' : 's'}: killing one would lose the quorum` };
      const t = pickBy(members, p.pick)!;
      return {
        ...base(t, { minHoldMs: 2 * ttlSeconds * 1000, touchesEtcd: true }),
        // The path unit would start it again, and Restart=on-failure would restart it after 1 s:
        // stop the path unit first, SIGKILL the member, then cancel the pending restart.
        inject: async () => {
          await mustExec(c, t.name, `sudo systemctl stop flotilla-etcd.path && sudo systemctl kill -s KILL ${ETCD} && sleep 0.3 && sudo systemctl stop ${ETCD}`, 'SIGKILL etcd');
          const state = (await c.exec(t.name, `systemctl is-active ${ETCD}`, 30_000)).stdout.trim();
          if (state === 'active' || state === 'activating') throw new FaultError(`etcd on ${t.name} is ${state} after the kill`);
        },
        pendingDuring: () => undefined,
        restore: async () => void (await mustExec(c, t.name, `sudo systemctl start ${ETCD} flotilla-etcd.path`, 'starting etcd')),
        pendingAfter: () => undefined,
      };
    }
    case 'partition': {
      const t = pickBy(nodes.filter(quorumSafe), p.pick);
      if (!t || nodes.length < 2) return { skipped: 'no node can be cut off without losing the etcd quorum' };
      return {
        ...base(t, { targetOutOfService: true, touchesEtcd: t.etcdMember }),
        inject: () => c.setClusterLink(t.name, false),
        pendingDuring: gone(t),
        restore: async () => void (await c.setClusterLink(t.name, true)),
        pendingAfter: reRegistered(t),
      };
    }
    case 'power-off': {
      const t = pickBy(nodes.filter(quorumSafe), p.pick);
      if (!t || nodes.length < 2) return { skipped: 'no node can be powered off without losing the etcd quorum' };
      return {
        ...base(t, { targetOutOfService: true, touchesEtcd: t.etcdMember }),
        inject: () => c.powerOff(t.name),
        pendingDuring: gone(t),
        restore: async () => {
          await c.powerOn(t.name);
          return undefined;
        },
        pendingAfter: reRegistered(t),
      };
    }
  }
}
