/**
 * What the Pulumi component does with a cluster spec, as pure functions shared with the CLI:
 * the stack's spec (from a spec file or object, or generated from a node count) with the
 * stack's overrides, and each node's first-boot documents placed for its platform. Rendering
 * itself is src/config (resolveSpec, renderCluster, placeUserData): nothing is re-implemented.
 */
import * as path from 'node:path';
import { FlotillaError, throwIfProblems, type Problem } from '../../errors';
import { etcdEndpoints, etcdPeerUrl } from '../../config/node-files';
import { renderCluster, type RenderedNode } from '../../config/render';
import type { ClusterSecrets } from '../../config/secrets';
import type { ClusterSpec, ConfigFormat, EtcdJoin, ResolvedSpec } from '../../config/spec';
import { checkAuthorizedKey } from '../../config/ssh-keys';
import { type HostKeyPair } from '../../ssh/keys';
import { placeUserData, type PlacedUserData } from '../../config/userdata';
import { resolveSpec } from '../../config/validate';
import { parseYamlSource } from '../../config/yaml-source';
import { readTextFile } from '../../util/fs';

export type StackPlatform = 'aws' | 'libvirt';
export const STACK_PLATFORMS: readonly StackPlatform[] = ['aws', 'libvirt'];

/** Largest generated cluster (nodeCount); a spec file may list more. */
export const MAX_NODE_COUNT = 64;

export interface StackSpecInput {
  /** Cluster name (DNS label): names resources, the etcd prefix, the libvirt domains. Default: the spec's name. */
  name?: string;
  platform: StackPlatform;
  /** Overrides the spec's format. */
  format?: ConfigFormat;
  /** Nodes node1..nodeN when no spec is given. */
  nodeCount?: number;
  /** A cluster spec YAML file (relative paths in it resolve against its directory). */
  specFile?: string;
  /** Or a spec object; relative paths resolve against `baseDir` (default: cwd). */
  spec?: ClusterSpec;
  baseDir?: string;
  /** Cluster network for generated specs (default 10.99.0.0/24). */
  cidr?: string;
}

/** What the platform adds when documents are rendered (never needed for the structure). */
export interface StackRenderExtra {
  /** Ignition on AWS: where oversized configs are uploaded (`<node>.ign` appended). */
  largeConfigUrl?: string;
  region?: string;
  /** Platform snippets (first-boot setup of stock images), merged after the spec's own. */
  snippets?: ReadonlyArray<{ format: ConfigFormat; contents: string; nodes?: readonly string[] }>;
  /** etcd members being replaced: rendered to join the running cluster (see renderStack). */
  joining?: readonly string[];
}

/**
 * A syntactically valid key that stands in for the stack's real key while only the cluster's
 * structure (nodes, roles, addresses) is needed: that is known when resources are declared,
 * the real key (a Pulumi Input, often secret) only later. Never rendered into a document.
 */
const STRUCTURE_ONLY_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOLwIXy0ZoE1eiVUM738jk6QpfgvXCnzM6R78pngCCia structure-only';

function generatedSpec(input: StackSpecInput): Record<string, unknown> {
  const n = input.nodeCount ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > MAX_NODE_COUNT) {
    throw new FlotillaError('invalid-input', `nodeCount must be a whole number from 1 to ${MAX_NODE_COUNT}, got ${JSON.stringify(input.nodeCount)}`, [
      { path: 'nodeCount', message: `must be a whole number from 1 to ${MAX_NODE_COUNT}` },
    ]);
  }
  if (input.name === undefined) throw new FlotillaError('invalid-input', 'a cluster name is required when no spec is given');
  return {
    name: input.name,
    nodes: Array.from({ length: n }, (_, i) => ({ name: `node${i + 1}` })),
    ssh: { authorizedKeys: [] },
    ...(input.cidr ? { network: { cidr: input.cidr } } : {}),
  };
}

/**
 * The stack's resolved spec: the spec (file, object or generated) with the stack's platform,
 * format, name and SSH keys; every problem reported at once (located by line for a file).
 * `authorizedKeys` are added to the spec's own.
 */
