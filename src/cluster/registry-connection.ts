/**
 * The registry of a cluster whose etcd the host cannot reach directly (its network lives in a
 * namespace, or behind user-mode networking): a tunnel over an SSH connection to a member.
 */
import { FlotillaError } from '../errors';
import type { NodeConnection } from '../ssh/connection';
import { Registry } from '../units/registry';
import { readPki } from './pki';
import { clusterFiles, type ClusterRecord } from './store';

export interface RecordConnection {
  registry: Registry;
  /** Closes the registry and the tunnel (not the SSH connection, which the caller owns). */
  close(): Promise<void>;
}

/** Opens the cluster's registry through `member`, an SSH connection to one of its etcd members. */
export async function connectRegistry(record: ClusterRecord, member: NodeConnection): Promise<RecordConnection> {
  const tunnel = await member.tunnel('127.0.0.1', record.clientPort);
  try {
    let tls: { ca: string; cert: string; key: string } | undefined;
    if (record.tls) {
      const file = clusterFiles(record.name).pki;
      const pki = readPki(file);
      if (!pki) throw new FlotillaError('not-found', `cluster ${record.name}: ${file} is missing`);
      tls = { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key };
    }
    // Emulated nodes answer slowly: generous deadlines, or a busy etcd reads as a dead one.
    const registry = await Registry.connect({ endpoints: [`${record.tls ? 'https' : 'http'}://127.0.0.1:${tunnel.port}`], prefix: record.keyPrefix, ...(tls ? { tls } : {}), dialTimeoutMs: 30_000, requestTimeoutMs: 30_000 });
    return {
      registry,
      async close() {
        await registry.close();
        await tunnel.close();
      },
    };
  } catch (err) {
    await tunnel.close();
    throw err;
  }
}
