/**
 * What an emulated (TCG) cluster changes in the spec. Emulated vCPUs on a busy host stall
 * for seconds at a time: a short agent lease makes agents fence themselves over and over
 * (fleet #972), and etcd's 250 ms heartbeat / 2.5 s election timeout turns every stall into
 * a leader election (seen: "leader changed" and a cluster that never settles at load 20+).
 * Both trade failover speed for stability; explicit larger values in the spec are kept.
 */
import type { ResolvedSpec } from '../../config/spec';

/**
 * Lease TTL for agents on emulated nodes: fleet's own default (agent_ttl 30 s). The chaos run on
 * a 3-node TCG cluster with 10 s saw healthy agents fence themselves ("no keepalive answered
 * for 8.0 s") while a neighbour's fleetd restarted, and every agent fence during an etcd
 * election, which can itself take up to twice the election timeout.
 */
export const TCG_MIN_TTL_SECONDS = 30;
/** An etcd leader loss must not outlast the agents' leases: TTL >= this x the election timeout. */
export const TTL_PER_ELECTION_TIMEOUT = 2.5;
/** etcd heartbeat on emulated nodes (etcd: about the worst round trip between members). */
export const TCG_MIN_HEARTBEAT_MS = 1000;
/** etcd election timeout on emulated nodes (etcd: at least 10 heartbeats). */
export const TCG_MIN_ELECTION_MS = 10_000;

export interface EmulationTuning {
  spec: ResolvedSpec;
  /** One line per value raised, for up's progress output. */
  notes: string[];
}

export function tuneForEmulation(spec: ResolvedSpec): EmulationTuning {
  const notes: string[] = [];
  let out = spec;
  if (out.etcd.heartbeatIntervalMs < TCG_MIN_HEARTBEAT_MS || out.etcd.electionTimeoutMs < TCG_MIN_ELECTION_MS) {
    const heartbeatIntervalMs = Math.max(out.etcd.heartbeatIntervalMs, TCG_MIN_HEARTBEAT_MS);
    const electionTimeoutMs = Math.max(out.etcd.electionTimeoutMs, TCG_MIN_ELECTION_MS, 10 * heartbeatIntervalMs);
    notes.push(`etcd heartbeat/election raised from ${out.etcd.heartbeatIntervalMs}/${out.etcd.electionTimeoutMs} ms to ${heartbeatIntervalMs}/${electionTimeoutMs} ms (a leader loss takes up to the election timeout)`);
    out = { ...out, etcd: { ...out.etcd, heartbeatIntervalMs, electionTimeoutMs } };
  }
  // After etcd's values: the TTL must outlast an election with the timeout in force.
  const ttl = Math.max(TCG_MIN_TTL_SECONDS, Math.ceil((TTL_PER_ELECTION_TIMEOUT * out.etcd.electionTimeoutMs) / 1000));
  if (out.agent.ttlSeconds < ttl) {
    notes.push(`agent lease TTL raised from ${out.agent.ttlSeconds} s to ${ttl} s (failover takes up to the TTL)`);
    out = { ...out, agent: { ...out.agent, ttlSeconds: ttl } };
  }
  return { spec: out, notes };
}