export function resolveStackSpec(input: StackSpecInput, authorizedKeys: readonly string[], extra: StackRenderExtra = {}): ResolvedSpec {
  let raw: Record<string, unknown>;
  let locate: (p: readonly Problem[]) => Problem[] = (p) => [...p];
  let baseDir = input.baseDir ?? process.cwd();
  let what = 'invalid cluster spec';
  if (input.specFile !== undefined) {
    if (input.spec !== undefined) throw new FlotillaError('invalid-input', 'give a spec file or a spec object, not both');
    const src = parseYamlSource(readTextFile(input.specFile), input.specFile);
    if (typeof src.data !== 'object' || src.data === null || Array.isArray(src.data)) throw new FlotillaError('invalid-input', `${input.specFile}: a cluster spec must be a mapping`);
    raw = { ...(src.data as Record<string, unknown>) };
    locate = (p) => src.locate(p);
    baseDir = path.dirname(path.resolve(input.specFile));
    what = `${input.specFile}: invalid cluster spec`;
  } else if (input.spec !== undefined) {
    raw = { ...(input.spec as unknown as Record<string, unknown>) };
  } else {
    raw = generatedSpec(input);
  }
  if (input.specFile !== undefined || input.spec !== undefined) {
    if (input.nodeCount !== undefined && Array.isArray(raw.nodes) && raw.nodes.length !== input.nodeCount) {
      throw new FlotillaError('invalid-input', `nodeCount is ${input.nodeCount} but the spec lists ${raw.nodes.length} nodes; leave nodeCount unset when giving a spec`);
    }
    if (input.name !== undefined && raw.name !== undefined && raw.name !== input.name) {
      throw new FlotillaError('invalid-input', `the spec names cluster ${JSON.stringify(raw.name)} but the stack's cluster is ${JSON.stringify(input.name)}`);
    }
  }
  if (input.name !== undefined) raw.name = input.name;
  raw.platform = input.platform;
  if (input.format) raw.format = input.format;
  const ssh = (typeof raw.ssh === 'object' && raw.ssh !== null && !Array.isArray(raw.ssh) ? { ...(raw.ssh as Record<string, unknown>) } : {}) as Record<string, unknown>;
  const own = Array.isArray(ssh.authorizedKeys) ? (ssh.authorizedKeys as unknown[]) : [];
  ssh.authorizedKeys = [...own, ...authorizedKeys];
  raw.ssh = ssh;
  if (extra.snippets !== undefined && extra.snippets.length > 0) {
    const own = Array.isArray(raw.snippets) ? (raw.snippets as unknown[]) : raw.snippets === undefined ? [] : undefined;
    if (own === undefined) throw new FlotillaError('invalid-input', `${input.specFile ?? 'spec'}: snippets must be a list`, [{ path: 'snippets', message: 'must be a list' }]);
    // The platform's own snippets come after the spec's: they set up what the spec's units run on.
    raw.snippets = [...own, ...extra.snippets.map((s) => ({ format: s.format, contents: s.contents, ...(s.nodes ? { nodes: [...s.nodes] } : {}) }))];
  }
  if (extra.largeConfigUrl !== undefined || extra.region !== undefined) {
    const aws = typeof raw.aws === 'object' && raw.aws !== null && !Array.isArray(raw.aws) ? { ...(raw.aws as Record<string, unknown>) } : {};
    if (extra.largeConfigUrl !== undefined) aws.largeConfigUrl = extra.largeConfigUrl;
    if (extra.region !== undefined) aws.region = extra.region;
    raw.aws = aws;
  }
  try {
    return resolveSpec(raw, { baseDir, readFile: readTextFile });
  } catch (err) {
    if (FlotillaError.is(err) && err.code === 'invalid-input' && err.problems.length > 0) throwIfProblems(locate(err.problems), what);
    throw err;
  }
}

/** The cluster's structure (nodes, roles, addresses, etcd members) before the real SSH key is known. */
export function stackStructure(input: StackSpecInput): ResolvedSpec {
  return resolveStackSpec(input, [STRUCTURE_ONLY_KEY]);
}

/** Checks the stack's SSH public key; the message names where it came from. */
export function checkStackKey(key: string, where: string): string {
  const err = checkAuthorizedKey(key);
  if (err) throw new FlotillaError('invalid-input', `${where}: ${err}`, [{ path: where, message: err }]);
  return key.trim();
}

export interface PlacedNode {
  rendered: RenderedNode;
  placed: PlacedUserData;
}

/**
 * Every node's documents, rendered with the stack's host keys and fitted into the platform's
 * user-data. Members named in `joining` take a removed member's place (same name and address):
 * their etcd joins the running cluster (`etcdJoin`, as `flotilla replace` renders it) with the
 * spec's member list, which is the cluster's once the operator has re-added the member.
 */
export function renderStack(spec: ResolvedSpec, hostKeys: Record<string, HostKeyPair>, opts: { joining?: readonly string[] } = {}): PlacedNode[] {
  const secrets: ClusterSecrets = { version: 1, cluster: spec.name, hostKeys };
  const joining = opts.joining ?? [];
  const members = spec.nodes.filter((n) => n.etcdMember);
  const join: EtcdJoin = { state: 'existing', members: members.map((m) => ({ name: m.name, peerUrl: etcdPeerUrl(spec, m) })) };
  const rendered = joining.length === 0 ? spec : { ...spec, nodes: spec.nodes.map((n) => (n.etcdMember && joining.includes(n.name) ? { ...n, etcdJoin: join } : n)) };
  return renderCluster(rendered, secrets).map((r) => ({ rendered: r, placed: placeUserData(rendered, r) }));
}

/** etcd client URLs (cluster addresses), as agents use them. */
export function stackEtcdEndpoints(spec: ResolvedSpec): string[] {
  return etcdEndpoints(spec);
}

/** The S3 key and URL prefix under which a node's full Ignition config is stored. */
export function ignitionObjectKey(cluster: string, node: string): string {
  return `${cluster}/${node}.ign`;
}

/** The S3 key of the cluster's agent archive (one object for every node). */
export function agentObjectKey(cluster: string): string {
  return `${cluster}/flotilla-agent.tar.gz`;
}

export function largeConfigPrefix(bucket: string, cluster: string): string {
  return `s3://${bucket}/${cluster}/`;
}
