/**
 * Spec validation: checks every field, reports every problem at once with its path,
 * and resolves defaults. Pure: file reading (units, snippets) goes through `readFile`.
 */
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { FlotillaError, throwIfProblems, type Problem } from '../errors';
import {
  CONFIG_FORMATS,
  DEFAULTS,
  NODE_ROLES,
  PLATFORMS,
  RUNNER_KINDS,
  type ClusterSpec,
  type ConfigFormat,
  type ResolvedNode,
  type ResolvedSpec,
} from './spec';
import { parseIPv4Cidr, ipv4ToInt, intToIPv4 } from './net';
import { checkAuthorizedKey } from './ssh-keys';
import { nearest } from '../util/suggest';
import { clusterPrefix } from './key-layout';

export { nearest };

type Json = unknown;
type Obj = Record<string, Json>;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const METADATA_KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const UNIT_NAME = /^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|socket|timer|path|target|mount|automount|device|swap|slice|scope)$/;

/** Known fields at each level; anything else is reported as unknown with the nearest match. */
const FIELDS = {
  root: ['name', 'format', 'platform', 'nodes', 'ssh', 'network', 'etcd', 'agent', 'units', 'snippets', 'aws', 'templates'],
  node: ['name', 'role', 'metadata', 'address', 'cpus', 'memoryMiB'],
  ssh: ['user', 'authorizedKeys'],
  network: ['cidr'],
  etcd: ['members', 'clientPort', 'peerPort', 'tls', 'heartbeatIntervalMs', 'electionTimeoutMs'],
  agent: ['ttlSeconds', 'reconcileIntervalMs', 'runner', 'keyPrefix'],
  unit: ['name', 'file', 'contents', 'state'],
  snippet: ['format', 'file', 'contents', 'nodes'],
  aws: ['region', 'largeConfigUrl'],
} as const;

export function describe(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `${typeof v} ${String(v)}`;
}

/** Accumulates problems with their field paths. */
class Checker {
  readonly problems: Problem[] = [];

  add(p: string, message: string, atKey = false): void {
    this.problems.push({ path: p, message, ...(atKey ? { atKey } : {}) });
  }

  isObject(v: Json, p: string): v is Obj {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return true;
    this.add(p, `must be a mapping, got ${describe(v)}`);
    return false;
  }

  keys(obj: Obj, p: string, known: readonly string[]): void {
    for (const k of Object.keys(obj)) {
      if (k === '__proto__' || k === 'constructor' || k === 'prototype') {
        this.add(join(p, k), 'reserved key is not allowed', true);
      } else if (!known.includes(k)) {
        const near = nearest(k, known);
        this.add(join(p, k), `unknown field${near ? ` (did you mean "${near}"?)` : `; known fields: ${known.join(', ')}`}`, true);
      }
    }
  }

  string(obj: Obj, key: string, p: string, opts: { required?: boolean; pattern?: RegExp; what?: string; max?: number } = {}): string | undefined {
    const v = obj[key];
    const fp = join(p, key);
    if (v === undefined) {
      if (opts.required) this.add(fp, 'is required');
      return undefined;
    }
    if (typeof v !== 'string') {
      this.add(fp, `must be a string, got ${describe(v)}`);
      return undefined;
    }
    if (opts.max !== undefined && v.length > opts.max) {
      this.add(fp, `must be at most ${opts.max} characters, got ${v.length}`);
      return undefined;
    }
    if (opts.pattern && !opts.pattern.test(v)) {
      this.add(fp, `${JSON.stringify(v)} is not a valid ${opts.what ?? 'value'}`);
      return undefined;
    }
    return v;
  }

  choice<T extends string>(obj: Obj, key: string, p: string, choices: readonly T[]): T | undefined {
    const v = this.string(obj, key, p);
    if (v === undefined) return undefined;
    if (!(choices as readonly string[]).includes(v)) {
      this.add(join(p, key), `must be one of ${choices.join(', ')}, got ${JSON.stringify(v)}`);
      return undefined;
    }
    return v as T;
  }

