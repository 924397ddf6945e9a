/**
 * The etcd connection flags every registry-facing command shares (`--endpoints`, `--cluster`,
 * `--key-prefix`, `--ca-file`, `--cert-file`, `--key-file`, or their FLOTILLA_* variables).
 * Used by the host CLI and by the node's agent bundle, so it imports nothing of the host side.
 */
import { FlotillaError } from '../../errors';
import { readTls } from '../../units/fleetd';
import { Registry } from '../../units/registry';
import type { ParsedCommand } from '../command';

/** A flag's value, else its environment variable's (an empty variable counts as unset). */
export function flagOrEnv(p: ParsedCommand, name: string, env: string): string | undefined {
  return (p.values[name] as string | undefined) ?? (process.env[env] || undefined);
}

/** Connects to the registry at `endpoints` (comma-separated) with the prefix, cluster and TLS flags. */
export async function registryFromFlags(p: ParsedCommand, cmd: string, endpoints: string): Promise<{ registry: Registry; close(): Promise<void> }> {
  const cluster = flagOrEnv(p, 'cluster', 'FLOTILLA_CLUSTER');
  const prefix = flagOrEnv(p, 'key-prefix', 'FLOTILLA_KEY_PREFIX');
  if (!cluster && !prefix) throw new FlotillaError('usage', `flotilla ${cmd}: pass --cluster NAME (or set FLOTILLA_CLUSTER)`);
  const ca = flagOrEnv(p, 'ca-file', 'FLOTILLA_CA_FILE');
  const cert = flagOrEnv(p, 'cert-file', 'FLOTILLA_CERT_FILE');
  const key = flagOrEnv(p, 'key-file', 'FLOTILLA_KEY_FILE');
  const tls = ca ? readTls({ ca, ...(cert ? { cert } : {}), ...(key ? { key } : {}) }) : undefined;
  const registry = await Registry.connect({ endpoints: endpoints.split(',').map((e) => e.trim()).filter(Boolean), ...(prefix ? { prefix } : { cluster: cluster! }), ...(tls ? { tls } : {}) });
  return { registry, close: () => registry.close() };
}
