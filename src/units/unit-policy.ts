/**
 * What a unit asks of the scheduler beyond fleet's [X-Fleet] options: resources, how to
 * choose among machines, and what to do when it keeps failing. Read from the Flotilla
 * extension keys in [X-Fleet] (docs/units.md, "Flotilla extensions") and, for resources,
 * from systemd's own `CPUQuota=` and `MemoryMax=` in [Service].
 *
 * Pure: the engine calls it once per unit body.
 */
import { throwIfProblems, type Problem } from '../errors';
import type { UnitHealth } from './registry';
import { nearest } from '../util/suggest';
import { getEntries, unitNameInfo, type UnitEntry, type UnitFile } from './unit-file';
import { parseTimeSpan } from './runner/service-config';
import { XFLEET_SECTION, type XFleetOptions } from './xfleet';

/** What a copy of the unit takes from its machine. Zero means "nothing asked". */
export interface ResourceRequest {
  /** Thousandths of a CPU (1000 = one CPU). */
  cpuMilli: number;
  /** MiB, rounded up. */
  memoryMiB: number;
}

/**
 * `no`: a failed unit stays failed where it is (fleet's behaviour).
 * `on-start-limit` (default): moved when it failed with its restart budget exhausted
 *   (systemd's result `start-limit-hit`: StartLimitBurst restarts within StartLimitIntervalSec).
 * `on-failure`: moved whenever it ends `failed`, whatever the result.
 */
export type ReschedulePolicy = 'no' | 'on-start-limit' | 'on-failure';
export const RESCHEDULE_POLICIES: readonly ReschedulePolicy[] = ['no', 'on-start-limit', 'on-failure'];

/** `spread`: the machine left least used; `pack`: the most used machine the unit still fits on. */
export type PlacementStrategy = 'spread' | 'pack';
export const PLACEMENT_STRATEGIES: readonly PlacementStrategy[] = ['spread', 'pack'];

export interface UnitPolicy {
  resources: ResourceRequest;
  placement: PlacementStrategy;
  reschedule: ReschedulePolicy;
  /** First backoff after a failure on a machine; doubles with each further failure there. */
  backoffMs: number;
  backoffMaxMs: number;
}

export const DEFAULT_BACKOFF_MS = 10_000;
export const DEFAULT_BACKOFF_MAX_MS = 300_000;

export function defaultUnitPolicy(): UnitPolicy {
  return { resources: { cpuMilli: 0, memoryMiB: 0 }, placement: 'spread', reschedule: 'on-start-limit', backoffMs: DEFAULT_BACKOFF_MS, backoffMaxMs: DEFAULT_BACKOFF_MAX_MS };
}

/** The extension keys, as written in [X-Fleet]. */
export const EXTENSION_KEYS = {
  cpu: 'X-Flotilla-CPU',
  memory: 'X-Flotilla-Memory',
  placement: 'X-Flotilla-Placement',
  reschedule: 'X-Flotilla-Reschedule',
  backoff: 'X-Flotilla-RescheduleBackoff',
  backoffMax: 'X-Flotilla-RescheduleBackoffMax',
} as const;
const KNOWN_EXTENSIONS: readonly string[] = Object.values(EXTENSION_KEYS);

const MEMORY_SUFFIX: Readonly<Record<string, number>> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** `512M`, `1.5G`, `1048576` (bytes; 1024-based suffixes K M G T, as systemd) → MiB rounded up. */
export function parseMemory(value: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)$/.exec(value.trim());
  if (!m) throw new Error(`${JSON.stringify(value)} is not a size (bytes, or a number with K, M, G or T, e.g. 512M)`);
  const bytes = parseFloat(m[1]!) * MEMORY_SUFFIX[m[2]!]!;
  return Math.ceil(bytes / 1024 ** 2);
}

/** `0.5` or `2` CPUs, or a percentage of one CPU (`150%`, as CPUQuota=) → thousandths of a CPU. */
export function parseCpu(value: string, percentOnly = false): number {
  const v = value.trim();
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(v);
  if (pct) return Math.ceil(parseFloat(pct[1]!) * 10);
  if (!percentOnly && /^(\d+(?:\.\d+)?)$/.test(v)) return Math.ceil(parseFloat(v) * 1000);
  throw new Error(percentOnly ? `${JSON.stringify(value)} is not a percentage (e.g. 150% for one and a half CPUs)` : `${JSON.stringify(value)} is not a number of CPUs (e.g. 0.5, 2) or a percentage of one CPU (e.g. 150%)`);
}

/** "1.5 CPUs, 512 MiB" (only the parts asked for). */
export function describeRequest(r: ResourceRequest): string {
  const parts: string[] = [];
  if (r.cpuMilli > 0) parts.push(`${formatCpus(r.cpuMilli)} CPU${r.cpuMilli === 1000 ? '' : 's'}`);
  if (r.memoryMiB > 0) parts.push(`${r.memoryMiB} MiB`);
  return parts.join(', ') || 'nothing';
}

export function formatCpus(milli: number): string {
  return String(Math.round(milli) / 1000);
}

/**
 * Reads the unit's policy. `options` are its parsed [X-Fleet] options (extension keys come
 * verbatim from there). Problems name file:line; unknown `X-Flotilla*` keys are errors with
 * the nearest known key suggested.
 */
