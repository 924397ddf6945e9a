/**
 * The inventory: what `flotilla verify` needs to reach and judge a cluster, whatever made
 * it (local QEMU, libvirt, AWS stack outputs, hand-made): nodes with their SSH endpoints
 * and pinned host keys, the SSH private key, etcd endpoints and TLS files, the registry
 * key prefix. YAML or JSON; every problem is reported at once with file, line and field
 * path (exit status 2), like the cluster spec.
 *
 * `--cluster NAME` (later) resolves through registered inventory providers (e.g. the local
 * QEMU provisioner's state): see `registerInventoryProvider`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError, throwIfProblems, type Problem } from '../errors';
import { PKI } from '../config/node-files';
import { checkAuthorizedKey } from '../config/ssh-keys';
import { describe, join, nearest } from '../config/validate';
import { parseYamlSource } from '../config/yaml-source';
import { clusterPrefix, registryPrefix, servicesPrefix } from '../config/key-layout';
import { readTextFile } from '../util/fs';

export type NodeRole = 'controller' | 'worker';

export interface InventoryNode {
  name: string;
  /** The node's cluster address (what fleetd announces, what etcd peers use). */
  address: string;
  /** Pinned SSH host key, `ssh-ed25519 AAAA...`. */
  hostKey: string;
  ssh: { host: string; port: number; user: string; netns?: string };
  role: NodeRole;
  etcdMember: boolean;
  /** fleet metadata the machine must register with. */
  metadata: Record<string, string>;
  /** The registry machine ID, when known; otherwise matched by address, then /etc/machine-id over SSH. */
  machineId?: string;
  /** This member's etcd client URL (default `<scheme>://<address>:<clientPort>`). */
  etcdEndpoint: string;
  /** Commands the destructive failover check uses to stop and restore this node's agent. */
  agent: { stopCommand: string; startCommand: string };
}

export interface TlsFiles {
  caFile: string;
  certFile?: string;
  keyFile?: string;
}

export interface Inventory {
  /** Cluster name. */
  name: string;
  /** The inventory file, when loaded from one. */
  file?: string;
  ssh: { privateKey: string; privateKeyFile?: string };
  nodes: InventoryNode[];
  etcd: {
    /** Client URLs as the cluster sees them. */
    endpoints: string[];
    clientPort: number;
    /** Host-side TLS files (absent: plain HTTP etcd). */
    tls?: TlsFiles;
    /** TLS files on the nodes, for etcdctl run there (default: /etc/flotilla/pki/…). */
    nodeTls?: TlsFiles;
    /** How the host reaches etcd: `direct` (endpoints routable from here) or `tunnel` (through a node's SSH connection). */
    access: 'direct' | 'tunnel';
    /** etcdctl on the nodes. */
    etcdctl: string;
  };
  /** Registry key prefix, ending in '/'. */
  keyPrefix: string;
  discovery: { prefix: string; services: string[] };
  /** The cluster spec this inventory belongs to (for expected node files), if given. */
  specFile?: string;
  /**
   * How fast the nodes are: `emulated` (QEMU TCG: every process start takes seconds) scales
   * every default deadline by EMULATED_TIME_SCALE; explicit deadlines are kept as given.
   */
  pace?: Pace;
}

export const PACES = ['native', 'emulated'] as const;
export type Pace = (typeof PACES)[number];

/**
 * Emulated nodes run commands 5-10x slower than native ones (etcdctl ~2-7 s, cloud-init's
 * Python 10-25 s on a loaded 2-core host), and their sshd answers keepalives late.
 */
export const EMULATED_TIME_SCALE = 6;

/** The factor every default deadline of a run against `inv` is multiplied by. */
export function timeScale(inv: Pick<Inventory, 'pace'>): number {
  return inv.pace === 'emulated' ? EMULATED_TIME_SCALE : 1;
}

// ---------------------------------------------------------------------------
// Validation

type Obj = Record<string, unknown>;

