/**
 * The value of an announcement: where one instance of a service answers, as JSON.
 *
 *   {"host": "10.99.0.12", "port": 8080, "protocol": "http", "path": "/health"}
 *
 * `protocol` is `tcp` (default: a connection is accepted) or `http` (GET `path`, default `/`);
 * `path` belongs to http only. Unknown fields are refused, so a misspelt field is an error
 * rather than a silently ignored one.
 */
import { isIP } from 'node:net';
import { FlotillaError } from '../errors';
import { parseInstanceKey } from './keys';

export const PROTOCOLS = ['tcp', 'http'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export interface Endpoint {
  host: string;
  port: number;
  protocol: Protocol;
  /** Request path for http; `/` for tcp. */
  path: string;
}

/** One announced instance of a service. */
export interface ServiceInstance extends Endpoint {
  service: string;
  instance: string;
}

/** An instance as read from etcd: with its key, lease (decimal ID, '0' for none) and revision. */
export interface AnnouncedInstance extends ServiceInstance {
  key: string;
  lease: string;
  modRevision: string;
}

const FIELDS = ['host', 'port', 'protocol', 'path'] as const;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;
const PATH = /^\/[\x21-\x7e]{0,1023}$/;

/** One problem per bad field (`field: message`); empty when `value` is a valid endpoint. */
export function endpointProblems(value: unknown): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return ['value: want a JSON object {"host", "port", "protocol"?, "path"?}'];
  const v = value as Record<string, unknown>;
  const problems: string[] = [];
  for (const k of Object.keys(v)) if (!(FIELDS as readonly string[]).includes(k)) problems.push(`${k}: unknown field (fields: ${FIELDS.join(', ')})`);
  if (typeof v.host !== 'string' || !(isIP(v.host) || HOSTNAME.test(v.host))) problems.push(`host: want an IP address or host name, got ${JSON.stringify(v.host)}`);
  if (typeof v.port !== 'number' || !Number.isInteger(v.port) || v.port < 1 || v.port > 65535) problems.push(`port: want a whole number from 1 to 65535, got ${JSON.stringify(v.port)}`);
  const protocol = v.protocol ?? 'tcp';
  if (!(PROTOCOLS as readonly unknown[]).includes(protocol)) problems.push(`protocol: want ${PROTOCOLS.join(' or ')}, got ${JSON.stringify(v.protocol)}`);
  if (v.path !== undefined) {
    if (typeof v.path !== 'string' || !PATH.test(v.path)) problems.push(`path: want an absolute request path such as /health (no spaces), got ${JSON.stringify(v.path)}`);
    else if (protocol !== 'http') problems.push('path: only with protocol http');
  }
  return problems;
}

/** A valid endpoint from loose input (defaults filled in); throws `invalid-input` listing every bad field. */
export function checkEndpoint(input: { host: unknown; port: unknown; protocol?: unknown; path?: unknown }, what: string): Endpoint {
  const given = Object.fromEntries(Object.entries(input).filter(([, x]) => x !== undefined));
  const problems = endpointProblems(given);
  if (problems.length) throw new FlotillaError('invalid-input', `${what}: ${problems.join('; ')}`);
  const protocol = (input.protocol ?? 'tcp') as Protocol;
  return { host: input.host as string, port: input.port as number, protocol, path: protocol === 'http' ? ((input.path as string | undefined) ?? '/') : '/' };
}

/** The JSON stored in etcd (no `path` for tcp). */
export function encodeEndpoint(ep: Endpoint): string {
  return JSON.stringify({ host: ep.host, port: ep.port, protocol: ep.protocol, ...(ep.protocol === 'http' ? { path: ep.path } : {}) });
}

/** Parses a stored value; problems name the field. */
export function decodeEndpoint(raw: string): { endpoint: Endpoint } | { problems: string[] } {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return { problems: [`value is not a JSON object: ${raw.slice(0, 80)}`] };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { problems: [`value is not a JSON object: ${raw.slice(0, 80)}`] };
  const problems = endpointProblems(v);
  if (problems.length) return { problems };
  const o = v as { host: string; port: number; protocol?: Protocol; path?: string };
  const protocol = o.protocol ?? 'tcp';
  return { endpoint: { host: o.host, port: o.port, protocol, path: protocol === 'http' ? (o.path ?? '/') : '/' } };
}

/** `tcp://host:port` or `http://host:port/path` (IPv6 hosts bracketed). */
export function endpointUrl(ep: Endpoint): string {
  const host = isIP(ep.host) === 6 ? `[${ep.host}]` : ep.host;
  return ep.protocol === 'http' ? `http://${host}:${ep.port}${ep.path}` : `tcp://${host}:${ep.port}`;
}

export interface RawKv {
  key: string;
  value: string;
  lease?: string;
  modRevision?: string;
}

/**
 * Parses the keys and values under `prefix` (`key → value`, or key-values with lease and
 * revision as read from etcd). Malformed entries become problems naming the key (and field);
 * instances come back sorted by service, then instance.
 */
export function parseAnnouncements(prefix: string, kvs: Record<string, string> | readonly RawKv[]): { instances: AnnouncedInstance[]; problems: string[] } {
  const list: readonly RawKv[] = Array.isArray(kvs) ? kvs : Object.entries(kvs as Record<string, string>).map(([key, value]) => ({ key, value }));
  const instances: AnnouncedInstance[] = [];
  const problems: string[] = [];
  for (const kv of list) {
    const name = parseInstanceKey(prefix, kv.key);
    if ('problem' in name) {
      problems.push(`${kv.key}: ${name.problem}`);
      continue;
    }
    const decoded = decodeEndpoint(kv.value);
    if ('problems' in decoded) {
      problems.push(...decoded.problems.map((p) => `${kv.key}: ${p}`));
      continue;
    }
    instances.push({ ...name, ...decoded.endpoint, key: kv.key, lease: kv.lease ?? '0', modRevision: kv.modRevision ?? '0' });
  }
  instances.sort((a, b) => (a.service === b.service ? (a.instance < b.instance ? -1 : 1) : a.service < b.service ? -1 : 1));
  return { instances, problems };
}
