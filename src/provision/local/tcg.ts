/**
 * What an emulated (TCG) cluster changes in the spec. Emulated vCPUs on a busy host stall
 * for seconds at a time: a 4 s agent lease makes agents fence themselves over and over
 * (fleet #972), and etcd's 250 ms heartbeat / 2.5 s election timeout turns every stall into
 * a leader election (seen: "leader changed" and a cluster that never settles at load 20+).
 * Both trade failover speed for stability; explicit larger values in the spec are kept.
 */
import type { ResolvedSpec } from '../../config/spec';

/** Lease TTL for agents on emulated nodes. */
export const TCG_MIN_TTL_SECONDS = 10;
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
  if (out.agent.ttlSeconds < TCG_MIN_TTL_SECONDS) {
    notes.push(`agent lease TTL raised from ${out.agent.ttlSeconds} s to ${TCG_MIN_TTL_SECONDS} s (failover takes up to the TTL)`);
    out = { ...out, agent: { ...out.agent, ttlSeconds: TCG_MIN_TTL_SECONDS } };
  }
  if (out.etcd.heartbeatIntervalMs < TCG_MIN_HEARTBEAT_MS || out.etcd.electionTimeoutMs < TCG_MIN_ELECTION_MS) {
    const heartbeatIntervalMs = Math.max(out.etcd.heartbeatIntervalMs, TCG_MIN_HEARTBEAT_MS);
    const electionTimeoutMs = Math.max(out.etcd.electionTimeoutMs, TCG_MIN_ELECTION_MS, 10 * heartbeatIntervalMs);
    notes.push(`etcd heartbeat/election raised from ${out.etcd.heartbeatIntervalMs}/${out.etcd.electionTimeoutMs} ms to ${heartbeatIntervalMs}/${electionTimeoutMs} ms (a leader loss takes up to the election timeout)`);
    out = { ...out, etcd: { ...out.etcd, heartbeatIntervalMs, electionTimeoutMs } };
  }
  return { spec: out, notes };
}
