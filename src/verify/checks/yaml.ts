/**
 * Custom checks as YAML resources, in the manner of Goss:
 *
 *   nodes: [core1, core2]                 # optional: where per-node resources run (default: all)
 *   file:
 *     /etc/flotilla/fleetd.json: {exists: true, mode: "0644", owner: root, contains: ['"cluster"', '/endpoints/']}
 *   service:
 *     flotilla-fleetd.service: {running: true, enabled: true}
 *   port:
 *     tcp:2379: {listening: true}
 *   command:
 *     etcdctl version: {exit-status: 0, stdout: ['/etcdctl version: 3\./'], timeout: 10000}
 *   http:
 *     http://127.0.0.1:8080/health: {status: 200, body: [ok]}
 *   etcd-key:
 *     /flotilla/demo/machines/: {exists: true, prefix: true}
 *
 * A pattern is a substring, or a regular expression written `/re/` (or `!text` / `!/re/` for
 * "must not contain"). Each resource may also name its own `nodes`. Per-node resources run
 * over the node's pooled SSH connection (http through a TCP channel from the node);
 * etcd-key runs once, from the host. Validation reports every problem with file and line.
 */
import * as http from 'node:http';
import { FlotillaError, throwIfProblems, type Problem } from '../../errors';
import { describe, join, nearest } from '../../config/validate';
import { parseYamlSource } from '../../config/yaml-source';
import { readTextFile } from '../../util/fs';
import type { VerifyCluster } from '../cluster';
import { shq } from '../../ssh';
import { CheckFailed, type Check, type CheckContext } from '../types';

export type Pattern = { kind: 'contains' | 'regex'; negate: boolean; text: string; re?: RegExp };

export type Resource =
  | { type: 'file'; key: string; nodes?: string[]; exists: boolean; mode?: number; owner?: string; contains: Pattern[] }
  | { type: 'service'; key: string; nodes?: string[]; running?: boolean; enabled?: boolean }
  | { type: 'port'; key: string; nodes?: string[]; proto: 'tcp' | 'udp'; port: number; listening: boolean }
  | { type: 'command'; key: string; nodes?: string[]; exitStatus: number; stdout: Pattern[]; stderr: Pattern[]; timeoutMs?: number; sudo: boolean }
  | { type: 'http'; key: string; nodes?: string[]; url: URL; status: number; body: Pattern[]; timeoutMs?: number }
  | { type: 'etcd-key'; key: string; exists: boolean; value?: string; contains: Pattern[]; prefix: boolean };

export interface CheckFile {
  file: string;
  nodes?: string[];
  resources: Resource[];
}

