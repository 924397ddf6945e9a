/**
 * Chaos against a local QEMU cluster (`flotilla up`): root commands over each node's
 * pinned SSH (the uplink, which no fault touches), the cluster link cut with QMP
 * `set_link` on the `cluster` netdev, power cut by killing QEMU and power back by
 * relaunching it from the same disk. Observations go through a node the current fault
 * does not target: the registry through an SSH tunnel to that node's etcd, and the
 * ground truth from `systemctl show` on every node that is powered.
 */
import { FlotillaError } from '../errors';
import { withTimeout } from '../util/async';
import { PATHS } from '../config/node-files';
import { consoleMarkers, readNodeDesc, relaunchNode } from '../provision/local/cluster';
import { runningPid, stopNode } from '../provision/local/qemu';
import { HostKeyMismatchError, NodeConnection, waitForSsh, type ExecResult } from '../ssh';
import { etcdctlCommand, memberEtcdctl } from '../cluster/etcdctl';
import { connectRegistry, type RecordConnection } from '../cluster/registry-connection';
import { nodeSshTarget, type ClusterRecord, type NodeRecord } from '../cluster/store';
import type { Registry } from '../units/registry';
import { FaultError, type ChaosControl, type ChaosNode, type NodeExecResult, type Observation } from './faults';
import { qmpCommand } from '../provision/local/qmp';
import type { ChaosObserver } from './runner';

/** Sentinel keys live outside Flotilla's key prefix, under this one, per run. */
export const SENTINEL_PREFIX = '/flotilla-chaos/';
/** A relaunched node must answer SSH within this (a TCG boot next to other VMs). */
const BOOT_TIMEOUT_MS = 10 * 60_000;

/** `systemctl show -p Id -p ActiveState` output for several units → unit → ActiveState. */
export function parseActiveStates(stdout: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const block of stdout.split(/\n\s*\n/)) {
    const props = new Map<string, string>();
    for (const line of block.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) props.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
    }
    const id = props.get('Id');
    const active = props.get('ActiveState');
    if (id && active) out.set(id, active);
  }
  return out;
}

/** `etcdctl endpoint health --cluster -w json` → endpoint host → healthy. Unparseable output throws. */
export function parseEndpointHealth(stdout: string): Map<string, boolean> {
  const list = JSON.parse(stdout) as Array<{ endpoint: string; health: boolean }>;
  if (!Array.isArray(list)) throw new Error('not a list');
  return new Map(list.map((e) => [new URL(e.endpoint).hostname, e.health === true]));
}


const SAFE_WORD = /^[A-Za-z0-9@._:/-]+$/;

export class LocalChaosCluster implements ChaosControl, ChaosObserver {
  private readonly clients = new Map<string, NodeConnection>();
  private observer: { node: string; client: NodeConnection; conn: RecordConnection } | undefined;
  private observerBroken = false;
  /** Nodes the observer must not go through (the current fault's target). */
  private avoided: readonly string[] = [];
  private readonly sentinelPrefix: string;

  private constructor(
    readonly record: ClusterRecord,
    readonly nodes: ChaosNode[],
    readonly ttlSeconds: number,
    run: string,
  ) {
    this.sentinelPrefix = `${SENTINEL_PREFIX}${record.name}/${run}/`;
  }

  /** Connects to the cluster, learns machine IDs (the record's, else /etc/machine-id) and the agents' lease TTL. */
  static async open(record: ClusterRecord, run: string): Promise<LocalChaosCluster> {
    const down = record.nodes.filter((n) => runningPid(n.pidFile) === undefined);
    if (down.length) throw new FlotillaError('conflict', `cluster ${record.name}: ${down.map((n) => n.name).join(', ')} not running; chaos needs every node up`);
    if (!/^[A-Za-z0-9._-]+$/.test(run)) throw new FlotillaError('invalid-input', `run id ${JSON.stringify(run)}: letters, digits, '.', '_' and '-' only`);
    const tmp = new LocalChaosCluster(record, [], 0, run);
    try {
      const nodes: ChaosNode[] = [];
      for (const n of record.nodes) {
        const machineId = n.machineId ?? (await tmp.mustExec(n.name, 'cat /etc/machine-id')).trim();
        nodes.push({ name: n.name, machineId, etcdMember: n.etcdMember, address: n.address, metadata: n.metadata });
      }
      const cfg = JSON.parse(await tmp.mustExec(record.nodes[0]!.name, `cat ${PATHS.fleetdConfig}`)) as { ttlSeconds?: unknown };
      const ttl = Number(cfg.ttlSeconds);
      if (!Number.isFinite(ttl) || ttl <= 0) throw new FlotillaError('invalid-input', `${PATHS.fleetdConfig} on ${record.nodes[0]!.name}: no ttlSeconds`);
      const c = new LocalChaosCluster(record, nodes, ttl, run);
      for (const [k, v] of tmp.clients) c.clients.set(k, v);
      return c;
    } catch (err) {
      await Promise.all([...tmp.clients.values()].map((cl) => cl.close()));
      throw err;
    }
  }

