import { lazyCommand } from '../command';

/** The implementation, loaded when the command runs. */
const impl = () => require('./fleetd.run') as typeof import('./fleetd.run');

export const fleetdCommand = lazyCommand(
  {
    name: 'fleetd',
    summary: 'Run the engine and agent on this node (every node is a candidate engine)',
    options: {
      config: { type: 'string', description: 'fleetd.json as rendered into /etc/flotilla (flags override it)', valueName: 'FILE' },
      endpoints: { type: 'string', description: 'etcd client URLs, comma-separated', valueName: 'URLS' },
      cluster: { type: 'string', description: 'cluster name (key prefix /flotilla/NAME/)', valueName: 'NAME' },
      'key-prefix': { type: 'string', description: 'etcd key prefix instead of --cluster', valueName: 'PREFIX' },
      'machine-id': { type: 'string', description: 'machine ID (default: /etc/machine-id)', valueName: 'ID' },
      metadata: { type: 'string', description: 'machine metadata k=v,k=v', valueName: 'LIST' },
      address: { type: 'string', description: 'address others reach this machine at', valueName: 'IP' },
      runner: { type: 'string', description: 'auto | systemd | process', valueName: 'KIND' },
      'state-dir': { type: 'string', description: 'where unit logs go', valueName: 'DIR' },
      ttl: { type: 'string', description: 'machine lease TTL in seconds (default 4)', valueName: 'SECONDS' },
      'reconcile-interval': { type: 'string', description: "engine's sweep interval in ms (default 2000)", valueName: 'MS' },
      cpus: { type: 'string', description: 'CPUs this machine offers to units (default: detected)', valueName: 'N' },
      'memory-mib': { type: 'string', description: 'memory this machine offers to units, MiB (default: detected)', valueName: 'MIB' },
      'ca-file': { type: 'string', description: 'etcd CA certificate', valueName: 'FILE' },
      'cert-file': { type: 'string', description: 'etcd client certificate', valueName: 'FILE' },
      'key-file': { type: 'string', description: 'etcd client key', valueName: 'FILE' },
    },
    details: 'Stops cleanly on SIGTERM/SIGINT: resigns leadership, stops its units and deregisters.',
  },
  () => impl().run,
);