const TYPES = ['file', 'service', 'port', 'command', 'http', 'etcd-key'] as const;
const FIELDS: Record<(typeof TYPES)[number], readonly string[]> = {
  file: ['exists', 'mode', 'owner', 'contains', 'nodes'],
  service: ['running', 'enabled', 'nodes'],
  port: ['listening', 'nodes'],
  command: ['exit-status', 'stdout', 'stderr', 'timeout', 'sudo', 'nodes'],
  http: ['status', 'body', 'timeout', 'nodes'],
  'etcd-key': ['exists', 'value', 'contains', 'prefix'],
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function parsePattern(s: string): Pattern {
  const negate = s.startsWith('!');
  const body = negate ? s.slice(1) : s;
  const m = /^\/(.*)\/([imsu]*)$/s.exec(body);
  if (m) return { kind: 'regex', negate, text: body, re: new RegExp(m[1]!, m[2]) };
  return { kind: 'contains', negate, text: body };
}

/** Patterns that do not hold for `text`, described. */
export function unmatched(patterns: readonly Pattern[], text: string): string[] {
  return patterns
    .filter((p) => {
      const hit = p.kind === 'regex' ? p.re!.test(text) : text.includes(p.text);
      return hit === p.negate;
    })
    .map((p) => `${p.negate ? 'contains' : 'lacks'} ${p.kind === 'regex' ? p.text : JSON.stringify(p.text)}`);
}

/** Validates a parsed check document; every problem carries its field path. */
export function resolveChecks(data: unknown, file: string, knownNodes?: readonly string[]): CheckFile {
  const problems: Problem[] = [];
  const add = (path: string, message: string, atKey = false): void => void problems.push({ path, message, ...(atKey ? { atKey } : {}) });
  const resources: Resource[] = [];
  let nodes: string[] | undefined;
  const nodeList = (v: unknown, p: string): string[] | undefined => {
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
      add(p, `must be a list of node names, got ${describe(v)}`);
      return undefined;
    }
    const unknown = knownNodes ? (v as string[]).filter((n) => !knownNodes.includes(n)) : [];
    if (unknown.length) add(p, `unknown node${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (inventory has ${knownNodes!.join(', ')})`);
    return v as string[];
  };
  if (!isObj(data)) {
    add('', `must be a mapping of resource types (${TYPES.join(', ')}), got ${describe(data)}`);
    throwIfProblems(problems, `${file}: invalid checks`);
  }
  const root = data as Obj;
  for (const [type, group] of Object.entries(root)) {
    if (type === 'nodes') {
      nodes = nodeList(group, 'nodes');
      continue;
    }
    if (!(TYPES as readonly string[]).includes(type)) {
      const near = nearest(type, [...TYPES, 'nodes']);
      add(join('', type), `unknown resource type${near ? ` (did you mean "${near}"?)` : `; known: ${TYPES.join(', ')}`}`, true);
      continue;
    }
    const t = type as (typeof TYPES)[number];
    if (!isObj(group)) {
      add(type, `must be a mapping of ${t} names to expectations, got ${describe(group)}`);
      continue;
    }
    for (const [key, spec] of Object.entries(group)) {
      const p = join(type, key);
      if (!isObj(spec)) {
        add(p, `must be a mapping of expectations, got ${describe(spec)}`);
        continue;
      }
      for (const k of Object.keys(spec)) {
        if (!FIELDS[t].includes(k)) {
          const near = nearest(k, FIELDS[t]);
          add(join(p, k), `unknown field for ${t}${near ? ` (did you mean "${near}"?)` : `; known: ${FIELDS[t].join(', ')}`}`, true);
        }
      }
      const bool = (k: string, dflt?: boolean): boolean | undefined => {
        const v = spec[k];
        if (v === undefined) return dflt;
        if (typeof v !== 'boolean') add(join(p, k), `must be true or false, got ${describe(v)}`);
        return typeof v === 'boolean' ? v : dflt;
      };
      const int = (k: string, min: number, max: number): number | undefined => {
        const v = spec[k];
        if (v === undefined) return undefined;
        if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
          add(join(p, k), `must be a whole number from ${min} to ${max}, got ${describe(v)}`);
          return undefined;
        }
        return v;
      };
      const patterns = (k: string): Pattern[] => {
        const v = spec[k];
        if (v === undefined) return [];
        const list = typeof v === 'string' ? [v] : v;
        if (!Array.isArray(list) || list.some((x) => typeof x !== 'string')) {
          add(join(p, k), `must be a list of strings or /regex/, got ${describe(v)}`);
          return [];
        }
        const out: Pattern[] = [];
        (list as string[]).forEach((s, i) => {
          try {
            out.push(parsePattern(s));
          } catch (err) {
            add(`${join(p, k)}[${i}]`, `invalid regular expression: ${(err as Error).message}`);
          }
        });
        return out;
      };
      const ns = spec.nodes !== undefined ? nodeList(spec.nodes, join(p, 'nodes')) : undefined;
      const withNodes = ns ? { nodes: ns } : {};
      switch (t) {
        case 'file': {
          if (!key.startsWith('/')) add(p, 'file path must be absolute', true);
          let mode: number | undefined;
          const m = spec.mode;
          if (m !== undefined) {
            if (typeof m === 'string' && /^0?[0-7]{3,4}$/.test(m)) mode = parseInt(m, 8);
            else add(join(p, 'mode'), `must be an octal string such as "0644", got ${describe(m)}`);
          }
          const owner = spec.owner;
          if (owner !== undefined && (typeof owner !== 'string' || !/^[a-z_][a-z0-9_-]*$/.test(owner))) add(join(p, 'owner'), `must be a user name, got ${describe(owner)}`);
          resources.push({ type: 'file', key, ...withNodes, exists: bool('exists', true)!, ...(mode !== undefined ? { mode } : {}), ...(typeof owner === 'string' ? { owner } : {}), contains: patterns('contains') });
          break;
        }
        case 'service': {
          if (!/^[A-Za-z0-9:_.@\\-]+$/.test(key)) add(p, 'not a systemd unit name', true);
          const running = bool('running');
          const enabled = bool('enabled');
          if (running === undefined && enabled === undefined) add(p, 'give running and/or enabled');
          resources.push({ type: 'service', key, ...withNodes, ...(running !== undefined ? { running } : {}), ...(enabled !== undefined ? { enabled } : {}) });
          break;
        }
        case 'port': {
          const m = /^(?:(tcp|udp)6?:)?(\d{1,5})$/.exec(key);
          if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) add(p, 'must look like tcp:2379, udp:53 or 2379', true);
          resources.push({ type: 'port', key, ...withNodes, proto: (m?.[1] as 'tcp' | 'udp' | undefined) ?? 'tcp', port: Number(m?.[2] ?? 0), listening: bool('listening', true)! });
          break;
        }
        case 'command': {
          const exitStatus = int('exit-status', 0, 255) ?? 0;
          const timeout = int('timeout', 1, 3_600_000);
          resources.push({ type: 'command', key, ...withNodes, exitStatus, stdout: patterns('stdout'), stderr: patterns('stderr'), ...(timeout !== undefined ? { timeoutMs: timeout } : {}), sudo: bool('sudo', false)! });
          break;
        }
        case 'http': {
          let url: URL | undefined;
          try {
            url = new URL(key);
            if (url.protocol !== 'http:') throw new Error('only http:// (probed from the node)');
          } catch (err) {
            add(p, `not an http:// URL: ${(err as Error).message}`, true);
          }
          const status = int('status', 100, 599) ?? 200;
          const timeout = int('timeout', 1, 3_600_000);
          if (url) resources.push({ type: 'http', key, ...withNodes, url, status, body: patterns('body'), ...(timeout !== undefined ? { timeoutMs: timeout } : {}) });
          break;
        }
        case 'etcd-key': {
          if (!key.startsWith('/')) add(p, 'etcd key must start with "/"', true);
          if (spec.nodes !== undefined) break;
          const value = spec.value;
          if (value !== undefined && typeof value !== 'string') add(join(p, 'value'), `must be a string, got ${describe(value)}`);
          resources.push({ type: 'etcd-key', key, exists: bool('exists', true)!, ...(typeof value === 'string' ? { value } : {}), contains: patterns('contains'), prefix: bool('prefix', false)! });
          break;
        }
      }
    }
  }
  throwIfProblems(problems, `${file}: invalid checks`);
  return { file, ...(nodes ? { nodes } : {}), resources };
}

