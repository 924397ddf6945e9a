/** SSH to test clusters' nodes through src/ssh, the way Flotilla itself reaches them. */
import { nodeSshTarget, type ClusterRecord, type NodeRecord } from '../../src/cluster/store';
import { NodeConnection, type ConnectOptions, type ExecResult, type SshTarget } from '../../src/ssh';

/** Opens a pinned connection to a node of a cluster record, runs `fn` with it, and closes it. */
export async function withNode<T>(record: ClusterRecord, node: NodeRecord, fn: (c: NodeConnection) => Promise<T>, opts: ConnectOptions = { readyTimeoutMs: 30_000 }): Promise<T> {
  return withTarget(nodeSshTarget(record, node), fn, opts);
}

export async function withTarget<T>(target: SshTarget, fn: (c: NodeConnection) => Promise<T>, opts: ConnectOptions = { readyTimeoutMs: 30_000 }): Promise<T> {
  const c = new NodeConnection(target, opts);
  try {
    await c.connect();
    return await fn(c);
  } finally {
    await c.close();
  }
}

/** Connect, run one command, disconnect. */
export function runOnce(target: SshTarget, command: string, timeoutMs = 60_000): Promise<ExecResult> {
  return withTarget(target, (c) => c.exec(command, { timeoutMs }), { readyTimeoutMs: Math.min(timeoutMs, 30_000) });
}
