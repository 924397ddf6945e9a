/**
 * A cluster under verification: the inventory, one pinned SSH connection per node (opened
 * in parallel, shared by every check), and lazily opened etcd handles — a raw etcd3 client
 * for member/status/key checks and the Registry for scheduling state — reached directly
 * or tunnelled through a member's SSH connection when etcd lives in a network namespace.
 *
 * This is also the `cluster` handed to TypeScript tests (kola's TestCluster).
 */
import * as fs from 'node:fs';
import { Etcd3, type IOptions } from 'etcd3';
import { FlotillaError } from '../errors';
import { loadSpecFile } from '../config/load';
import type { ResolvedSpec } from '../config/spec';
import { UnitsClient } from '../units/client';
import { Registry, type RegistryTls } from '../units/registry';
import { inventoryNode, timeScale, type Inventory, type InventoryNode, type TlsFiles } from '../cluster/inventory';
import { SshPool, type ConnectOptions, type ExecOptions, type ExecResult, type NodeConnection, type Tunnel } from '../ssh';

export interface VerifyClusterOptions {
  ssh?: ConnectOptions;
  /** The resolved spec (smoke has it in hand); otherwise loaded from inventory.specFile when set. */
  spec?: ResolvedSpec;
  /** etcd dial/request deadline (ms, default 5000 × the inventory's time scale). */
  etcdTimeoutMs?: number;
}

/** SSH defaults for a run at `scale` (src/ssh/connection.ts defaults × scale); given values win. */
export function scaledSshOptions(given: ConnectOptions | undefined, scale: number): ConnectOptions {
  return {
    readyTimeoutMs: 10_000 * scale,
    keepaliveIntervalMs: 5_000 * scale,
    commandTimeoutMs: 60_000 * scale,
    ...given,
  };
}

function readTlsFiles(t: TlsFiles): RegistryTls {
  const read = (f: string, what: string): Buffer => {
    try {
      return fs.readFileSync(f);
    } catch (err) {
      throw new FlotillaError('not-found', `etcd TLS: cannot read ${what} ${f}: ${(err as Error).message}`);
    }
  };
  return { ca: read(t.caFile, 'CA certificate'), ...(t.certFile ? { cert: read(t.certFile, 'client certificate') } : {}), ...(t.keyFile ? { key: read(t.keyFile, 'client key') } : {}) };
}

/**
 * etcd3 retries calls (global policy) and opens a circuit breaker per host after failures.
 * Checks retry themselves and a refused client must be seen at once, so every call here
 * goes through once (etcd3 only calls `execute`).
 */
type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
function passThrough(): Policy {
  const noEvent = (): { dispose(): void } => ({ dispose: () => undefined });
  return {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> => fn({ signal: new AbortController().signal }),
  } as unknown as Policy;
}

export class VerifyCluster {
  readonly pool: SshPool;
  readonly spec: ResolvedSpec | undefined;
  private etcdEndpoints: Promise<string[]> | undefined;
  private tunnels: Tunnel[] = [];
  private etcdClient: Etcd3 | undefined;
  private registryP: Promise<Registry> | undefined;
  private readonly extraClients = new Set<Etcd3>();

  private get etcdTimeoutMs(): number {
    return this.options.etcdTimeoutMs ?? 5000 * timeScale(this.inventory);
  }

  constructor(
    readonly inventory: Inventory,
    readonly options: VerifyClusterOptions = {},
  ) {
    this.pool = new SshPool(
      inventory.nodes.map((n) => ({
        node: n.name,
        host: n.ssh.host,
        port: n.ssh.port,
        user: n.ssh.user,
        hostKey: n.hostKey,
        privateKey: inventory.ssh.privateKey,
        ...(inventory.ssh.privateKeyFile ? { privateKeyFile: inventory.ssh.privateKeyFile } : {}),
        ...(n.ssh.netns ? { netns: n.ssh.netns } : {}),
      })),
      scaledSshOptions(options.ssh, timeScale(inventory)),
    );
    this.spec = options.spec ?? (inventory.specFile ? loadSpecFile(inventory.specFile) : undefined);
  }

  /** Opens every node's connection in parallel. Failures are kept per node (checks on it report them). */
  connect(): Promise<{ failed: Map<string, FlotillaError> }> {
    return this.pool.connectAll();
  }

  get name(): string {
    return this.inventory.name;
  }

  get nodes(): InventoryNode[] {
    return this.inventory.nodes;
  }

  node(name: string): InventoryNode {
    return inventoryNode(this.inventory, name);
  }