/** Parses and validates a checks file; problems carry file, line and column. */
export function loadChecksText(text: string, file: string, knownNodes?: readonly string[]): CheckFile {
  const src = parseYamlSource(text, file);
  try {
    return resolveChecks(src.data, file, knownNodes);
  } catch (err) {
    if (FlotillaError.is(err) && err.code === 'invalid-input' && err.problems.length > 0) {
      throwIfProblems(src.locate(err.problems).sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0)), `${file}: invalid checks`);
    }
    throw err;
  }
}

export function loadChecksFile(file: string, knownNodes?: readonly string[]): CheckFile {
  return loadChecksText(readTextFile(file), file, knownNodes);
}

// ---------------------------------------------------------------------------
// Running

async function fileCheck(ctx: CheckContext, r: Extract<Resource, { type: 'file' }>): Promise<string> {
  const st = await ctx.exec(`stat -c '%a %U' -- ${shq(r.key)}`, { sudo: true });
  if (!r.exists) {
    if (st.code === 0) throw new CheckFailed(`${r.key} exists`);
    return `${r.key} absent`;
  }
  if (st.code !== 0) throw new CheckFailed(`${r.key}: ${st.stderr.trim().replace(/^stat: /, '') || 'does not exist'}`);
  const [mode, owner] = st.stdout.trim().split(' ');
  const problems: string[] = [];
  if (r.mode !== undefined && parseInt(mode!, 8) !== r.mode) problems.push(`mode is ${mode!.padStart(4, '0')}, want ${r.mode.toString(8).padStart(4, '0')}`);
  if (r.owner !== undefined && owner !== r.owner) problems.push(`owner is ${owner}, want ${r.owner}`);
  if (r.contains.length) {
    const body = await ctx.exec(`cat -- ${shq(r.key)}`, { sudo: true });
    if (body.code !== 0) problems.push(`cannot read: ${body.stderr.trim()}`);
    else problems.push(...unmatched(r.contains, body.stdout));
  }
  if (problems.length) throw new CheckFailed(`${r.key}: ${problems.join('; ')}`);
  return `${r.key} ok`;
}

