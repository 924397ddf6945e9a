/** `flotilla fleetd`: the implementation, loaded when the command runs (declaration: fleetd.ts). */
import { FlotillaError } from '../../errors';
import { loadFleetdConfig, parseMetadataFlag, startFleetd } from '../../units/fleetd';
import { choiceOpt, intOpt, stringOpt, type CommandRun } from '../command';
import { EXIT_OK } from '../exit-codes';

export const run: CommandRun = async (p, io) => {
  const endpoints = stringOpt(p, 'endpoints', 'fleetd');
  const metadata = stringOpt(p, 'metadata', 'fleetd');
  const ca = stringOpt(p, 'ca-file', 'fleetd');
  const cpus = stringOpt(p, 'cpus', 'fleetd');
  if (cpus !== undefined && !(Number(cpus) > 0)) throw new FlotillaError('usage', `flotilla fleetd: --cpus must be a positive number (got "${cpus}")`);
  const memoryMiB = intOpt(p, 'memory-mib', 'fleetd', 1);
  const overrides: Parameters<typeof loadFleetdConfig>[1] = {
    ...(endpoints ? { endpoints: endpoints.split(',').map((e) => e.trim()) } : {}),
    ...(metadata !== undefined ? { metadata: parseMetadataFlag(metadata) } : {}),
    cluster: stringOpt(p, 'cluster', 'fleetd'),
    keyPrefix: stringOpt(p, 'key-prefix', 'fleetd'),
    machineId: stringOpt(p, 'machine-id', 'fleetd'),
    address: stringOpt(p, 'address', 'fleetd'),
    runner: choiceOpt(p, 'runner', 'fleetd', ['auto', 'systemd', 'process'] as const),
    stateDir: stringOpt(p, 'state-dir', 'fleetd'),
    ttlSeconds: intOpt(p, 'ttl', 'fleetd', 1, 3600),
    reconcileIntervalMs: intOpt(p, 'reconcile-interval', 'fleetd', 50, 600_000),
    capacity: { ...(cpus !== undefined ? { cpus: Number(cpus) } : {}), ...(memoryMiB !== undefined ? { memoryMiB } : {}) },
    ...(ca ? { tls: { ca, ...(stringOpt(p, 'cert-file', 'fleetd') ? { cert: stringOpt(p, 'cert-file', 'fleetd')! } : {}), ...(stringOpt(p, 'key-file', 'fleetd') ? { key: stringOpt(p, 'key-file', 'fleetd')! } : {}) } } : {}),
  };
  const config = loadFleetdConfig(stringOpt(p, 'config', 'fleetd'), overrides);
  const log = (m: string) => io.err(`${new Date().toISOString()} ${m}\n`);
  const abort = new AbortController();
  const stopped = new Promise<void>((resolve) => {
    const done = (sig: string) => {
      log(`${sig}: stopping`);
      abort.abort();
      resolve();
    };
    process.once('SIGTERM', () => done('SIGTERM'));
    process.once('SIGINT', () => done('SIGINT'));
  });
  const fleetd = await startFleetd(config, log, { signal: abort.signal }).catch((err: unknown) => {
    if (abort.signal.aborted) return undefined;
    throw err;
  });
  if (!fleetd) return EXIT_OK;
  log(`fleetd ${config.machineId} running (endpoints ${config.endpoints.join(',')}, TTL ${config.ttlSeconds} s)`);
  await stopped;
  await fleetd.stop();
  return EXIT_OK;
};
