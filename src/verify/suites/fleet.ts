/**
 * The `fleet` suite, from the registry (one consistent snapshot per attempt): every
 * inventory node registered as a machine with its metadata; every launched unit active
 * where it is scheduled; placements that satisfy each unit's [X-Fleet] options, judged
 * with the scheduler's own predicates (src/units/xfleet.ts): MachineID, MachineMetadata,
 * MachineOf (together), Conflicts (never co-located), Replaces, Global (on every matching
 * machine). All checks retry until their deadline, since scheduling converges.
 */
import { checkUnitText } from '../../units/client';
import type { MachineInfo, Registry, RegistrySnapshot } from '../../units/registry';
import { conflictsWith, matchesMetadata, type XFleetOptions } from '../../units/xfleet';
import type { VerifyCluster } from '../cluster';
import type { InventoryNode } from '../../cluster/inventory';
import { CheckFailed, expect, type Check } from '../types';

export interface FleetView {
  snap: RegistrySnapshot;
  /** Parsed [X-Fleet] options per unit (from its submitted body). */
  options: Map<string, XFleetOptions>;
  /** Units whose body could not be read or parsed, with why. */
  invalid: Map<string, string>;
  machines: Map<string, MachineInfo>;
  /** Inventory node name → machine ID (when it could be matched). */
  nodeMachine: Map<string, string>;
  /** Machine ID → node name. */
  machineNode: Map<string, string>;
  /** Nodes that could not be matched to a machine, with why. */
  unmatched: Map<string, string>;
}

const machineIdCache = new WeakMap<VerifyCluster, Map<string, string>>();

/** /etc/machine-id of a node, read once per cluster over its connection. */
async function machineIdOf(cluster: VerifyCluster, node: InventoryNode, signal?: AbortSignal): Promise<string> {
  let cache = machineIdCache.get(cluster);
  if (!cache) machineIdCache.set(cluster, (cache = new Map()));
  const hit = cache.get(node.name);
  if (hit) return hit;
  const id = (await cluster.conn(node).mustExec('cat /etc/machine-id', signal ? { signal } : {})).trim();
  cache.set(node.name, id);
  return id;
}

/** Matches inventory nodes to registered machines: machineId, else a unique address, else /etc/machine-id. */
export async function fleetView(cluster: VerifyCluster, registry: Registry, signal?: AbortSignal): Promise<FleetView> {
  const snap = await registry.snapshot();
  const machines = new Map(snap.machines.map((m) => [m.id, m]));
  const nodeMachine = new Map<string, string>();
  const machineNode = new Map<string, string>();
  const unmatched = new Map<string, string>();
  for (const n of cluster.nodes) {
    let id = n.machineId;
    if (!id) {
      const byAddr = snap.machines.filter((m) => m.address === n.address);
      if (byAddr.length === 1) id = byAddr[0]!.id;
      else {
        try {
          id = await machineIdOf(cluster, n, signal);
        } catch (err) {
          unmatched.set(n.name, `cannot read its machine ID: ${(err as Error).message}`);
          continue;
        }
      }
    }
    if (!machines.has(id)) {
      unmatched.set(n.name, `machine ${id} is not registered`);
      continue;
    }
    nodeMachine.set(n.name, id);
    machineNode.set(id, n.name);
  }
  const options = new Map<string, XFleetOptions>();
  const invalid = new Map<string, string>();
  const bodies = new Map<string, string | undefined>();
  for (const job of snap.jobs) {
    if (job.desiredState === 'inactive') continue;
    if (!bodies.has(job.hash)) bodies.set(job.hash, await registry.getBody(job.hash));
    const text = bodies.get(job.hash);
    if (text === undefined) {
      invalid.set(job.name, 'its unit body is missing from the registry');
      continue;
    }
    try {
      options.set(job.name, checkUnitText(job.name, text).options);
    } catch (err) {
      invalid.set(job.name, (err as Error).message.split('\n')[0]!);
    }
  }
  return { snap, options, invalid, machines, nodeMachine, machineNode, unmatched };
}

