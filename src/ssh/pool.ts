/** Every node's connection, opened in parallel; a node that cannot be reached is kept as its error. */
import { FlotillaError } from '../errors';
import { NodeConnection, type ConnectOptions } from './connection';
import { SshError } from './errors';
import type { SshTarget } from './transport';

export interface PoolConnectResult {
  /** Nodes whose connection failed, with why; checks on them report `error`. */
  failed: Map<string, SshError | FlotillaError>;
}

export class SshPool {
  readonly connections = new Map<string, NodeConnection>();
  readonly failures = new Map<string, FlotillaError>();

  constructor(
    targets: readonly SshTarget[],
    readonly options: ConnectOptions = {},
  ) {
    for (const t of targets) this.connections.set(t.node, new NodeConnection(t, options));
  }

  /** Opens every connection at once; failures are kept per node rather than thrown. */
  async connectAll(): Promise<PoolConnectResult> {
    await Promise.all(
      [...this.connections.values()].map(async (c) => {
        try {
          await c.connect();
          this.failures.delete(c.node);
        } catch (err) {
          this.failures.set(c.node, FlotillaError.is(err) ? err : new SshError('other', 'external', `${c.where}: ${(err as Error).message}`));
        }
      }),
    );
    return { failed: new Map(this.failures) };
  }

  /** The node's connection; throws the connect error if it could not be opened. */
  get(node: string): NodeConnection {
    const c = this.connections.get(node);
    if (!c) throw new FlotillaError('not-found', `no node named ${node} in the inventory`);
    const f = this.failures.get(node);
    if (f && !c.connected) throw f;
    return c;
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.connections.values()].map((c) => c.close()));
  }
}