async function serviceCheck(ctx: CheckContext, r: Extract<Resource, { type: 'service' }>): Promise<string> {
  const [a, e] = await Promise.all([ctx.exec(`systemctl is-active ${shq(r.key)}`), ctx.exec(`systemctl is-enabled ${shq(r.key)}`)]);
  const active = a.stdout.trim() || a.stderr.trim();
  const enabled = e.stdout.trim() || e.stderr.trim();
  const problems: string[] = [];
  if (r.running !== undefined && (active === 'active') !== r.running) problems.push(`is ${active}, want ${r.running ? 'active' : 'not running'}`);
  if (r.enabled !== undefined && (enabled === 'enabled' || enabled === 'static' || enabled === 'alias') !== r.enabled) problems.push(`is ${enabled}, want ${r.enabled ? 'enabled' : 'disabled'}`);
  if (problems.length) throw new CheckFailed(`${r.key} ${problems.join(' and ')}`, active === 'failed' ? { failedUnits: [{ node: ctx.node!.name, unit: r.key }] } : undefined);
  return `${r.key} ${active}, ${enabled}`;
}

/** Listening sockets from /proc/net (no ss/netstat needed on the node). */
async function portCheck(ctx: CheckContext, r: Extract<Resource, { type: 'port' }>): Promise<string> {
  const files = r.proto === 'tcp' ? '/proc/net/tcp /proc/net/tcp6' : '/proc/net/udp /proc/net/udp6';
  const out = await ctx.exec(`cat ${files} 2>/dev/null`);
  const hex = r.port.toString(16).toUpperCase().padStart(4, '0');
  // TCP state 0A is LISTEN; UDP sockets are "listening" when bound (state 07).
  const want = r.proto === 'tcp' ? '0A' : '07';
  const listening = out.stdout.split('\n').some((l) => {
    const f = l.trim().split(/\s+/);
    return f[1]?.endsWith(`:${hex}`) && f[3] === want;
  });
  if (listening !== r.listening) throw new CheckFailed(`${r.proto}:${r.port} is ${listening ? '' : 'not '}listening`);
  return `${r.proto}:${r.port} ${listening ? 'listening' : 'not listening'}`;
}

