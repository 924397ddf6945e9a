/**
 * `flotilla announce`: the implementation, loaded when the command runs (declaration:
 * announce.ts), and the connection that `announce` and `services` share. It is in the node
 * agent bundle: nothing here may import the host-side CLI (units.run.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { FlotillaError } from '../../errors';
import { Announcer } from '../../discovery/announce';
import { checkEndpoint, PROTOCOLS } from '../../discovery/endpoint';
import { checkName, servicesPrefix } from '../../discovery/keys';
import { loadFleetdConfig, readTls } from '../../units/fleetd';
import { Registry } from '../../units/registry';
import { choiceOpt, intOpt, stringOpt, type CommandRun, type ParsedCommand } from '../command';
import { EXIT_OK } from '../exit-codes';
import { NODE_CONFIG } from './constants';
import { flagOrEnv, registryFromFlags } from './etcd-flags';

export interface DiscoveryConnection {
  registry: Registry;
  close(): Promise<void>;
  /** Set when connected through a node's fleetd.json. */
  node?: { address: string; machineId: string };
}

export type ConnectFn = (p: ParsedCommand, cmd: string) => Promise<DiscoveryConnection>;

const opt = flagOrEnv;

/** Connection flags (or FLOTILLA_* variables) only: what a node has when fleetd.json is not used. */
export const connectWithFlags: ConnectFn = async (p, cmd) => {
  const endpoints = opt(p, 'endpoints', 'FLOTILLA_ENDPOINTS');
  if (!endpoints) throw new FlotillaError('usage', `flotilla ${cmd}: no etcd endpoints: pass --endpoints, set FLOTILLA_ENDPOINTS, or run on a node (${NODE_CONFIG})`);
  return registryFromFlags(p, cmd, endpoints);
};

/**
 * Connection flags or FLOTILLA_* variables win (handled by `viaFlags`); without them, the
 * node's fleetd.json (--config, or NODE_CONFIG when it exists).
 */
export async function connectDiscovery(p: ParsedCommand, cmd: string, viaFlags: ConnectFn): Promise<DiscoveryConnection> {
  const flagged = ['endpoints', 'cluster', 'key-prefix'].filter((n) => p.values[n] !== undefined);
  const config = p.values.config as string | undefined;
  if (config !== undefined && flagged.length) throw new FlotillaError('usage', `flotilla ${cmd}: --config and --${flagged[0]} both say where etcd is: give one`);
  const fromEnv = ['FLOTILLA_ENDPOINTS', 'FLOTILLA_CLUSTER', 'FLOTILLA_KEY_PREFIX'].some((e) => process.env[e]);
  const file = config ?? (!flagged.length && !fromEnv && fs.existsSync(NODE_CONFIG) ? NODE_CONFIG : undefined);
  if (file === undefined) return viaFlags(p, cmd);
  const cfg = loadFleetdConfig(file, {});
  const tls = readTls(cfg.tls);
  // fleetd's deadlines: an emulated (TCG) node's etcd can be slow to answer.
  const registry = await Registry.connect({ endpoints: cfg.endpoints, ...(cfg.keyPrefix ? { prefix: cfg.keyPrefix } : { cluster: cfg.cluster! }), ...(tls ? { tls } : {}), dialTimeoutMs: 30_000, requestTimeoutMs: 15_000 });
  return { registry, close: () => registry.close(), node: { address: cfg.address, machineId: cfg.machineId } };
}

/** This machine's ID (/etc/machine-id), else its host name: the default instance off a node. */
function localInstance(): string {
  try {
    const id = fs.readFileSync('/etc/machine-id', 'utf8').trim();
    if (id) return id;
  } catch {
    /* no machine ID: use the host name */
  }
  return os.hostname().split('.')[0]!;
}

function seconds(p: ParsedCommand, name: string, cmd: string, min: number, max: number): number | undefined {
  return intOpt(p, name, cmd, min, max);
}

/** `announce`, connecting through `viaFlags` when flags or variables say where etcd is. */
export function announceRun(viaFlags: ConnectFn): CommandRun {
  const cmd = 'announce';
  return async (p, io) => {
    if (p.positionals.length !== 1) throw new FlotillaError('usage', `flotilla announce: give exactly one SERVICE name${p.positionals.length ? ` (got ${p.positionals.length}: ${p.positionals.join(' ')})` : ''}`);
    const service = checkName('SERVICE', p.positionals[0]!, 'usage');
    const port = intOpt(p, 'port', cmd, 1, 65535);
    if (port === undefined) throw new FlotillaError('usage', 'flotilla announce: --port is required');
    const protocol = choiceOpt(p, 'protocol', cmd, PROTOCOLS) ?? 'tcp';
    const pathOpt = stringOpt(p, 'path', cmd);
    if (pathOpt !== undefined && protocol !== 'http') throw new FlotillaError('usage', 'flotilla announce: --path needs --protocol http');
    const ttlSeconds = seconds(p, 'ttl', cmd, 2, 3600) ?? 10;
    const checkSeconds = seconds(p, 'check-interval', cmd, 1, 3600);
    const instanceOpt = stringOpt(p, 'instance', cmd);
    if (instanceOpt !== undefined) checkName('--instance', instanceOpt, 'usage');
    const hostOpt = stringOpt(p, 'host', cmd);
    // Check what the flags alone can decide before connecting.
    if (hostOpt !== undefined) checkEndpoint({ host: hostOpt, port, protocol, path: pathOpt }, 'flotilla announce');
    const conn = await connectDiscovery(p, cmd, viaFlags);
    try {
      const host = hostOpt ?? conn.node?.address;
      if (host === undefined) throw new FlotillaError('usage', `flotilla announce: --host is required (on a node, ${NODE_CONFIG} supplies its address)`);
      const endpoint = checkEndpoint({ host, port, protocol, path: pathOpt }, 'flotilla announce');
      const instance = instanceOpt ?? conn.node?.machineId ?? localInstance();
      const log = (m: string) => io.err(`${new Date().toISOString()} ${m}\n`);
      const stop = new Promise<string>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      const announcer = await Announcer.start(conn.registry.etcd, {
        prefix: servicesPrefix(conn.registry.prefix),
        service,
        instance,
        endpoint,
        ttlSeconds,
        ...(checkSeconds !== undefined ? { checkIntervalMs: checkSeconds * 1000 } : {}),
        log,
      });
      const outcome = await Promise.race([stop, announcer.finished.then(() => 'finished')]);
      log(`${outcome}: stopping`);
      await announcer.stop();
      return EXIT_OK;
    } finally {
      await conn.close();
    }
  };
}

/** The node agent's build: connection flags or the node's fleetd.json. */
export const agentAnnounce: CommandRun = announceRun(connectWithFlags);
