/**
 * fleetd: engine + agent on one node, as fleet's fleetd was (every node a candidate
 * engine). Configuration comes from the rendered /etc/flotilla/fleetd.json and/or flags.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlotillaError } from '../errors';
import { Agent } from './agent';
import { Engine } from './engine';
import { Registry, type RegistryTls } from './registry';
import { createUnitRunner } from './runner';
import { sleep } from '../util/async';
import type { UnitRunner } from './runner/types';
import type { DesiredState } from './registry';

export interface FleetdConfig {
  cluster?: string;
  keyPrefix?: string;
  endpoints: string[];
  machineId: string;
  metadata: Record<string, string>;
  address: string;
  capacity: { cpus: number; memoryMiB: number };
  ttlSeconds: number;
  reconcileIntervalMs: number;
  runner: 'auto' | 'systemd' | 'process';
  stateDir: string;
  preloadUnitsDir?: string;
  tls?: { ca: string; cert?: string; key?: string } | null;
}

function readFileOr(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new FlotillaError('not-found', `fleetd: cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

/** Parses `k=v,k=v` (fleet's --metadata). */
export function parseMetadataFlag(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of value.split(',').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0 || eq === pair.length - 1) throw new FlotillaError('usage', `--metadata: "${pair}" is not key=value`);
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return out;
}

/** What this host has, for resource-aware placement: its CPUs and memory (MiB). */
export function detectCapacity(): FleetdConfig['capacity'] {
  return { cpus: os.availableParallelism?.() ?? os.cpus().length, memoryMiB: Math.floor(os.totalmem() / 1024 ** 2) };
}

/**
 * Reads a fleetd.json (as rendered) into a config; `overrides` win. Capacity is detected
 * unless the file or the overrides set it (each of cpus and memoryMiB on its own).
 */
export function loadFleetdConfig(file: string | undefined, overrides: Omit<Partial<FleetdConfig>, 'capacity'> & { machineIdFile?: string; capacity?: Partial<FleetdConfig['capacity']> }): FleetdConfig {
  let fromFile: Record<string, unknown> = {};
  if (file) {
    try {
      fromFile = JSON.parse(readFileOr(file, 'config')) as Record<string, unknown>;
    } catch (err) {
      if (FlotillaError.is(err)) throw err;
      throw new FlotillaError('invalid-input', `${file}: not valid JSON: ${(err as Error).message}`);
    }
  }
  const { capacity: capacityOverride, ...rest } = overrides;
  const merged = { ...fromFile, ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)) } as Record<string, unknown>;
  const fileCapacity = (fromFile.capacity ?? {}) as Record<string, unknown>;
  const detected = detectCapacity();
  const capacity = { ...detected };
  for (const k of ['cpus', 'memoryMiB'] as const) {
    const v = capacityOverride?.[k] ?? fileCapacity[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new FlotillaError('invalid-input', `${capacityOverride?.[k] !== undefined ? 'fleetd' : `${file}: capacity.${k}`}: ${k} must be a positive number (got ${JSON.stringify(v)})`);
    capacity[k] = v;
  }
  let machineId = merged.machineId as string | undefined;
  if (!machineId) {
    const idFile = (merged.machineIdFile as string | undefined) ?? '/etc/machine-id';
    machineId = readFileOr(idFile, 'machine ID').trim();
    if (!machineId) throw new FlotillaError('invalid-input', `fleetd: ${idFile} is empty (systemd writes it at first boot); pass --machine-id`);
  }
  const endpoints = merged.endpoints as string[] | undefined;
  if (!endpoints || endpoints.length === 0) throw new FlotillaError('usage', 'fleetd: no etcd endpoints (--endpoints or "endpoints" in the config file)');
  if (!merged.cluster && !merged.keyPrefix) throw new FlotillaError('usage', 'fleetd: give --cluster or --key-prefix (or "cluster" in the config file)');
  return {
    ...(merged.cluster ? { cluster: merged.cluster as string } : {}),
    ...(merged.keyPrefix ? { keyPrefix: merged.keyPrefix as string } : {}),
    endpoints,
    machineId,
    metadata: (merged.metadata as Record<string, string>) ?? {},
    address: (merged.address as string) ?? '127.0.0.1',
    capacity,
    ttlSeconds: Number(merged.ttlSeconds ?? 4),
    reconcileIntervalMs: Number(merged.reconcileIntervalMs ?? 2000),
    runner: (merged.runner as FleetdConfig['runner']) ?? 'auto',
    stateDir: (merged.stateDir as string) ?? '/var/lib/flotilla/fleetd',
    ...(merged.preloadUnitsDir ? { preloadUnitsDir: merged.preloadUnitsDir as string } : {}),
    tls: (merged.tls as FleetdConfig['tls']) ?? null,
  };
}