function label(v: FleetView, machineId: string): string {
  const n = v.machineNode.get(machineId);
  return n ? `${n} (${machineId.slice(0, 12)})` : machineId.slice(0, 12);
}

/** Every violation of [X-Fleet] rules in the current schedule, as sentences. */
export function placementViolations(v: FleetView): { placement: string[]; conflicts: string[]; global: string[]; machineOf: string[]; replaces: string[] } {
  const out = { placement: [] as string[], conflicts: [] as string[], global: [] as string[], machineOf: [] as string[], replaces: [] as string[] };
  const active = v.snap.jobs.filter((j) => j.desiredState !== 'inactive');
  const where = new Map<string, string[]>();
  for (const a of v.snap.schedule) where.set(a.unit, [...(where.get(a.unit) ?? []), a.machineId]);
  const onMachine = new Map<string, string[]>();
  for (const a of v.snap.schedule) onMachine.set(a.machineId, [...(onMachine.get(a.machineId) ?? []), a.unit]);
  for (const job of active) {
    const o = v.options.get(job.name);
    if (!o) continue;
    const ms = where.get(job.name) ?? [];
    for (const mid of ms) {
      const m = v.machines.get(mid);
      if (!m) {
        out.placement.push(`${job.name} is scheduled on ${mid.slice(0, 12)}, which is not registered`);
        continue;
      }
      if (o.machineId !== undefined && o.machineId !== mid) out.placement.push(`${job.name} wants MachineID=${o.machineId} but is on ${label(v, mid)}`);
      if (o.machineMetadata.length && !matchesMetadata(o, m.metadata)) {
        out.placement.push(`${job.name} is on ${label(v, mid)} whose metadata ${JSON.stringify(m.metadata)} does not match MachineMetadata ${o.machineMetadata.map((r) => `${r.key}=${r.values.join('|')}`).join(', ')}`);
      }
      for (const t of o.machineOf) {
        const tm = where.get(t) ?? [];
        if (!tm.includes(mid)) out.machineOf.push(`${job.name} is on ${label(v, mid)} but its MachineOf target ${t} is ${tm.length ? `on ${tm.map((x) => label(v, x)).join(', ')}` : 'not scheduled'}`);
      }
      for (const other of onMachine.get(mid) ?? []) {
        if (other === job.name || other < job.name) continue; // each pair once
        const oo = v.options.get(other);
        if (oo && conflictsWith({ name: job.name, options: o }, { name: other, options: oo })) out.conflicts.push(`${job.name} and ${other} conflict but share ${label(v, mid)}`);
      }
      for (const r of o.replaces) if ((where.get(r) ?? []).includes(mid)) out.replaces.push(`${job.name} replaces ${r}, yet both are on ${label(v, mid)}`);
    }
    if (o.global) {
      // Every machine that matches the metadata and holds no conflicting unit must run it.
      for (const m of v.machines.values()) {
        const fits = (!o.machineMetadata.length || matchesMetadata(o, m.metadata)) &&
          !(onMachine.get(m.id) ?? []).some((u) => u !== job.name && v.options.has(u) && conflictsWith({ name: job.name, options: o }, { name: u, options: v.options.get(u)! }));
        if (fits && !ms.includes(m.id)) out.global.push(`global ${job.name} is missing on matching machine ${label(v, m.id)}`);
      }
    } else if (ms.length > 1) out.placement.push(`${job.name} is scheduled on ${ms.length} machines (${ms.map((x) => label(v, x)).join(', ')}); a non-global unit runs once`);
  }
  return out;
}

