/** The spec `flotilla up --nodes N` uses when no spec file is given. */
import { loadSpecObject } from '../../config/load';
import type { ResolvedSpec } from '../../config/spec';

/**
 * N nodes named node1..N, each with `index` metadata; the first 1, 3 or 5 are etcd
 * members. SSH access is the cluster's own generated key, added by `up`.
 */
export function defaultLocalSpec(name: string, nodes: number, authorizedKeys: string[]): ResolvedSpec {
  return loadSpecObject({
    name,
    platform: 'local',
    nodes: Array.from({ length: nodes }, (_, i) => ({ name: `node${i + 1}`, metadata: { index: String(i + 1) } })),
    ssh: { authorizedKeys },
  });
}
