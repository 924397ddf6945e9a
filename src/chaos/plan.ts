/**
 * The fault plan: which faults, in which order, from a seed. Kinds are dealt in rounds
 * (each round a seeded shuffle of every kind), so any five consecutive faults cover all
 * five kinds. Targets depend on the cluster at run time (who leads, who is an etcd
 * member), so each planned fault carries a seeded `pick` in [0, 1) that chooses among the
 * eligible nodes, sorted by name: the same seed on the same cluster picks the same nodes.
 */
import { FlotillaError } from '../errors';
import { mulberry32, shuffle } from './prng';

export const FAULT_KINDS = ['agent-kill', 'leader-kill', 'etcd-kill', 'partition', 'power-off'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export const FAULT_SUMMARY: Record<FaultKind, string> = {
  'agent-kill': "SIGKILL a non-leader node's fleetd (systemd restarts it: Restart=always)",
  'leader-kill': "SIGKILL the engine leader's fleetd",
  'etcd-kill': 'SIGKILL one etcd member and keep it down for two TTLs, then start it and wait until healthy',
  partition: "cut a node's cluster NIC (QMP set_link off), then reconnect it",
  'power-off': "kill a node's QEMU (power cut), then boot it again from the same disk",
};

export interface PlannedFault {
  /** 1-based position in the run. */
  index: number;
  kind: FaultKind;
  /** Chooses the target among eligible nodes at run time. */
  pick: number;
}

export function planFaults(seed: number, count: number, kinds: readonly FaultKind[] = FAULT_KINDS): PlannedFault[] {
  if (!Number.isInteger(count) || count < 1) throw new FlotillaError('usage', `the number of faults must be at least 1 (got ${count})`);
  if (kinds.length === 0) throw new FlotillaError('usage', 'no fault kinds to plan from');
  const unknown = kinds.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
  if (unknown.length) throw new FlotillaError('usage', `unknown fault kind ${unknown.join(', ')}; kinds: ${FAULT_KINDS.join(', ')}`);
  const random = mulberry32(seed);
  const plan: PlannedFault[] = [];
  while (plan.length < count) {
    for (const kind of shuffle([...new Set(kinds)], random)) {
      if (plan.length === count) break;
      plan.push({ index: plan.length + 1, kind, pick: random() });
    }
  }
  return plan;
}

/** `agent-kill,partition` → kinds, with a usage error naming unknown ones. */
export function parseFaultKinds(list: string): FaultKind[] {
  const kinds = list.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = kinds.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
  if (unknown.length || kinds.length === 0) throw new FlotillaError('usage', `--kinds: ${unknown.length ? `unknown ${unknown.join(', ')}` : 'empty'}; kinds: ${FAULT_KINDS.join(', ')}`);
  return kinds as FaultKind[];
}
