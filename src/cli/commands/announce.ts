/**
 * `flotilla announce`, kept apart from `flotilla services` (discovery.ts) because the node
 * agent bundle includes it: nothing here or in announce.run.ts may import the host-side CLI
 * (units.run.ts pulls in the local-cluster, SSH and QEMU code, which doubles the bundle
 * Node.js parses on every start).
 *
 * Where etcd is: connection flags or FLOTILLA_* variables as for `flotilla units`; with none
 * of them, the node's own /etc/flotilla/fleetd.json (or --config FILE), which also supplies
 * the default --host (the node's cluster address) and --instance (its machine ID).
 */
import { lazyCommand, type CommandDeclaration, type OptionSpec } from '../command';
import { NODE_CONFIG, PROTOCOLS } from './constants';

/** The implementation (announcing, and connecting for `announce` and `services`), loaded when a command runs. */
const impl = () => require('./announce.run') as typeof import('./announce.run');

export const discoveryConnectionOptions: Record<string, OptionSpec> = {
  endpoints: { type: 'string', description: 'etcd client URLs, comma-separated (env FLOTILLA_ENDPOINTS)', valueName: 'URLS' },
  cluster: { type: 'string', description: 'cluster name: key prefix /flotilla/NAME/; on the host, a local cluster is reached through SSH (env FLOTILLA_CLUSTER)', valueName: 'NAME' },
  'key-prefix': { type: 'string', description: 'registry key prefix instead of --cluster; services live under PREFIX/services/ (env FLOTILLA_KEY_PREFIX)', valueName: 'PREFIX' },
  'ca-file': { type: 'string', description: 'CA certificate for etcd TLS (env FLOTILLA_CA_FILE)', valueName: 'FILE' },
  'cert-file': { type: 'string', description: 'client certificate (env FLOTILLA_CERT_FILE)', valueName: 'FILE' },
  'key-file': { type: 'string', description: 'client key (env FLOTILLA_KEY_FILE)', valueName: 'FILE' },
  config: { type: 'string', description: `a node's fleetd.json for etcd, TLS, address and machine ID (default ${NODE_CONFIG} when no connection flag is given and it exists)`, valueName: 'FILE' },
};

/** `announce` as help and parsing see it, on the host (discovery.ts) and in the agent build alike. */
export const announceDeclaration: CommandDeclaration = {
  name: 'announce',
  summary: 'Announce a service instance in etcd under a lease, in the foreground (a sidekick unit\'s ExecStart)',
  args: 'SERVICE',
  options: {
    host: { type: 'string', description: "address clients use (default on a node: its cluster address from fleetd.json)", valueName: 'HOST' },
    port: { type: 'string', description: 'port clients use (required)', valueName: 'PORT' },
    instance: { type: 'string', description: 'instance name, the last key segment (default: the machine ID, else the host name)', valueName: 'ID' },
    protocol: { type: 'string', description: `${PROTOCOLS.join(' | ')} (default tcp)`, valueName: 'PROTO' },
    path: { type: 'string', description: 'HTTP path to probe and announce (with --protocol http; default /)', valueName: 'PATH' },
    ttl: { type: 'string', description: 'lease TTL: how long the record outlives a killed announcer (default 10)', valueName: 'SECONDS' },
    'check-interval': { type: 'string', description: 'probe the endpoint this often; withdraw the record while it fails (default: no probing)', valueName: 'SECONDS' },
    ...discoveryConnectionOptions,
  },
  details: [
    'Key: <registry prefix>services/SERVICE/INSTANCE (e.g. /flotilla/demo/services/web/<machine-id>),',
    'value {"host","port","protocol","path"}. Runs until SIGTERM/SIGINT, then revokes its lease so the',
    'record goes at once; killed outright, the record expires one TTL later. Probes: tcp = connect,',
    'http = GET PATH answers 2xx/3xx. Exit 4 if another announcer takes over the same key.',
  ].join('\n'),
};

/** The node agent's build: connection flags or the node's fleetd.json. */
export const agentAnnounceCommand = lazyCommand(announceDeclaration, () => impl().agentAnnounce);