  conn(node: string | InventoryNode): NodeConnection {
    return this.pool.get(typeof node === 'string' ? node : node.name);
  }

  /** Runs a command on a node over its pooled connection. */
  ssh(node: string | InventoryNode, command: string, opts?: ExecOptions): Promise<ExecResult> {
    return this.conn(node).exec(command, opts);
  }

  /** Like ssh(), but a non-zero exit throws; returns stdout. */
  mustSsh(node: string | InventoryNode, command: string, opts?: ExecOptions): Promise<string> {
    return this.conn(node).mustExec(command, opts);
  }

  // -------------------------------------------------------------------------
  // etcd from the host

  /** Client URLs the host can dial: the inventory's (direct), or local tunnels through member nodes. */
  hostEtcdEndpoints(): Promise<string[]> {
    this.etcdEndpoints ??= (async () => {
      const inv = this.inventory;
      if (inv.etcd.access === 'direct') return inv.etcd.endpoints;
      const out: string[] = [];
      const errors: string[] = [];
      for (const m of inv.nodes.filter((n) => n.etcdMember)) {
        try {
          const u = new URL(m.etcdEndpoint);
          // The member also listens on 127.0.0.1 and its certificate names it, so tunnel there.
          const t = await this.conn(m).tunnel('127.0.0.1', Number(u.port));
          this.tunnels.push(t);
          out.push(`${u.protocol}//127.0.0.1:${t.port}`);
        } catch (err) {
          errors.push(`${m.name}: ${(err as Error).message}`);
        }
      }
      if (out.length === 0) throw new FlotillaError('external', `cannot tunnel to etcd through any member: ${errors.join('; ')}`);
      return out;
    })();
    return this.etcdEndpoints;
  }

  /** etcd3 client options for `endpoints` (default: all), with the inventory's TLS; `clientCert: false` leaves the certificate out. */
  async etcdOptions(opts: { endpoints?: string[]; clientCert?: boolean } = {}): Promise<IOptions> {
    const hosts = opts.endpoints ?? (await this.hostEtcdEndpoints());
    const tls = this.inventory.etcd.tls ? readTlsFiles(this.inventory.etcd.tls) : undefined;
    const timeout = this.etcdTimeoutMs;
    return {
      hosts,
      dialTimeout: timeout,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      // One try per call: checks retry themselves, and a refused client must fail fast.
      faultHandling: { global: passThrough(), host: passThrough },
      ...(tls
        ? {
            credentials: {
              rootCertificate: Buffer.from(tls.ca),
              ...(opts.clientCert !== false && tls.cert && tls.key ? { certChain: Buffer.from(tls.cert), privateKey: Buffer.from(tls.key) } : {}),
            },
          }
        : {}),
    };
  }

  /** A raw etcd3 client (member list, status, keys). Closed with the cluster. */
  async etcd(): Promise<Etcd3> {
    this.etcdClient ??= new Etcd3(await this.etcdOptions());
    return this.etcdClient;
  }

  /** A separate client for one endpoint (or without a client certificate); closed with the cluster. */
  async etcdFor(opts: { endpoints?: string[]; clientCert?: boolean }): Promise<Etcd3> {
    const c = new Etcd3(await this.etcdOptions(opts));
    this.extraClients.add(c);
    return c;
  }

  /** The scheduling registry at the inventory's key prefix. */
  registry(): Promise<Registry> {
    this.registryP ??= (async () => {
      const endpoints = await this.hostEtcdEndpoints();
      const tls = this.inventory.etcd.tls ? readTlsFiles(this.inventory.etcd.tls) : undefined;
      return Registry.connect({ endpoints, prefix: this.inventory.keyPrefix, ...(tls ? { tls } : {}), dialTimeoutMs: this.etcdTimeoutMs, requestTimeoutMs: this.etcdTimeoutMs });
    })();
    this.registryP.catch(() => (this.registryP = undefined));
    return this.registryP;
  }

  async units(): Promise<UnitsClient> {
    return new UnitsClient(await this.registry());
  }

  /** Closes etcd clients, tunnels and every SSH connection. */
  async close(): Promise<void> {
    const reg = this.registryP;
    this.registryP = undefined;
    await reg?.then((r) => r.close()).catch(() => undefined);
    this.etcdClient?.close();
    this.etcdClient = undefined;
    for (const c of this.extraClients) c.close();
    this.extraClients.clear();
    await Promise.all(this.tunnels.map((t) => t.close()));
    this.tunnels = [];
    this.etcdEndpoints = undefined;
    await this.pool.closeAll();
  }
}
