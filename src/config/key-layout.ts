/**
 * Flotilla's etcd key layout: the one module that builds or parses an etcd key
 * (docs/registry.md, "Key layout").
 *
 *   /flotilla/<cluster>/                     a cluster's registry prefix P (or a custom one)
 *   P units/{bodies,refs,jobs}/…, machines/…, schedule/…, states/…, placement/…,
 *   P health/…, rollouts/…, rollout-locks/…, engine/leader    the fleet registry (src/units/registry/)
 *   P services/<service>/<instance>          service discovery (src/discovery/)
 *
 * It lives in config, the lowest layer above util/errors, and imports nothing but
 * src/errors.ts: the spec validator (./validate.ts, whose `agent.keyPrefix` defaults to
 * `clusterPrefix(name)`), the registry and discovery (units, discovery) and the
 * provisioners all take their prefixes from here, and every import points down.
 *
 * Names that go into keys never contain '/', so every key parses unambiguously, and prefix
 * reads always end in '/', so machine `m1` never sees machine `m10`'s keys.
 */
import { FlotillaError } from '../errors';

// ---------------------------------------------------------------------------
// Prefixes

/** The root under which every cluster's default prefix lives. */
const ROOT = '/flotilla/';

const CLUSTER_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * `/flotilla/<cluster>/`, unchecked: for callers that have validated (or reported) the
 * name already, such as the spec validator, which collects problems rather than throwing.
 */
export function clusterPrefix(cluster: string): string {
  return `${ROOT}${cluster}/`;
}

/** The default key prefix for a cluster; 'invalid-input' unless the name is `[a-z0-9][a-z0-9-]*`. */
export function registryPrefix(cluster: string): string {
  if (!CLUSTER_NAME.test(cluster)) throw new FlotillaError('invalid-input', `invalid cluster name ${JSON.stringify(cluster)}: use lowercase letters, digits and '-'`);
  return clusterPrefix(cluster);
}

/**
 * The registry prefix for a connection: a custom `prefix` (must start with '/'; a missing
 * trailing '/' is added) or the default for `cluster`.
 */
export function resolvePrefix(opts: { prefix?: string; cluster?: string }): string {
  if (opts.prefix !== undefined) {
    const prefix = opts.prefix.endsWith('/') ? opts.prefix : `${opts.prefix}/`;
    if (!prefix.startsWith('/') || prefix.includes('//') || /\s/.test(prefix)) throw new FlotillaError('invalid-input', `registry: bad key prefix ${JSON.stringify(opts.prefix)}`);
    return prefix;
  }
  if (opts.cluster !== undefined) return registryPrefix(opts.cluster);
  throw new FlotillaError('invalid-input', 'registry: give a cluster name or a key prefix');
}

// ---------------------------------------------------------------------------
// The fleet registry's keys

const UNIT_NAME = /^[A-Za-z0-9:_.@\\-]{1,255}$/;
const MACHINE_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const HASH = /^[0-9a-f]{64}$/;

/** Checks a unit name or machine ID before it goes into a key; 'invalid-input' if it would not parse back. */
export function checkRegistryName(kind: 'unit name' | 'machine ID', value: unknown): string {
  const re = kind === 'unit name' ? UNIT_NAME : MACHINE_ID;
  if (typeof value !== 'string' || !re.test(value) || value === '.' || value === '..') {
    throw new FlotillaError('invalid-input', `invalid ${kind} ${JSON.stringify(value)}: use letters, digits and ${kind === 'unit name' ? ':_.@\\-' : '_.:-'}`);
  }
  return value;
}

/** Checks a unit content hash (sha256, lowercase hex), as used in `units/bodies/` and `units/refs/`. */
export function checkHash(value: unknown): string {
  if (typeof value !== 'string' || !HASH.test(value)) throw new FlotillaError('invalid-input', `invalid unit hash ${JSON.stringify(value)}: want 64 lowercase hex digits`);
  return value;
}

/** What a key under the registry prefix is. */
export type ParsedKey =
  | { kind: 'job'; unit: string }
  | { kind: 'machine'; machineId: string }
  | { kind: 'schedule'; machineId: string; unit: string }
  | { kind: 'state'; machineId: string; unit: string }
  | { kind: 'placement'; unit: string }
  | { kind: 'health'; unit: string; machineId: string }
  | { kind: 'rollout'; unit: string }
  | { kind: 'body' | 'ref' | 'leader' | 'rollout-lock' | 'unknown' };