export function checkUnitPolicy(unit: UnitFile, options: Pick<XFleetOptions, 'extensions' | 'global'>): { policy: UnitPolicy; problems: Problem[] } {
  const policy = defaultUnitPolicy();
  const problems: Problem[] = [];
  const file = unit.name;
  const at = (section: string, key: string, line: number, message: string): void => {
    problems.push({ path: `${section}.${key}`, file, line, message });
  };
  const read = <T>(section: string, key: string, line: number, value: string, parse: (v: string) => T): T | undefined => {
    try {
      return parse(value);
    } catch (err) {
      at(section, key, line, (err as Error).message);
      return undefined;
    }
  };

  // systemd's own limits first; the extension keys (below) override them.
  if (isService(unit.name)) {
    const last = (key: string): UnitEntry | undefined => {
      const all = getEntries(unit, 'Service', key);
      return all[all.length - 1];
    };
    const quota = last('CPUQuota');
    if (quota && quota.value !== '') {
      const v = read('Service', 'CPUQuota', quota.line, quota.value, (s) => parseCpu(s, true));
      if (v !== undefined) policy.resources.cpuMilli = v;
    }
    // MemoryLimit= is the cgroup-v1 name systemd still reads.
    const mem = last('MemoryMax') ?? last('MemoryLimit');
    // A percentage is relative to each machine's memory and infinity is no limit: neither asks for a fixed amount.
    if (mem && mem.value !== '' && mem.value !== 'infinity' && !mem.value.endsWith('%')) {
      const v = read('Service', mem.key, mem.line, mem.value, parseMemory);
      if (v !== undefined) policy.resources.memoryMiB = v;
    }
  }

  let backoffLine: number | undefined;
  for (const ext of options.extensions) {
    const x = (message: string) => at(XFLEET_SECTION, ext.key, ext.line, message);
    const value = ext.value.trim();
    switch (ext.key) {
      case EXTENSION_KEYS.cpu: {
        const v = read(XFLEET_SECTION, ext.key, ext.line, value, (s) => parseCpu(s));
        if (v !== undefined) policy.resources.cpuMilli = v;
        break;
      }
      case EXTENSION_KEYS.memory: {
        const v = read(XFLEET_SECTION, ext.key, ext.line, value, parseMemory);
        if (v !== undefined) policy.resources.memoryMiB = v;
        break;
      }
      case EXTENSION_KEYS.placement:
        if ((PLACEMENT_STRATEGIES as readonly string[]).includes(value)) policy.placement = value as PlacementStrategy;
        else x(`unknown placement ${JSON.stringify(value)} (one of ${PLACEMENT_STRATEGIES.join(', ')})`);
        break;
      case EXTENSION_KEYS.reschedule:
        if ((RESCHEDULE_POLICIES as readonly string[]).includes(value)) policy.reschedule = value as ReschedulePolicy;
        else x(`unknown reschedule policy ${JSON.stringify(value)} (one of ${RESCHEDULE_POLICIES.join(', ')})`);
        break;
      case EXTENSION_KEYS.backoff:
      case EXTENSION_KEYS.backoffMax: {
        const v = read(XFLEET_SECTION, ext.key, ext.line, value, parseTimeSpan);
        if (v === undefined) break;
        if (!Number.isFinite(v) || v < 100) {
          x(`must be a finite time span of at least 100ms (got ${JSON.stringify(value)})`);
          break;
        }
        if (ext.key === EXTENSION_KEYS.backoff) {
          policy.backoffMs = v;
          backoffLine = ext.line;
        } else policy.backoffMaxMs = v;
        break;
      }
      default: {
        const hint = nearest(ext.key, KNOWN_EXTENSIONS);
        x(`unknown Flotilla extension ${ext.key}${hint ? ` (did you mean ${hint}?)` : ` (known: ${KNOWN_EXTENSIONS.join(', ')})`}`);
      }
    }
  }
  if (policy.backoffMs > policy.backoffMaxMs) {
    problems.push({ path: `${XFLEET_SECTION}.${EXTENSION_KEYS.backoff}`, file, ...(backoffLine !== undefined ? { line: backoffLine } : {}), message: `backoff ${policy.backoffMs} ms is longer than ${EXTENSION_KEYS.backoffMax} (${policy.backoffMaxMs} ms)` });
  }
  return { policy, problems };
}

export function parseUnitPolicy(unit: UnitFile, options: Pick<XFleetOptions, 'extensions' | 'global'>): UnitPolicy {
  const { policy, problems } = checkUnitPolicy(unit, options);
  throwIfProblems(problems, `Flotilla extensions of ${unit.name}`);
  return policy;
}

function isService(name: string): boolean {
  try {
    return unitNameInfo(name).type === 'service';
  } catch {
    return false;
  }
}

/** Whether a copy that ended `failed` with systemd result `result` should move, under `policy`. */
export function shouldReschedule(policy: ReschedulePolicy, result: string | undefined): boolean {
  if (policy === 'no') return false;
  if (policy === 'on-failure') return true;
  return result === 'start-limit-hit';
}

/** How long to avoid a machine after the `failures`-th failure there: base doubling per failure, capped. */
export function backoffFor(policy: Pick<UnitPolicy, 'backoffMs' | 'backoffMaxMs'>, failures: number): number {
  return Math.min(policy.backoffMaxMs, policy.backoffMs * 2 ** Math.max(0, Math.min(failures - 1, 40)));
}

/** "03:41:05Z": short enough for a REASON column, exact enough to act on. */
function clock(ms: number): string {
  return `${new Date(ms).toISOString().slice(11, 19)}Z`;
}

/** Why a unit avoids a machine, for list-units and the scheduler's reasons. */
export function avoidReason(h: Pick<UnitHealth, 'machineId' | 'failures' | 'lastResult' | 'avoidUntil'>): string {
  return `failed on ${h.machineId} ${h.failures === 1 ? 'once' : `${h.failures} times`} (${h.lastResult}); avoided until ${clock(Date.parse(h.avoidUntil))}`;
}