const FIELDS = {
  root: ['name', 'pace', 'ssh', 'nodes', 'etcd', 'registry', 'discovery', 'spec'],
  ssh: ['user', 'privateKeyFile', 'privateKey'],
  node: ['name', 'address', 'hostKey', 'ssh', 'role', 'etcdMember', 'metadata', 'machineId', 'etcdEndpoint', 'agent'],
  nodeSsh: ['host', 'port', 'user', 'netns'],
  agent: ['stopCommand', 'startCommand'],
  etcd: ['endpoints', 'clientPort', 'tls', 'nodeTls', 'access', 'etcdctl'],
  tls: ['caFile', 'certFile', 'keyFile'],
  registry: ['keyPrefix'],
  discovery: ['prefix', 'services'],
} as const;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const HOST = /^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$/;
const NETNS = /^[A-Za-z0-9_.-]{1,64}$/;
const USER = /^[a-z_][a-z0-9_.-]{0,31}$/;
const METADATA_KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const MACHINE_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

export const DEFAULT_AGENT_STOP = 'systemctl stop flotilla-fleetd.path flotilla-fleetd.service';
export const DEFAULT_AGENT_START = 'systemctl start flotilla-fleetd.service flotilla-fleetd.path';

class Checker {
  readonly problems: Problem[] = [];
  add(p: string, message: string, atKey = false): void {
    this.problems.push({ path: p, message, ...(atKey ? { atKey } : {}) });
  }
  obj(v: unknown, p: string): v is Obj {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return true;
    this.add(p, `must be a mapping, got ${describe(v)}`);
    return false;
  }
  keys(o: Obj, p: string, known: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (k === '__proto__' || k === 'constructor' || k === 'prototype') this.add(join(p, k), 'reserved key is not allowed', true);
      else if (!known.includes(k)) {
        const near = nearest(k, known);
        this.add(join(p, k), `unknown field${near ? ` (did you mean "${near}"?)` : `; known fields: ${known.join(', ')}`}`, true);
      }
    }
  }
  str(o: Obj, k: string, p: string, opts: { required?: boolean; pattern?: RegExp; what?: string } = {}): string | undefined {
    const v = o[k];
    const fp = join(p, k);
    if (v === undefined) {
      if (opts.required) this.add(fp, 'is required');
      return undefined;
    }
    if (typeof v !== 'string' || v.length === 0) {
      this.add(fp, `must be a non-empty string, got ${describe(v)}`);
      return undefined;
    }
    if (opts.pattern && !opts.pattern.test(v)) {
      this.add(fp, `${JSON.stringify(v)} is not a valid ${opts.what ?? 'value'}`);
      return undefined;
    }
    return v;
  }
  int(o: Obj, k: string, p: string, min: number, max: number, required = false): number | undefined {
    const v = o[k];
    if (v === undefined) {
      if (required) this.add(join(p, k), 'is required');
      return undefined;
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.add(join(p, k), `must be a whole number from ${min} to ${max}, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }
  bool(o: Obj, k: string, p: string): boolean | undefined {
    const v = o[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') {
      this.add(join(p, k), `must be true or false, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }
  list(o: Obj, k: string, p: string, required = false): unknown[] | undefined {
    const v = o[k];
    if (v === undefined) {
      if (required) this.add(join(p, k), 'is required');
      return undefined;
    }
    if (!Array.isArray(v)) {
      this.add(join(p, k), `must be a list, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }
  url(v: string, p: string): URL | undefined {
    try {
      const u = new URL(v);
      if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname || !u.port || (u.pathname !== '/' && u.pathname !== '')) throw new Error('shape');
      return u;
    } catch {
      this.add(p, `${JSON.stringify(v)} is not an etcd client URL such as https://10.99.0.11:2379`);
      return undefined;
    }
  }
}

export interface ResolveInventoryOptions {
  /** Relative file paths resolve against this (the inventory file's directory). */
  baseDir: string;
  /** Reads the private key; default: the file system. Missing files are located problems. */
  readFile?: (absPath: string) => string;
  file?: string;
}

/**
 * Validates a parsed inventory (from YAML/JSON or built in TypeScript, e.g. by `flotilla
 * smoke` from what it provisioned) and fills in defaults. Throws `invalid-input` listing
 * every problem with its field path.
 */
export function resolveInventory(input: unknown, opts: ResolveInventoryOptions): Inventory {
  const c = new Checker();
  const readFile = opts.readFile ?? ((f: string) => fs.readFileSync(f, 'utf8'));
  const abs = (f: string): string => path.resolve(opts.baseDir, f);
  if (!c.obj(input, '')) throwIfProblems(c.problems, 'invalid inventory');
  const root = input as Obj;
  c.keys(root, '', FIELDS.root);
  const name = c.str(root, 'name', '', { required: true, pattern: DNS_LABEL, what: 'cluster name (lowercase letters, digits and "-")' }) ?? 'invalid';

  // ssh
  let user = 'core';
  let privateKey = '';
  let privateKeyFile: string | undefined;
  if (root.ssh === undefined) c.add('ssh', 'is required (ssh.privateKeyFile: the key the nodes accept)');
  else if (c.obj(root.ssh, 'ssh')) {
    c.keys(root.ssh, 'ssh', FIELDS.ssh);
    user = c.str(root.ssh, 'user', 'ssh', { pattern: USER, what: 'user name' }) ?? user;
    const inline = c.str(root.ssh, 'privateKey', 'ssh');
    const file = c.str(root.ssh, 'privateKeyFile', 'ssh');
    if (inline && file) c.add('ssh.privateKey', 'give privateKeyFile or privateKey, not both');
    else if (!inline && !file && root.ssh.privateKey === undefined && root.ssh.privateKeyFile === undefined) c.add('ssh.privateKeyFile', 'is required');
    if (file) {
      privateKeyFile = abs(file);
      try {
        privateKey = readFile(privateKeyFile);
      } catch (err) {
        c.add('ssh.privateKeyFile', `cannot read ${privateKeyFile}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
      }
    } else if (inline) privateKey = inline;
    if (privateKey && !/PRIVATE KEY-----/.test(privateKey)) c.add(file ? 'ssh.privateKeyFile' : 'ssh.privateKey', 'is not a private key (expected an "-----BEGIN OPENSSH PRIVATE KEY-----" block)');
  }

  // etcd (before nodes: endpoints depend on the scheme and port)
  let clientPort = 2379;
  let tls: TlsFiles | undefined;
  let nodeTls: TlsFiles | undefined;
  let access: 'direct' | 'tunnel' | undefined;
  let etcdctl = 'etcdctl';
  let endpointsIn: string[] | undefined;
  const tlsFiles = (v: unknown, p: string, resolve: boolean): TlsFiles | undefined => {
    if (!c.obj(v, p)) return undefined;
    c.keys(v, p, FIELDS.tls);
    const ca = c.str(v, 'caFile', p, { required: true });
    const cert = c.str(v, 'certFile', p);
    const key = c.str(v, 'keyFile', p);
    if ((cert === undefined) !== (key === undefined)) c.add(join(p, cert ? 'keyFile' : 'certFile'), 'certFile and keyFile go together');
    if (ca === undefined) return undefined;
    const r = (f: string): string => (resolve ? abs(f) : f);
    if (!resolve) for (const [k, f] of [['caFile', ca], ['certFile', cert], ['keyFile', key]] as const) if (f !== undefined && !f.startsWith('/')) c.add(join(p, k), 'must be an absolute path on the nodes');
    return { caFile: r(ca), ...(cert ? { certFile: r(cert) } : {}), ...(key ? { keyFile: r(key) } : {}) };
  };
  if (root.etcd !== undefined && c.obj(root.etcd, 'etcd')) {
    const e = root.etcd;
    c.keys(e, 'etcd', FIELDS.etcd);
    clientPort = c.int(e, 'clientPort', 'etcd', 1, 65535) ?? clientPort;
    if (e.tls !== undefined && e.tls !== null) tls = tlsFiles(e.tls, 'etcd.tls', true);
    if (e.nodeTls !== undefined) nodeTls = tlsFiles(e.nodeTls, 'etcd.nodeTls', false);
    const a = c.str(e, 'access', 'etcd');
    if (a !== undefined) {
      if (a === 'direct' || a === 'tunnel') access = a;
      else c.add('etcd.access', `must be one of direct, tunnel, got ${JSON.stringify(a)}`);
    }
    etcdctl = c.str(e, 'etcdctl', 'etcd') ?? etcdctl;
    const eps = c.list(e, 'endpoints', 'etcd');
    if (eps) {
      endpointsIn = [];
      eps.forEach((v, i) => {
        const p = `etcd.endpoints[${i}]`;
        if (typeof v !== 'string') c.add(p, `must be a string, got ${describe(v)}`);
        else if (c.url(v, p)) endpointsIn!.push(v.replace(/\/$/, ''));
      });
    }
  }
  const scheme = tls ? 'https' : 'http';
  if (tls && !tls.certFile) c.add('etcd.tls.certFile', 'is required: Flotilla etcd demands client certificates');
  endpointsIn?.forEach((ep, i) => {
    if (!ep.startsWith(`${scheme}://`)) c.add(`etcd.endpoints[${i}]`, tls ? 'must be https:// when etcd.tls is given' : 'is https://: give etcd.tls (caFile, certFile, keyFile)');
  });

  // nodes
  const nodes: InventoryNode[] = [];
  const nodesIn = c.list(root, 'nodes', '', true) ?? [];
  if (Array.isArray(root.nodes) && nodesIn.length === 0) c.add('nodes', 'must list at least one node');
  const seen = new Map<string, number>();
  nodesIn.forEach((raw, i) => {
    const p = `nodes[${i}]`;
    if (!c.obj(raw, p)) return;
    c.keys(raw, p, FIELDS.node);
    const nodeName = c.str(raw, 'name', p, { required: true, pattern: DNS_LABEL, what: 'node name (hostname label)' });
    if (nodeName !== undefined) {
      if (seen.has(nodeName)) c.add(`${p}.name`, `duplicate name ${JSON.stringify(nodeName)} (also nodes[${seen.get(nodeName)}])`);
      else seen.set(nodeName, i);
    }
    const address = c.str(raw, 'address', p, { required: true, pattern: HOST, what: 'address' });
    const hostKey = c.str(raw, 'hostKey', p, { required: true });
    if (hostKey !== undefined) {
      const why = checkAuthorizedKey(hostKey);
      if (why) c.add(`${p}.hostKey`, `not a pinnable host key: ${why}`);
    }
    let ssh: InventoryNode['ssh'] | undefined;
    if (raw.ssh === undefined) c.add(`${p}.ssh`, 'is required (host and port where the node answers SSH)');
    else if (c.obj(raw.ssh, `${p}.ssh`)) {
      const s = raw.ssh;
      c.keys(s, `${p}.ssh`, FIELDS.nodeSsh);
      const host = c.str(s, 'host', `${p}.ssh`, { pattern: HOST, what: 'host' }) ?? address;
      const port = c.int(s, 'port', `${p}.ssh`, 1, 65535) ?? 22;
      const u = c.str(s, 'user', `${p}.ssh`, { pattern: USER, what: 'user name' }) ?? user;
      const netns = c.str(s, 'netns', `${p}.ssh`, { pattern: NETNS, what: 'network namespace name' });
      if (host !== undefined) {
        ssh = { host, port, user: u, ...(netns ? { netns } : {}) };
      } else if (s.host === undefined && address === undefined) c.add(`${p}.ssh.host`, 'is required when address is not given');
    }
    let role: NodeRole = 'worker';
    const r = c.str(raw, 'role', p);
    if (r !== undefined) {
      if (r === 'controller' || r === 'worker') role = r;
      else c.add(`${p}.role`, `must be one of controller, worker, got ${JSON.stringify(r)}`);
    }
    const etcdMember = c.bool(raw, 'etcdMember', p) ?? role === 'controller';
    const metadata: Record<string, string> = {};
    if (raw.metadata !== undefined && c.obj(raw.metadata, `${p}.metadata`)) {
      for (const [k, v] of Object.entries(raw.metadata)) {
        const mp = join(`${p}.metadata`, k);
        if (!METADATA_KEY.test(k)) c.add(mp, 'metadata key must be letters, digits, "_", "." or "-"', true);
        else if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') c.add(mp, `must be a string, got ${describe(v)}`);
        else metadata[k] = String(v);
      }
    }
    const machineId = c.str(raw, 'machineId', p, { pattern: MACHINE_ID, what: 'machine ID' });
    let etcdEndpoint = `${scheme}://${address ?? 'invalid'}:${clientPort}`;
    const ep = c.str(raw, 'etcdEndpoint', p);
    if (ep !== undefined && c.url(ep, `${p}.etcdEndpoint`)) {
      etcdEndpoint = ep.replace(/\/$/, '');
      if (!etcdEndpoint.startsWith(`${scheme}://`)) c.add(`${p}.etcdEndpoint`, tls ? 'must be https:// when etcd.tls is given' : 'is https://: give etcd.tls');
    }
    const agent = { stopCommand: DEFAULT_AGENT_STOP, startCommand: DEFAULT_AGENT_START };
    if (raw.agent !== undefined && c.obj(raw.agent, `${p}.agent`)) {
      c.keys(raw.agent, `${p}.agent`, FIELDS.agent);
      agent.stopCommand = c.str(raw.agent, 'stopCommand', `${p}.agent`) ?? agent.stopCommand;
      agent.startCommand = c.str(raw.agent, 'startCommand', `${p}.agent`) ?? agent.startCommand;
    }
    if (nodeName && address && hostKey && ssh) {
      nodes.push({ name: nodeName, address, hostKey: hostKey.trim(), ssh, role, etcdMember, metadata, ...(machineId ? { machineId } : {}), etcdEndpoint, agent });
    }
  });
  const members = nodes.filter((n) => n.etcdMember);
  const endpoints = endpointsIn ?? members.map((n) => n.etcdEndpoint);
  if (nodesIn.length > 0 && endpoints.length === 0 && c.problems.length === 0) c.add('etcd.endpoints', 'no etcd endpoints: mark members (role: controller or etcdMember: true) or list etcd.endpoints');
  if (access === 'tunnel' && members.length === 0) c.add('etcd.access', 'tunnel needs etcd member nodes to tunnel through');

  // registry, discovery
  let keyPrefix = DNS_LABEL.test(name) ? registryPrefix(name) : clusterPrefix('invalid');
  if (root.registry !== undefined && c.obj(root.registry, 'registry')) {
    c.keys(root.registry, 'registry', FIELDS.registry);
    const kp = c.str(root.registry, 'keyPrefix', 'registry');
    if (kp !== undefined) {
      if (!kp.startsWith('/')) c.add('registry.keyPrefix', 'must start with "/"');
      else keyPrefix = kp.endsWith('/') ? kp : `${kp}/`;
    }
  }
  let discoveryPrefix = servicesPrefix(keyPrefix);
  const services: string[] = [];
  if (root.discovery !== undefined && c.obj(root.discovery, 'discovery')) {
    c.keys(root.discovery, 'discovery', FIELDS.discovery);
    const dp = c.str(root.discovery, 'prefix', 'discovery');
    if (dp !== undefined) {
      if (!dp.startsWith('/')) c.add('discovery.prefix', 'must start with "/"');
      else discoveryPrefix = dp.endsWith('/') ? dp : `${dp}/`;
    }
    (c.list(root.discovery, 'services', 'discovery') ?? []).forEach((s, i) => {
      if (typeof s !== 'string' || !/^[A-Za-z0-9_.@:-]{1,128}$/.test(s)) c.add(`discovery.services[${i}]`, `must be a service name (letters, digits, _.@:-), got ${describe(s)}`);
      else services.push(s);
    });
  }
  const spec = c.str(root, 'spec', '');
  const pace = c.str(root, 'pace', '');
  if (pace !== undefined && !(PACES as readonly string[]).includes(pace)) c.add('pace', `must be one of ${PACES.join(', ')}, got ${JSON.stringify(pace)}`);
  throwIfProblems(c.problems, `${opts.file ?? 'inventory'}: invalid inventory`);
  return {
    name,
    ...(opts.file ? { file: opts.file } : {}),
    ssh: { privateKey, ...(privateKeyFile ? { privateKeyFile } : {}) },
    nodes,
    etcd: {
      endpoints,
      clientPort,
      ...(tls ? { tls } : {}),
      ...(tls ? { nodeTls: nodeTls ?? { caFile: PKI.ca, certFile: PKI.clientCert, keyFile: PKI.clientKey } } : {}),
      access: access ?? (nodes.some((n) => n.ssh.netns) ? 'tunnel' : 'direct'),
      etcdctl,
    },
    keyPrefix,
    discovery: { prefix: discoveryPrefix, services },
    ...(spec ? { specFile: abs(spec) } : {}),
    ...(pace ? { pace: pace as Pace } : {}),
  };
}

/** Parses and validates inventory text (YAML or JSON); problems carry file, line and column. */
export function loadInventoryText(text: string, file: string): Inventory {
  const src = parseYamlSource(text, file);
  try {
    return resolveInventory(src.data, { baseDir: path.dirname(path.resolve(file)), file });
  } catch (err) {
    if (FlotillaError.is(err) && err.code === 'invalid-input' && err.problems.length > 0) {
      throwIfProblems(
        src.locate(err.problems).sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0)),
        `${file}: invalid inventory`,
      );
    }
    throw err;
  }
}

export function loadInventoryFile(file: string): Inventory {
  return loadInventoryText(readTextFile(file), file);
}

/** The node by name; `not-found` listing the names otherwise. */
export function inventoryNode(inv: Inventory, name: string): InventoryNode {
  const n = inv.nodes.find((x) => x.name === name);
  if (!n) throw new FlotillaError('not-found', `no node ${JSON.stringify(name)} in inventory ${inv.name} (nodes: ${inv.nodes.map((x) => x.name).join(', ')})`);
  return n;
}

// ---------------------------------------------------------------------------
// Where inventories come from: a file, or a provider that knows a cluster by name.

/** Returns the inventory of cluster `name`, or undefined if this provider does not know it. */
export type InventoryProvider = (name: string) => Promise<Inventory | undefined>;

const providers: Array<{ id: string; provider: InventoryProvider }> = [];

/**
 * Hook for `flotilla verify --cluster NAME` and `flotilla smoke`: a provisioner (local QEMU,
 * libvirt, AWS) registers a provider that builds an Inventory (via `resolveInventory`) from
 * its state. Registering the same id again replaces it.
 */
export function registerInventoryProvider(id: string, provider: InventoryProvider): void {
  const i = providers.findIndex((p) => p.id === id);
  if (i >= 0) providers.splice(i, 1);
  providers.push({ id, provider });
}

/** An inventory from `--inventory FILE` or, failing that, `--cluster NAME` through the providers. */
export async function findInventory(opts: { file?: string; cluster?: string }): Promise<Inventory> {
  if (opts.file) return loadInventoryFile(opts.file);
  if (opts.cluster) {
    for (const { provider } of providers) {
      const inv = await provider(opts.cluster);
      if (inv) return inv;
    }
    throw new FlotillaError('not-found', `no inventory for cluster ${opts.cluster}${providers.length ? ` (asked: ${providers.map((p) => p.id).join(', ')})` : ''}; pass --inventory FILE`);
  }
  const env = process.env.FLOTILLA_INVENTORY;
  if (env) return loadInventoryFile(env);
  throw new FlotillaError('usage', 'no inventory: pass --inventory FILE (or set FLOTILLA_INVENTORY)');
}