/** Every key (and key prefix) of the fleet registry under `prefix`, and the parser for them. */
export function registryKeys(prefix: string) {
  const p = prefix;
  return {
    root: p,
    bodies: `${p}units/bodies/`,
    body: (hash: string) => `${p}units/bodies/${hash}`,
    /** One key per unit using a body; the body may go once none is left. */
    refs: (hash: string) => `${p}units/refs/${hash}/`,
    ref: (hash: string, unit: string) => `${p}units/refs/${hash}/${unit}`,
    jobs: `${p}units/jobs/`,
    job: (unit: string) => `${p}units/jobs/${unit}`,
    machines: `${p}machines/`,
    machine: (id: string) => `${p}machines/${id}`,
    schedule: `${p}schedule/`,
    scheduleOf: (machineId: string) => `${p}schedule/${machineId}/`,
    assignment: (machineId: string, unit: string) => `${p}schedule/${machineId}/${unit}`,
    states: `${p}states/`,
    statesOf: (machineId: string) => `${p}states/${machineId}/`,
    state: (machineId: string, unit: string) => `${p}states/${machineId}/${unit}`,
    placements: `${p}placement/`,
    placement: (unit: string) => `${p}placement/${unit}`,
    healthAll: `${p}health/`,
    healthOf: (unit: string) => `${p}health/${unit}/`,
    health: (unit: string, machineId: string) => `${p}health/${unit}/${machineId}`,
    rollouts: `${p}rollouts/`,
    rollout: (unit: string) => `${p}rollouts/${unit}`,
    /** Held under the driving client's lease: one driver per rollout. */
    rolloutLock: (unit: string) => `${p}rollout-locks/${unit}`,
    leader: `${p}engine/leader`,
    /** The last path segment of a key under `base`. */
    tail: (key: string, base: string) => key.slice(base.length),
    parse(key: string): ParsedKey {
      if (!key.startsWith(p)) return { kind: 'unknown' };
      const parts = key.slice(p.length).split('/');
      const [a, b, c, d] = parts;
      if (a === 'units' && b === 'jobs' && c && parts.length === 3) return { kind: 'job', unit: c };
      if (a === 'units' && b === 'bodies') return { kind: 'body' };
      if (a === 'units' && b === 'refs') return { kind: 'ref' };
      if (a === 'machines' && b && parts.length === 2) return { kind: 'machine', machineId: b };
      if (a === 'schedule' && b && c && parts.length === 3) return { kind: 'schedule', machineId: b, unit: c };
      if (a === 'states' && b && c && parts.length === 3) return { kind: 'state', machineId: b, unit: c };
      if (a === 'placement' && b && parts.length === 2) return { kind: 'placement', unit: b };
      if (a === 'health' && b && c && parts.length === 3) return { kind: 'health', unit: b, machineId: c };
      if (a === 'rollouts' && b && parts.length === 2) return { kind: 'rollout', unit: b };
      if (a === 'rollout-locks') return { kind: 'rollout-lock' };
      if (a === 'engine' && b === 'leader' && d === undefined) return { kind: 'leader' };
      return { kind: 'unknown' };
    },
  };
}
export type RegistryKeys = ReturnType<typeof registryKeys>;

// ---------------------------------------------------------------------------
// Service discovery's keys: <services prefix><service>/<instance> (value: src/discovery/endpoint.ts)

/** Service and instance names: no '/', so a key splits unambiguously (as verify's inventory expects of service names). */
export const SERVICE_NAME_PATTERN = /^[A-Za-z0-9_.@:-]{1,128}$/;

/** The services prefix under a registry key prefix (`/flotilla/<cluster>/` → `/flotilla/<cluster>/services/`). */
export function servicesPrefix(registryPrefix: string): string {
  return `${registryPrefix.endsWith('/') ? registryPrefix : `${registryPrefix}/`}services/`;
}

/** Why `value` is not a service or instance name, or undefined when it is one. */
export function serviceNameProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || !SERVICE_NAME_PATTERN.test(value) || value === '.' || value === '..') {
    return `${JSON.stringify(value)} is not a name: use 1-128 letters, digits and _.@:-`;
  }
  return undefined;
}

/** Throws `usage`/`invalid-input` naming `what` (e.g. `SERVICE`, `--instance`) when `value` is not a service or instance name. */
export function checkServiceName(what: string, value: string, code: 'usage' | 'invalid-input' = 'invalid-input'): string {
  const problem = serviceNameProblem(value);
  if (problem) throw new FlotillaError(code, `${what}: ${problem}`);
  return value;
}

/** `<prefix><service>/`: every instance of one service. */
export function serviceKeyPrefix(prefix: string, service: string): string {
  return `${prefix}${checkServiceName('service', service)}/`;
}

/** `<prefix><service>/<instance>`. */
export function instanceKey(prefix: string, service: string, instance: string): string {
  return `${serviceKeyPrefix(prefix, service)}${checkServiceName('instance', instance)}`;
}

/** Splits a key under `prefix` into service and instance, or says why it is not an instance key. */
export function parseInstanceKey(prefix: string, key: string): { service: string; instance: string } | { problem: string } {
  if (!key.startsWith(prefix)) return { problem: `not under ${prefix}` };
  const rest = key.slice(prefix.length).split('/');
  if (rest.length !== 2 || serviceNameProblem(rest[0]) || serviceNameProblem(rest[1])) return { problem: 'not <prefix><service>/<instance> (names: letters, digits, _.@:-)' };
  return { service: rest[0]!, instance: rest[1]! };
}