async function commandCheck(ctx: CheckContext, r: Extract<Resource, { type: 'command' }>): Promise<string> {
  const res = await ctx.exec(r.key, { sudo: r.sudo, ...(r.timeoutMs ? { timeoutMs: r.timeoutMs } : {}) });
  const problems: string[] = [];
  if (res.code !== r.exitStatus) problems.push(`exit status ${res.code ?? `signal ${res.signal}`}, want ${r.exitStatus}`);
  problems.push(...unmatched(r.stdout, res.stdout).map((x) => `stdout ${x}`), ...unmatched(r.stderr, res.stderr).map((x) => `stderr ${x}`));
  if (problems.length) throw new CheckFailed(`\`${r.key}\`: ${problems.join('; ')}${res.stderr.trim() ? ` (stderr: ${res.stderr.trim().slice(0, 200)})` : ''}`);
  return `exit ${res.code} in ${res.ms} ms`;
}

async function httpCheck(ctx: CheckContext, r: Extract<Resource, { type: 'http' }>): Promise<string> {
  const port = Number(r.url.port || 80);
  const timeout = r.timeoutMs ?? Math.max(500, ctx.deadline - Date.now());
  const ch = await ctx.conn().connectTcp(r.url.hostname, port, timeout);
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: r.url.hostname, port, path: `${r.url.pathname}${r.url.search}`, method: 'GET', createConnection: () => ch as never, timeout, headers: { connection: 'close' } }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        if (size < 4 * 1024 * 1024) chunks.push(d);
        size += d.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeout} ms`)));
    req.on('error', reject);
    req.end();
  }).finally(() => ch.close());
  const problems: string[] = [];
  if (status !== r.status) problems.push(`status ${status}, want ${r.status}`);
  problems.push(...unmatched(r.body, body).map((x) => `body ${x}`));
  if (problems.length) throw new CheckFailed(`GET ${r.key}: ${problems.join('; ')}`);
  return `GET ${r.key}: ${status}`;
}

async function etcdKeyCheck(cluster: VerifyCluster, r: Extract<Resource, { type: 'etcd-key' }>): Promise<string> {
  const etcd = await cluster.etcd();
  if (r.prefix) {
    const n = await etcd.getAll().prefix(r.key).count();
    if ((n > 0) !== r.exists) throw new CheckFailed(`${n} keys under ${r.key}, want ${r.exists ? 'some' : 'none'}`);
    return `${n} keys under ${r.key}`;
  }
  const v = await etcd.get(r.key).string();
  if (v === null) {
    if (r.exists) throw new CheckFailed(`${r.key} does not exist`);
    return `${r.key} absent`;
  }
  if (!r.exists) throw new CheckFailed(`${r.key} exists`);
  const problems: string[] = [];
  if (r.value !== undefined && v !== r.value) problems.push(`value ${JSON.stringify(v.slice(0, 200))}, want ${JSON.stringify(r.value)}`);
  problems.push(...unmatched(r.contains, v).map((x) => `value ${x}`));
  if (problems.length) throw new CheckFailed(`${r.key}: ${problems.join('; ')}`);
  return `${r.key} ok`;
}

/** Checks for a loaded file: one per resource and node (etcd-key: one per resource). */
export function checksFromFile(cf: CheckFile, cluster: VerifyCluster): Check[] {
  const checks: Check[] = [];
  const suite = 'custom';
  for (const r of cf.resources) {
    const id = `${r.type}:${r.key}`;
    if (r.type === 'etcd-key') {
      checks.push({ suite, id, name: id, run: () => etcdKeyCheck(cluster, r) });
      continue;
    }
    const nodes = r.nodes ?? cf.nodes ?? cluster.nodes.map((n) => n.name);
    for (const node of nodes) {
      const run = (ctx: CheckContext): Promise<string> => {
        switch (r.type) {
          case 'file':
            return fileCheck(ctx, r);
          case 'service':
            return serviceCheck(ctx, r);
          case 'port':
            return portCheck(ctx, r);
          case 'command':
            return commandCheck(ctx, r);
          case 'http':
            return httpCheck(ctx, r);
        }
      };
      checks.push({ suite, id, name: id, node, ...(r.type === 'command' && r.timeoutMs ? { timeoutMs: r.timeoutMs + 1000 } : {}), run });
    }
  }
  return checks;
}