export function fleetSuite(cluster: VerifyCluster): Check[] {
  const suite = 'fleet';
  const withView = async (signal: AbortSignal): Promise<FleetView> => fleetView(cluster, await cluster.registry(), signal);
  const rule = (id: string, name: string, pick: (x: ReturnType<typeof placementViolations>) => string[], okMsg: (v: FleetView) => string): Check => ({
    suite,
    id,
    name,
    retry: true,
    run: async (ctx) => {
      const v = await withView(ctx.signal);
      const bad = pick(placementViolations(v));
      expect(bad.length === 0, bad.join('; '));
      return okMsg(v);
    },
  });
  return [
    {
      suite,
      id: 'fleet.machines',
      name: 'every node registered with its metadata',
      retry: true,
      run: async (ctx) => {
        const v = await withView(ctx.signal);
        const problems: string[] = [];
        for (const [n, why] of v.unmatched) problems.push(`${n}: ${why}`);
        for (const [n, mid] of v.nodeMachine) {
          const want = cluster.node(n).metadata;
          const got = v.machines.get(mid)!.metadata;
          const diff = [...new Set([...Object.keys(want), ...Object.keys(got)])].filter((k) => want[k] !== got[k]);
          if (diff.length) problems.push(`${n}: metadata ${diff.map((k) => `${k}=${got[k] ?? '(unset)'} (want ${want[k] ?? '(unset)'})`).join(', ')}`);
        }
        const strangers = [...v.machines.keys()].filter((m) => !v.machineNode.has(m));
        if (strangers.length) problems.push(`machines not in the inventory: ${strangers.map((s) => `${s.slice(0, 12)} (${v.machines.get(s)!.address})`).join(', ')}`);
        expect(problems.length === 0, problems.join('; '));
        return `${v.nodeMachine.size} machines registered with their metadata`;
      },
    },
    {
      suite,
      id: 'fleet.units',
      name: 'every launched unit active where it is scheduled',
      retry: true,
      run: async (ctx) => {
        const v = await withView(ctx.signal);
        const problems: string[] = [];
        const states = new Map(v.snap.states.map((s) => [`${s.unit}\0${s.machineId}`, s]));
        const placements = new Map(v.snap.placements.map((p) => [p.unit, p]));
        let launched = 0;
        for (const [u, why] of v.invalid) problems.push(`${u}: ${why}`);
        for (const job of v.snap.jobs) {
          if (job.desiredState !== 'launched') continue;
          launched++;
          const as = v.snap.schedule.filter((a) => a.unit === job.name);
          if (as.length === 0) {
            problems.push(`${job.name} is not scheduled${placements.get(job.name) ? `: ${placements.get(job.name)!.reason}` : ''}`);
            continue;
          }
          for (const a of as) {
            const st = states.get(`${job.name}\0${a.machineId}`);
            if (!st) problems.push(`${job.name} on ${label(v, a.machineId)}: no state reported`);
            else if (st.active !== 'active') problems.push(`${job.name} on ${label(v, a.machineId)} is ${st.active}/${st.sub}`);
            else if (st.hash !== job.hash) problems.push(`${job.name} on ${label(v, a.machineId)} runs old content ${st.hash.slice(0, 7)} (submitted ${job.hash.slice(0, 7)})`);
          }
        }
        const failedUnits = v.snap.states
          .filter((s) => s.active === 'failed' && v.machineNode.has(s.machineId))
          .map((s) => ({ node: v.machineNode.get(s.machineId)!, unit: s.unit }));
        if (problems.length) throw new CheckFailed(problems.join('; '), failedUnits.length ? { failedUnits } : undefined);
        return `${launched} launched units active`;
      },
    },
    rule('fleet.placement', 'units on machines that satisfy MachineID and MachineMetadata', (x) => x.placement, (v) => `${v.snap.schedule.length} placements satisfy their constraints`),
    rule('fleet.conflicts', 'no conflicting units share a machine', (x) => x.conflicts, () => 'no Conflicts co-location'),
    rule('fleet.machine-of', 'MachineOf units run with their targets', (x) => x.machineOf, () => 'MachineOf pairs together'),
    rule('fleet.replaces', 'Replaces honoured', (x) => x.replaces, () => 'no replaced unit beside its replacer'),
    rule('fleet.global', 'Global units on every matching machine', (x) => x.global, (v) => `${[...v.options.values()].filter((o) => o.global).length} global units everywhere they match`),
  ];
}