  int(obj: Obj, key: string, p: string, min: number, max: number): number | undefined {
    const v = obj[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.add(join(p, key), `must be a whole number from ${min} to ${max}, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  bool(obj: Obj, key: string, p: string): boolean | undefined {
    const v = obj[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') {
      this.add(join(p, key), `must be true or false, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  list(obj: Obj, key: string, p: string, required = false): Json[] | undefined {
    const v = obj[key];
    if (v === undefined) {
      if (required) this.add(join(p, key), 'is required');
      return undefined;
    }
    if (!Array.isArray(v)) {
      this.add(join(p, key), `must be a list, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  stringList(obj: Obj, key: string, p: string, required = false): string[] | undefined {
    const l = this.list(obj, key, p, required);
    if (!l) return undefined;
    const out: string[] = [];
    l.forEach((v, i) => {
      if (typeof v === 'string') out.push(v);
      else this.add(`${join(p, key)}[${i}]`, `must be a string, got ${describe(v)}`);
    });
    return out;
  }
}

export function join(p: string, key: string | number): string {
  if (typeof key === 'number') return `${p}[${key}]`;
  const k = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : JSON.stringify(key);
  return p ? `${p}.${k}` : k;
}

/** Stable locally-administered MAC for a node's cluster NIC. */
export function clusterMac(cluster: string, node: string): string {
  const h = createHash('sha256').update(`${cluster}\0${node}`).digest();
  return ['52', '54', '00', h[0], h[1], h[2]].map((b) => (typeof b === 'number' ? b.toString(16).padStart(2, '0') : b)).join(':');
}

export interface ResolveOptions {
  /** Directory relative paths are resolved against. */
  baseDir: string;
  /** Reads a referenced file (unit, snippet); throws FlotillaError('not-found') when absent. */
  readFile: (absPath: string) => string;
}

/**
 * Validates a parsed spec (from YAML or TypeScript) and fills in defaults.
 * Throws FlotillaError('invalid-input') listing every problem with its path.
 */
export function resolveSpec(input: unknown, opts: ResolveOptions): ResolvedSpec {
  const c = new Checker();
  if (!c.isObject(input, '')) throwIfProblems(c.problems, 'invalid cluster spec');
  const root = input as Obj;
  c.keys(root, '', FIELDS.root);

  const name = c.string(root, 'name', '', { required: true, pattern: DNS_LABEL, what: 'cluster name (lowercase letters, digits and "-", at most 63)' }) ?? 'invalid';
  const format = c.choice(root, 'format', '', CONFIG_FORMATS) ?? 'cloud-config';
  const platform = c.choice(root, 'platform', '', PLATFORMS) ?? 'local';

  // network
  let cidr: string = DEFAULTS.cidr;
  let net = parseIPv4Cidr(cidr)!;
  if (root.network !== undefined && c.isObject(root.network, 'network')) {
    c.keys(root.network, 'network', FIELDS.network);
    const v = c.string(root.network, 'cidr', 'network');
    if (v !== undefined) {
      const parsed = parseIPv4Cidr(v);
      if (!parsed || parsed.prefixLength > 29 || parsed.prefixLength < 8) c.add('network.cidr', `${JSON.stringify(v)} is not an IPv4 CIDR with a prefix from /8 to /29`);
      else [cidr, net] = [v, parsed];
    }
  }

  // ssh
  let sshUser: string = DEFAULTS.sshUser;
  let authorizedKeys: string[] = [];
  if (root.ssh === undefined) c.add('ssh', 'is required (ssh.authorizedKeys: the public keys allowed to log in)');
  else if (c.isObject(root.ssh, 'ssh')) {
    c.keys(root.ssh, 'ssh', FIELDS.ssh);
    sshUser = c.string(root.ssh, 'user', 'ssh', { pattern: /^[a-z_][a-z0-9_-]{0,31}$/, what: 'user name' }) ?? sshUser;
    if (sshUser === 'root') c.add('ssh.user', 'must not be root (Flotilla creates an unprivileged sudo user)');
    const keys = c.stringList(root.ssh, 'authorizedKeys', 'ssh', true) ?? [];
    if (root.ssh.authorizedKeys !== undefined && Array.isArray(root.ssh.authorizedKeys) && keys.length === 0) c.add('ssh.authorizedKeys', 'must list at least one public key');
    keys.forEach((k, i) => {
      const err = checkAuthorizedKey(k);
      if (err) c.add(`ssh.authorizedKeys[${i}]`, err);
    });
    authorizedKeys = keys.map((k) => k.trim());
  }

  // nodes
  const nodesIn = c.list(root, 'nodes', '', true) ?? [];
  if (Array.isArray(root.nodes) && nodesIn.length === 0) c.add('nodes', 'must list at least one node');
  const seen = new Map<string, number>();
  const usedAddr = new Map<string, number>();
  const partial: Array<Omit<ResolvedNode, 'role' | 'address' | 'etcdMember'> & { role?: ResolvedNode['role']; address?: string }> = [];
  nodesIn.forEach((raw, i) => {
    const p = `nodes[${i}]`;
    if (!c.isObject(raw, p)) return;
    c.keys(raw, p, FIELDS.node);
    const nodeName = c.string(raw, 'name', p, { required: true, pattern: DNS_LABEL, what: 'node name (hostname label: lowercase letters, digits and "-", at most 63)' });
    if (nodeName !== undefined) {
      if (seen.has(nodeName)) c.add(`${p}.name`, `duplicate name ${JSON.stringify(nodeName)} (also nodes[${seen.get(nodeName)}])`);
      else seen.set(nodeName, i);
    }
    const role = c.choice(raw, 'role', p, NODE_ROLES);
    const metadata: Record<string, string> = {};
    if (raw.metadata !== undefined && c.isObject(raw.metadata, `${p}.metadata`)) {
      for (const [k, v] of Object.entries(raw.metadata)) {
        const mp = join(`${p}.metadata`, k);
        if (!METADATA_KEY.test(k)) c.add(mp, 'metadata key must be letters, digits, "_", "." or "-"');
        else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
          const s = String(v);
          if (/[\s,=]/.test(s) || s === '') c.add(mp, `metadata value ${JSON.stringify(s)} must be non-empty without spaces, "," or "="`);
          else metadata[k] = s;
        } else c.add(mp, `must be a string, got ${describe(v)}`);
      }
    }
    let address: string | undefined;
    const a = c.string(raw, 'address', p);
    if (a !== undefined) {
      const ip = ipv4ToInt(a);
      if (ip === undefined) c.add(`${p}.address`, `${JSON.stringify(a)} is not an IPv4 address`);
      else if ((ip & net.mask) >>> 0 !== net.network) c.add(`${p}.address`, `${a} is outside the cluster network ${cidr}`);
      else if (ip === net.network || ip === net.broadcast || ip === net.network + 1) c.add(`${p}.address`, `${a} is reserved in ${cidr} (network, gateway or broadcast)`);
      else if (usedAddr.has(a)) c.add(`${p}.address`, `${a} is already used by nodes[${usedAddr.get(a)}]`);
      else {
        usedAddr.set(a, i);
        address = a;
      }
    }
    const cpus = c.int(raw, 'cpus', p, 1, 1024) ?? DEFAULTS.cpus;
    const memoryMiB = c.int(raw, 'memoryMiB', p, 128, 4 * 1024 * 1024) ?? DEFAULTS.memoryMiB;
    partial.push({ name: nodeName ?? `invalid-${i}`, ...(role ? { role } : {}), metadata, ...(address ? { address } : {}), clusterMac: clusterMac(name, nodeName ?? String(i)), primaryMac: clusterMac(name, `${nodeName ?? String(i)}/primary`), cpus, memoryMiB });
  });

  // Addresses: fixed ones as given, the rest in order from .11 (room for gateways and VIPs).
  let next = net.network + 11;
  const hostCount = net.broadcast - net.network - 1;
  const nodes: ResolvedNode[] = [];
  const defaultControllers = partial.length >= 5 ? 5 : partial.length >= 3 ? 3 : 1;
  const anyRole = partial.some((n) => n.role !== undefined);
  for (const [i, n] of partial.entries()) {
    let address = n.address;
    if (!address) {
      while (next < net.broadcast && usedAddr.has(intToIPv4(next))) next++;
      if (next >= net.broadcast) {
        c.add(`nodes[${i}].address`, `no free address left in ${cidr} (${hostCount} hosts) for node ${n.name}`);
        address = '0.0.0.0';
      } else {
        address = intToIPv4(next++);
        usedAddr.set(address, i);
      }
    }
    const role = n.role ?? (anyRole ? 'worker' : i < defaultControllers ? 'controller' : 'worker');
    nodes.push({ ...n, role, address, etcdMember: false });
  }

  // etcd
  const etcdIn: Obj = root.etcd !== undefined && c.isObject(root.etcd, 'etcd') ? root.etcd : {};
  c.keys(etcdIn, 'etcd', FIELDS.etcd);
  const clientPort = c.int(etcdIn, 'clientPort', 'etcd', 1, 65535) ?? DEFAULTS.clientPort;
  const peerPort = c.int(etcdIn, 'peerPort', 'etcd', 1, 65535) ?? DEFAULTS.peerPort;
  if (clientPort === peerPort) c.add('etcd.peerPort', `must differ from etcd.clientPort (${clientPort})`);
  const heartbeatIntervalMs = c.int(etcdIn, 'heartbeatIntervalMs', 'etcd', 10, 10_000) ?? DEFAULTS.heartbeatIntervalMs;
  const electionTimeoutMs = c.int(etcdIn, 'electionTimeoutMs', 'etcd', 50, 50_000) ?? DEFAULTS.electionTimeoutMs;
  if (electionTimeoutMs < 5 * heartbeatIntervalMs) c.add('etcd.electionTimeoutMs', `must be at least 5 x etcd.heartbeatIntervalMs (${5 * heartbeatIntervalMs}), as etcd advises`);
  const tls = c.bool(etcdIn, 'tls', 'etcd') ?? true;
  let members = c.stringList(etcdIn, 'members', 'etcd');
  if (members) {
    const mseen = new Set<string>();
    members.forEach((m, i) => {
      if (!seen.has(m)) c.add(`etcd.members[${i}]`, `${JSON.stringify(m)} is not a node name${nearest(m, [...seen.keys()]) ? ` (did you mean "${nearest(m, [...seen.keys()])}"?)` : ''}`);
      else if (mseen.has(m)) c.add(`etcd.members[${i}]`, `duplicate member ${JSON.stringify(m)}`);
      mseen.add(m);
    });
    if (members.length === 0) c.add('etcd.members', 'must name at least one node');
  } else {
    members = nodes.filter((n) => n.role === 'controller').map((n) => n.name);
    if (nodes.length > 0 && members.length === 0) c.add('nodes', 'no node has role controller, so there is no etcd member; set a role or etcd.members');
  }
  for (const n of nodes) n.etcdMember = members.includes(n.name);

  // agent
  const agentIn: Obj = root.agent !== undefined && c.isObject(root.agent, 'agent') ? root.agent : {};
  c.keys(agentIn, 'agent', FIELDS.agent);
  const ttlSeconds = c.int(agentIn, 'ttlSeconds', 'agent', 2, 3600) ?? DEFAULTS.agentTtlSeconds;
  const reconcileIntervalMs = c.int(agentIn, 'reconcileIntervalMs', 'agent', 100, 600_000) ?? DEFAULTS.reconcileIntervalMs;
  const runner = c.choice(agentIn, 'runner', 'agent', RUNNER_KINDS) ?? 'auto';
  const keyPrefix = c.string(agentIn, 'keyPrefix', 'agent', { pattern: /^\/[A-Za-z0-9_./-]*\/$/, what: 'etcd key prefix (starts and ends with "/")' }) ?? clusterPrefix(name);

  // units to preload
  const units: ResolvedSpec['units'] = [];
  const unitNames = new Map<string, number>();
  (c.list(root, 'units', '') ?? []).forEach((raw, i) => {
    const p = `units[${i}]`;
    if (!c.isObject(raw, p)) return;
    c.keys(raw, p, FIELDS.unit);
    const given = fileOrContents(c, opts, raw, p);
    if (!given) return;
    const { file, contents } = given;
    const unitName = c.string(raw, 'name', p, { pattern: UNIT_NAME, what: 'unit name (e.g. hello.service)' }) ?? (file !== undefined ? path.basename(file) : undefined);
    if (unitName === undefined) {
      if (raw.name === undefined) c.add(`${p}.name`, 'is required with contents');
      return;
    }
    if (!UNIT_NAME.test(unitName)) {
      c.add(`${p}.file`, `file name ${JSON.stringify(unitName)} is not a unit name; set units[${i}].name`);
      return;
    }
    if (unitNames.has(unitName)) c.add(`${p}.name`, `duplicate unit ${JSON.stringify(unitName)} (also units[${unitNames.get(unitName)}])`);
    unitNames.set(unitName, i);
    const state = c.choice(raw, 'state', p, ['inactive', 'loaded', 'launched'] as const) ?? 'launched';
    if (contents !== undefined) units.push({ name: unitName, contents, state });
  });

  // snippets
  const snippets: ResolvedSpec['snippets'] = [];
  (c.list(root, 'snippets', '') ?? []).forEach((raw, i) => {
    const p = `snippets[${i}]`;
    if (!c.isObject(raw, p)) return;
    c.keys(raw, p, FIELDS.snippet);
    const f = c.choice(raw, 'format', p, CONFIG_FORMATS);
    if (raw.format === undefined) c.add(`${p}.format`, `is required (${CONFIG_FORMATS.join(' or ')})`);
    const given = fileOrContents(c, opts, raw, p);
    if (!given) return;
    const { file, contents } = given;
    const only = c.stringList(raw, 'nodes', p);
    only?.forEach((n, j) => {
      if (!seen.has(n)) c.add(`${p}.nodes[${j}]`, `${JSON.stringify(n)} is not a node name`);
    });
    if (f && contents !== undefined) snippets.push({ format: f as ConfigFormat, contents, source: file ?? `${p}.contents`, nodes: only, field: `${p}.${file !== undefined ? 'file' : 'contents'}` });
  });

  // aws
  const awsIn: Obj = root.aws !== undefined && c.isObject(root.aws, 'aws') ? root.aws : {};
  c.keys(awsIn, 'aws', FIELDS.aws);
  const region = c.string(awsIn, 'region', 'aws', { pattern: /^[a-z]{2}(-[a-z]+)+-\d$/, what: 'AWS region (e.g. eu-west-1)' }) ?? DEFAULTS.region;
  const largeConfigUrl = c.string(awsIn, 'largeConfigUrl', 'aws', { pattern: /^(s3|https):\/\/[^\s]+\/$/, what: 'URL prefix (s3:// or https://, ending in "/")' });

  const templates = c.string(root, 'templates', '');

  throwIfProblems(c.problems, 'invalid cluster spec');
  return {
    name,
    format,
    platform,
    nodes,
    ssh: { user: sshUser, authorizedKeys },
    network: { cidr, prefixLength: net.prefixLength },
    etcd: { members, clientPort, peerPort, tls, heartbeatIntervalMs, electionTimeoutMs },
    agent: { ttlSeconds, reconcileIntervalMs, runner, keyPrefix },
    units,
    snippets,
    aws: { region, largeConfigUrl },
    templatesDir: templates === undefined ? undefined : path.resolve(opts.baseDir, templates),
    baseDir: opts.baseDir,
  };
}

/** A `file:` or `contents:` pair (exactly one); the file is read relative to the spec. */
function fileOrContents(c: Checker, opts: ResolveOptions, raw: Obj, p: string): { file: string | undefined; contents: string | undefined } | undefined {
  const file = c.string(raw, 'file', p);
  const contents = c.string(raw, 'contents', p);
  if ((file === undefined) === (contents === undefined)) {
    c.add(p, 'give exactly one of file or contents');
    return undefined;
  }
  return { file, contents: file !== undefined ? readReferenced(c, opts, file, `${p}.file`) : contents };
}

function readReferenced(c: Checker, opts: ResolveOptions, file: string, p: string): string | undefined {
  try {
    return opts.readFile(path.resolve(opts.baseDir, file));
  } catch (err) {
    c.add(p, FlotillaError.is(err) ? err.message : String(err));
    return undefined;
  }
}

/** For specs built in TypeScript: same checks, typed input. */
export function resolveTypedSpec(spec: ClusterSpec, opts: ResolveOptions): ResolvedSpec {
  return resolveSpec(spec, opts);
}