  private node(name: string): NodeRecord {
    const n = this.record.nodes.find((x) => x.name === name);
    if (!n) throw new FlotillaError('not-found', `cluster ${this.record.name} has no node ${name}`);
    return n;
  }

  private async client(name: string): Promise<NodeConnection> {
    const hit = this.clients.get(name);
    if (hit) return hit;
    const c = await this.connect(this.node(name));
    this.clients.set(name, c);
    return c;
  }

  /** SSH with generous deadlines and a few attempts: emulated nodes on a loaded host stall for seconds. */
  private async connect(n: NodeRecord): Promise<NodeConnection> {
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const c = new NodeConnection(nodeSshTarget(this.record, n), { readyTimeoutMs: 60_000, handshakeTimeoutMs: 30_000 });
      try {
        await c.connect();
        return c;
      } catch (err) {
        await c.close();
        if (err instanceof HostKeyMismatchError) throw err;
        last = err;
      }
    }
    throw last;
  }

  private dropClient(name: string): void {
    void this.clients.get(name)?.close();
    this.clients.delete(name);
  }

  async exec(node: string, command: string, timeoutMs = 60_000): Promise<NodeExecResult> {
    return this.run(node, command, { timeoutMs });
  }

  /** A command on the node (as root with `sudo`); a dead connection (the node was powered off, or stalled) is replaced once. */
  private async run(node: string, command: string, opts: { timeoutMs?: number; sudo?: boolean; stdin?: string } = {}): Promise<ExecResult> {
    const o = { ...opts, timeoutMs: opts.timeoutMs ?? 60_000 };
    try {
      return await (await this.client(node)).exec(command, o);
    } catch (err) {
      this.dropClient(node);
      if (FlotillaError.is(err) && err.code === 'timeout') throw err;
      return (await this.client(node)).exec(command, o);
    }
  }

  private etcdctl(node: string, args: string, stdin?: string): Promise<ExecResult> {
    return this.run(node, etcdctlCommand(args, memberEtcdctl(this.record)), { timeoutMs: 30_000, sudo: true, ...(stdin !== undefined ? { stdin } : {}) });
  }

  private async mustExec(node: string, command: string): Promise<string> {
    const r = await this.exec(node, command);
    if (r.code !== 0) throw new FlotillaError('external', `${node}: \`${command.split(' ')[0]} …\` exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
    return r.stdout;
  }

  async setClusterLink(node: string, up: boolean): Promise<void> {
    const desc = readNodeDesc(this.record.name, node);
    if (!desc?.qmpSocket) throw new FaultError(`${node} has no QMP socket (launched by an older flotilla): recreate the cluster (flotilla down, flotilla up)`);
    await qmpCommand(desc.qmpSocket, 'set_link', { name: 'cluster', up });
    if (!up) {
      // Prove the cut: the node must not reach any peer over the cluster network.
      const peers = this.nodes.filter((n) => n.name !== node);
      for (const p of peers) {
        const r = await this.exec(node, `ping -c 2 -W 1 ${p.address} >/dev/null 2>&1`, 30_000);
        if (r.code === 0) throw new FaultError(`${node} still reaches ${p.name} (${p.address}) after set_link off`);
      }
    }
  }

  async powerOff(node: string): Promise<void> {
    if (this.observer?.node === node) await this.closeObserver();
    this.dropClient(node);
    // No grace: QEMU dies at once, as with a pulled plug (the guest gets no shutdown).
    if (!(await stopNode(this.node(node).pidFile, { graceMs: 0 }))) throw new FaultError(`${node}: its QEMU was not running`);
  }

  async powerOn(node: string): Promise<void> {
    const n = this.node(node);
    await relaunchNode(this.record.name, node);
    await waitForSsh(nodeSshTarget(this.record, n), Date.now() + BOOT_TIMEOUT_MS, {
      readyHint: () => consoleMarkers(n.consoleLog).ssh !== undefined,
      abort: () => (runningPid(n.pidFile) === undefined ? `QEMU for ${node} exited (see ${n.consoleLog})` : undefined),
    });
  }

  // ---- observer

  private async closeObserver(): Promise<void> {
    const o = this.observer;
    this.observer = undefined;
    if (!o) return;
    await o.conn.close().catch(() => undefined);
    await o.client.close();
  }

  async avoid(nodes: readonly string[]): Promise<void> {
    this.avoided = [...nodes];
    if (this.observer && !nodes.includes(this.observer.node) && !this.observerBroken) return;
    await this.closeObserver();
    const candidates = this.record.nodes.filter((n) => n.etcdMember && !nodes.includes(n.name) && runningPid(n.pidFile) !== undefined);
    let last: unknown;
    for (const n of candidates) {
      let client: NodeConnection | undefined;
      try {
        client = await this.connect(n);
        const conn = await connectRegistry(this.record, client);
        this.observer = { node: n.name, client, conn };
        this.observerBroken = false;
        return;
      } catch (err) {
        await client?.close();
        last = err;
      }
    }
    throw new FlotillaError('external', `cluster ${this.record.name}: no etcd member outside ${nodes.join(', ') || '(none)'} could be reached${last ? `: ${(last as Error).message}` : ''}`);
  }

  private async observerConn(): Promise<{ node: string; conn: RecordConnection }> {
    if (!this.observer || this.observerBroken) await this.avoid(this.avoided);
    return this.observer!;
  }

  registry(): Registry {
    if (!this.observer) throw new FlotillaError('internal', 'chaos observer not connected (call avoid() first)');
    return this.observer.conn.registry;
  }

  async observe(opts: { units: readonly string[]; etcdHealth?: boolean }): Promise<Observation> {
    const o = await this.observerConn();
    const bad = opts.units.filter((u) => !SAFE_WORD.test(u));
    if (bad.length) throw new FlotillaError('invalid-input', `unit names not safe for a shell command: ${bad.join(', ')}`);
    const ground = Promise.all(
      this.nodes.map(async (n): Promise<[string, Map<string, string>] | undefined> => {
        if (opts.units.length === 0 || runningPid(this.node(n.name).pidFile) === undefined) return undefined;
        try {
          // Bounded as a whole (a reconnect included): one stalled node must not stall every observation.
          const r = await withTimeout(this.exec(n.name, `systemctl show -p Id -p ActiveState -- ${opts.units.join(' ')}`, 20_000), 30_000, () => new FlotillaError('timeout', `no answer within 30 s`));
          return r.code === 0 ? [n.machineId, parseActiveStates(r.stdout)] : undefined;
        } catch {
          return undefined; // unreachable now: the registry's reported states stand in
        }
      }),
    );
    const health = opts.etcdHealth ? this.etcdHealth(o.node) : undefined;
    const [snap, truth, members] = await Promise.allSettled([o.conn.registry.snapshot(), ground, health]);
    if (snap.status === 'rejected') {
      this.observerBroken = true;
      throw snap.reason;
    }
    const running = new Map((truth.status === 'fulfilled' ? truth.value : []).filter((x): x is [string, Map<string, string>] => x !== undefined));
    const obs: Observation = { at: Date.now(), snapshot: snap.value, running };
    if (members.status === 'fulfilled' && members.value) obs.etcdHealth = members.value;
    return obs;
  }

  /** Member health by node name; a member that does not answer (or no answer at all) counts as unhealthy. */
  private async etcdHealth(via: string): Promise<Map<string, boolean>> {
    let byHost = new Map<string, boolean>();
    try {
      const r = await withTimeout(this.etcdctl(via, 'endpoint health --cluster -w json'), 40_000, () => new FlotillaError('timeout', `no answer within 40 s`));
      byHost = parseEndpointHealth(r.stdout);
    } catch {
      /* etcdctl timed out or printed no list: nobody is known to be healthy */
    }
    return new Map(this.nodes.filter((n) => n.etcdMember).map((n) => [n.name, byHost.get(n.address) === true]));
  }

  async writeSentinels(entries: ReadonlyMap<string, string>): Promise<void> {
    const { node } = await this.observerConn();
    const ops: string[] = [];
    for (const [k, v] of entries) {
      if (!SAFE_WORD.test(k) || !SAFE_WORD.test(v)) throw new FlotillaError('invalid-input', `sentinel ${JSON.stringify(k)}=${JSON.stringify(v)}: letters, digits and @._:/- only`);
      ops.push(`put ${this.sentinelPrefix}${k} ${v}`);
    }
    // One transaction (no compares, all puts): acknowledged only once a quorum has it.
    const r = await this.etcdctl(node, 'txn', `\n${ops.join('\n')}\n\n\n`);
    if (r.code !== 0 || !r.stdout.includes('SUCCESS')) throw new FlotillaError('external', `etcd txn via ${node} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  }

  async readSentinels(): Promise<Map<string, string>> {
    const { node } = await this.observerConn();
    const r = await this.etcdctl(node, `get --prefix ${this.sentinelPrefix} -w json`);
    if (r.code !== 0) throw new FlotillaError('external', `etcd get via ${node} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
    const res = JSON.parse(r.stdout) as { kvs?: Array<{ key: string; value: string }> };
    const out = new Map<string, string>();
    for (const kv of res.kvs ?? []) {
      const key = Buffer.from(kv.key, 'base64').toString('utf8');
      out.set(key.slice(this.sentinelPrefix.length), Buffer.from(kv.value ?? '', 'base64').toString('utf8'));
    }
    return out;
  }

  async clearSentinels(): Promise<void> {
    const { node } = await this.observerConn();
    const r = await this.etcdctl(node, `del --prefix ${this.sentinelPrefix}`);
    if (r.code !== 0) throw new FlotillaError('external', `etcd del via ${node} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  }

  async close(): Promise<void> {
    await this.closeObserver();
    await Promise.all([...this.clients.values()].map((c) => c.close()));
    this.clients.clear();
  }
}
