/** Builders for test specs. */
import { generateKeyPair } from '../../src/ssh/keys';
import type { ClusterSpec, NodeSpec } from '../../src/config/spec';

/** A real, freshly generated public key (the private half is discarded). */
export function testPublicKey(comment = 'test@flotilla'): string {
  return generateKeyPair(comment).publicKey;
}

const KEY = testPublicKey();

export function nodes(n: number, extra: (i: number) => Partial<NodeSpec> = () => ({})): NodeSpec[] {
  return Array.from({ length: n }, (_, i) => ({ name: `node${i + 1}`, ...extra(i) }));
}

export function makeSpec(overrides: Partial<ClusterSpec> = {}): ClusterSpec {
  return { name: 'test', nodes: nodes(1), ssh: { authorizedKeys: [KEY] }, ...overrides };
}
