/**
 * Service discovery's key layout in etcd: the only place these keys are built or parsed.
 *
 *   <services prefix><service>/<instance>   e.g. /flotilla/demo/services/web/3f9c…  (value: endpoint.ts)
 *
 * The services prefix of a cluster is `<registry prefix>services/`, i.e.
 * `/flotilla/<cluster>/services/`; the fleet registry (src/units/registry.ts) never uses it.
 */
import { FlotillaError } from '../errors';

/** Service and instance names: no '/', so a key splits unambiguously (as verify's inventory expects of service names). */
export const NAME_PATTERN = /^[A-Za-z0-9_.@:-]{1,128}$/;

/** The services prefix under a registry key prefix (`/flotilla/<cluster>/` → `/flotilla/<cluster>/services/`). */
export function servicesPrefix(registryPrefix: string): string {
  return `${registryPrefix.endsWith('/') ? registryPrefix : `${registryPrefix}/`}services/`;
}

/** Why `value` is not a service or instance name, or undefined when it is one. */
export function nameProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || !NAME_PATTERN.test(value) || value === '.' || value === '..') {
    return `${JSON.stringify(value)} is not a name: use 1-128 letters, digits and _.@:-`;
  }
  return undefined;
}

/** Throws `usage`/`invalid-input` naming `what` (e.g. `SERVICE`, `--instance`) when `value` is not a name. */
export function checkName(what: string, value: string, code: 'usage' | 'invalid-input' = 'invalid-input'): string {
  const problem = nameProblem(value);
  if (problem) throw new FlotillaError(code, `${what}: ${problem}`);
  return value;
}

/** `<prefix><service>/`: every instance of one service. */
export function serviceKeyPrefix(prefix: string, service: string): string {
  return `${prefix}${checkName('service', service)}/`;
}

/** `<prefix><service>/<instance>`. */
export function instanceKey(prefix: string, service: string, instance: string): string {
  return `${serviceKeyPrefix(prefix, service)}${checkName('instance', instance)}`;
}

/** Splits a key under `prefix` into service and instance, or says why it is not an instance key. */
export function parseInstanceKey(prefix: string, key: string): { service: string; instance: string } | { problem: string } {
  if (!key.startsWith(prefix)) return { problem: `not under ${prefix}` };
  const rest = key.slice(prefix.length).split('/');
  if (rest.length !== 2 || nameProblem(rest[0]) || nameProblem(rest[1])) return { problem: 'not <prefix><service>/<instance> (names: letters, digits, _.@:-)' };
  return { service: rest[0]!, instance: rest[1]! };
}
