/**
 * Per-cluster secrets generated at render time: each node's SSH host key (its public half
 * is what verification pins). Stored as JSON with mode 0600 so re-rendering keeps them.
 */
import * as fs from 'node:fs';
import { FlotillaError } from '../errors';
import { writeFileAtomic } from '../util/fs';
import type { ResolvedSpec } from './spec';
import { generateHostKey, type HostKeyPair } from '../ssh/keys';

export interface ClusterSecrets {
  version: 1;
  cluster: string;
  hostKeys: Record<string, HostKeyPair>;
}

/** Secrets for every node of `spec`, keeping those in `existing` and generating the rest. */
export function ensureSecrets(spec: ResolvedSpec, existing?: ClusterSecrets): ClusterSecrets {
  if (existing && existing.cluster !== spec.name) {
    throw new FlotillaError('conflict', `secrets belong to cluster "${existing.cluster}", not "${spec.name}"`);
  }
  const hostKeys: Record<string, HostKeyPair> = {};
  for (const n of spec.nodes) hostKeys[n.name] = existing?.hostKeys[n.name] ?? generateHostKey(`${n.name}.${spec.name}`);
  return { version: 1, cluster: spec.name, hostKeys };
}

export function readSecrets(file: string): ClusterSecrets | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FlotillaError('external', `cannot read ${file}: ${(err as Error).message}`);
  }
  let data: ClusterSecrets;
  try {
    data = JSON.parse(text) as ClusterSecrets;
  } catch (err) {
    throw new FlotillaError('invalid-input', `${file}: not valid JSON: ${(err as Error).message}`);
  }
  if (data?.version !== 1 || typeof data.cluster !== 'string' || typeof data.hostKeys !== 'object' || data.hostKeys === null) {
    throw new FlotillaError('invalid-input', `${file}: not a Flotilla secrets file (expected version 1 with cluster and hostKeys)`);
  }
  return data;
}

export function writeSecrets(file: string, secrets: ClusterSecrets): void {
  writeFileAtomic(file, `${JSON.stringify(secrets, null, 2)}\n`, 0o600);
}