export function readTls(tls: FleetdConfig['tls']): RegistryTls | undefined {
  if (!tls) return undefined;
  return {
    ca: readFileOr(tls.ca, 'CA certificate'),
    ...(tls.cert ? { cert: readFileOr(tls.cert, 'client certificate') } : {}),
    ...(tls.key ? { key: readFileOr(tls.key, 'client key') } : {}),
  };
}

/** Units run by the process runner learn where they run from these (systemd units read /etc/machine-id). */
function makeRunner(config: FleetdConfig): UnitRunner {
  const baseEnvironment = {
    PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    FLOTILLA_MACHINE_ID: config.machineId,
    FLOTILLA_MACHINE_ADDRESS: config.address,
  };
  return createUnitRunner({ kind: config.runner, process: { logDir: path.join(config.stateDir, 'logs'), baseEnvironment } });
}

export interface Fleetd {
  registry: Registry;
  engine: Engine;
  agent: Agent;
  runner: UnitRunner;
  /** Stops engine (resigning leadership) and agent (stopping units, deregistering). */
  stop(opts?: { stopUnits?: boolean }): Promise<void>;
}

/** Submits the units listed in `<dir>/preload.json` (idempotent: same content is a no-op). */
export async function preloadUnits(registry: Registry, dir: string, log: (m: string) => void): Promise<void> {
  const index = path.join(dir, 'preload.json');
  if (!fs.existsSync(index)) return;
  const list = JSON.parse(fs.readFileSync(index, 'utf8')) as Array<{ name: string; state: DesiredState }>;
  for (const { name, state } of list) {
    try {
      const r = await registry.submitUnit(name, fs.readFileSync(path.join(dir, name), 'utf8'), { desiredState: state });
      if (r.created) log(`preloaded ${name} (${state})`);
    } catch (err) {
      log(`preload ${name}: ${(err as Error).message}`);
    }
  }
}

export async function startFleetd(config: FleetdConfig, log: (m: string) => void = () => undefined, opts: { signal?: AbortSignal; connectAttempts?: number } = {}): Promise<Fleetd> {
  const tls = readTls(config.tls);
  const runner = makeRunner(config);
  // Before anything waits on etcd: what a killed predecessor left running is stopped within
  // the fencing window, not after this process has registered (see SystemdRunner.stopLeftovers).
  const leftovers = (await runner.stopLeftovers?.()) ?? [];
  if (leftovers.length) log(`stopped ${leftovers.length} unit${leftovers.length === 1 ? '' : 's'} a previous fleetd left running: ${leftovers.join(', ')} (its lease ends, and the engine places them again)`);
  // A daemon waits for etcd rather than dying: at first boot etcd may start after fleetd,
  // and a slow machine (TCG) can miss a short dial deadline.
  let registry: Registry | undefined;
  for (let backoff = 500; !registry; backoff = Math.min(backoff * 2, 5000)) {
    try {
      registry = await Registry.connect({
        endpoints: config.endpoints,
        ...(config.keyPrefix ? { prefix: config.keyPrefix } : { cluster: config.cluster! }),
        ...(tls ? { tls } : {}),
        dialTimeoutMs: 30_000,
      });
    } catch (err) {
      if (opts.signal?.aborted || opts.connectAttempts === 1) throw err;
      log(`waiting for etcd: ${(err as Error).message}; retrying in ${backoff} ms`);
      await sleep(backoff, opts.signal);
      if (opts.signal?.aborted) throw err;
    }
  }
  const agent = new Agent({ registry, runner, ttlSeconds: config.ttlSeconds, machine: { id: config.machineId, metadata: config.metadata, address: config.address, capacity: config.capacity }, log });
  const engine = new Engine({ registry, candidateId: config.machineId, leaderTtlSeconds: config.ttlSeconds, reconcileIntervalMs: config.reconcileIntervalMs, log });
  engine.on('error', () => undefined); // logged by the engine itself
  agent.on('error', () => undefined);
  await agent.start();
  engine.start();
  if (config.preloadUnitsDir) await preloadUnits(registry, config.preloadUnitsDir, log);
  return {
    registry,
    engine,
    agent,
    runner,
    async stop(opts = {}) {
      await engine.stop();
      await agent.stop(opts);
      await registry.close();
    },
  };
}
