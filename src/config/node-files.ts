/**
 * What each node needs on disk and in systemd, as plain data: the one place that decides
 * paths, unit texts and environment. Renderers only change the encoding (cloud-config
 * write_files + runcmd, or Ignition storage + systemd).
 */
import { FlotillaError } from '../errors';
import type { ResolvedNode, ResolvedSpec } from './spec';

export const PATHS = {
  configDir: '/etc/flotilla',
  etcdEnv: '/etc/flotilla/etcd.env',
  fleetdConfig: '/etc/flotilla/fleetd.json',
  unitsDir: '/etc/flotilla/units',
  pkiDir: '/etc/flotilla/pki',
  /** Written last by secret delivery; path units start etcd and fleetd once it exists. */
  pkiReady: '/etc/flotilla/pki/ready',
  etcdDataDir: '/var/lib/flotilla/etcd',
  fleetdStateDir: '/var/lib/flotilla/fleetd',
  systemdDir: '/etc/systemd/system',
  networkdDir: '/etc/systemd/network',
  sshdDropin: '/etc/ssh/sshd_config.d/10-flotilla.conf',
  hostKey: '/etc/ssh/ssh_host_ed25519_key',
  flotillaBin: '/usr/local/bin/flotilla',
  etcdBin: '/usr/bin/etcd',
} as const;

export const PKI = {
  ca: `${PATHS.pkiDir}/ca.crt`,
  etcdServerCert: `${PATHS.pkiDir}/etcd-server.crt`,
  etcdServerKey: `${PATHS.pkiDir}/etcd-server.key`,
  etcdPeerCert: `${PATHS.pkiDir}/etcd-peer.crt`,
  etcdPeerKey: `${PATHS.pkiDir}/etcd-peer.key`,
  clientCert: `${PATHS.pkiDir}/client.crt`,
  clientKey: `${PATHS.pkiDir}/client.key`,
} as const;

export interface NodeFile {
  path: string;
  contents: string;
  /** Numeric mode, e.g. 0o644. */
  mode: number;
}

export interface NodeUnit {
  name: string;
  contents: string;
  /** Enabled at first boot (Ignition: preset; cloud-config: `systemctl enable --now`). */
  enabled: boolean;
}

export interface NodeFiles {
  files: NodeFile[];
  units: NodeUnit[];
}

function scheme(spec: ResolvedSpec): string {
  return spec.etcd.tls ? 'https' : 'http';
}

const membersCache = new WeakMap<ResolvedSpec, ResolvedNode[]>();

/** The etcd member nodes; computed once per spec, since every node's files list them. */
function etcdMembers(spec: ResolvedSpec): ResolvedNode[] {
  let m = membersCache.get(spec);
  if (!m) membersCache.set(spec, (m = spec.nodes.filter((n) => n.etcdMember)));
  return m;
}

/** Client URLs of every etcd member, as agents and etcdctl use them. */
export function etcdEndpoints(spec: ResolvedSpec): string[] {
  return etcdMembers(spec).map((n) => `${scheme(spec)}://${n.address}:${spec.etcd.clientPort}`);
}

/** This member's peer URL, as the other members and `etcdctl member add` know it. */
export function etcdPeerUrl(spec: ResolvedSpec, node: Pick<ResolvedNode, 'address'>): string {
  return `${scheme(spec)}://${node.address}:${spec.etcd.peerPort}`;
}

/**
 * ETCD_INITIAL_CLUSTER for a member joining a running cluster. etcd refuses to start unless this
 * lists exactly the cluster's members with their peer URLs, the joining one included, so a list
 * without it, or with it under another URL, is refused here rather than on the node.
 */
function joinInitialCluster(spec: ResolvedSpec, node: ResolvedNode): string {
  const join = node.etcdJoin!;
  const field = `nodes[${spec.nodes.findIndex((n) => n.name === node.name)}].etcdJoin.members`;
  const self = join.members.filter((m) => m.name === node.name);
  if (self.length !== 1 || self[0]!.peerUrl !== etcdPeerUrl(spec, node)) {
    throw new FlotillaError('invalid-input', `${field}: must list ${node.name} once with its peer URL ${etcdPeerUrl(spec, node)}`, [{ path: field, message: `must list ${node.name} with ${etcdPeerUrl(spec, node)}` }]);
  }
  for (const m of join.members) {
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(m.name) || !/^https?:\/\/[A-Za-z0-9.:[\]-]+$/.test(m.peerUrl)) {
      throw new FlotillaError('invalid-input', `${field}: not a member name and peer URL: ${JSON.stringify(m)}`, [{ path: field, message: 'bad member entry' }]);
    }
  }
  return join.members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
}

/** The environment Debian's etcd reads (ETCD_* variables), for one member. */
export function etcdEnvironment(spec: ResolvedSpec, node: ResolvedNode): Record<string, string> {
  const s = scheme(spec);
  const members = etcdMembers(spec);
  const join = node.etcdJoin !== undefined;
  const env: Record<string, string> = {
    ETCD_NAME: node.name,
    ETCD_DATA_DIR: PATHS.etcdDataDir,
    ETCD_LISTEN_PEER_URLS: `${s}://${node.address}:${spec.etcd.peerPort}`,
    ETCD_LISTEN_CLIENT_URLS: `${s}://${node.address}:${spec.etcd.clientPort},${s}://127.0.0.1:${spec.etcd.clientPort}`,
    ETCD_ADVERTISE_CLIENT_URLS: `${s}://${node.address}:${spec.etcd.clientPort}`,
    ETCD_INITIAL_ADVERTISE_PEER_URLS: `${s}://${node.address}:${spec.etcd.peerPort}`,
    ETCD_INITIAL_CLUSTER: join ? joinInitialCluster(spec, node) : members.map((m) => `${m.name}=${s}://${m.address}:${spec.etcd.peerPort}`).join(','),
    ETCD_INITIAL_CLUSTER_STATE: join ? 'existing' : 'new',
    ETCD_INITIAL_CLUSTER_TOKEN: `flotilla-${spec.name}`,
    ETCD_HEARTBEAT_INTERVAL: String(spec.etcd.heartbeatIntervalMs),
    ETCD_ELECTION_TIMEOUT: String(spec.etcd.electionTimeoutMs),
  };
  if (spec.etcd.tls) {
    Object.assign(env, {
      ETCD_CERT_FILE: PKI.etcdServerCert,
      ETCD_KEY_FILE: PKI.etcdServerKey,
      ETCD_TRUSTED_CA_FILE: PKI.ca,
      ETCD_CLIENT_CERT_AUTH: 'true',
      ETCD_PEER_CERT_FILE: PKI.etcdPeerCert,
      ETCD_PEER_KEY_FILE: PKI.etcdPeerKey,
      ETCD_PEER_TRUSTED_CA_FILE: PKI.ca,
      ETCD_PEER_CLIENT_CERT_AUTH: 'true',
    });
  }
  return env;
}

/** systemd EnvironmentFile syntax; values are validated upstream and never contain newlines. */
function envFile(env: Record<string, string>): string {
  return `${Object.entries(env)
    .map(([k, v]) => `${k}=${/^[A-Za-z0-9_./:,=@-]*$/.test(v) ? v : JSON.stringify(v)}`)
    .join('\n')}\n`;
}

/** The agent's configuration file, read by `flotilla fleetd --config`. */
export function fleetdConfig(spec: ResolvedSpec, node: ResolvedNode): Record<string, unknown> {
  return {
    cluster: spec.name,
    machineIdFile: '/etc/machine-id',
    metadata: node.metadata,
    address: node.address,
    capacity: { cpus: node.cpus, memoryMiB: node.memoryMiB },
    endpoints: etcdEndpoints(spec),
    keyPrefix: spec.agent.keyPrefix,
    ttlSeconds: spec.agent.ttlSeconds,
    reconcileIntervalMs: spec.agent.reconcileIntervalMs,
    runner: spec.agent.runner,
    stateDir: PATHS.fleetdStateDir,
    preloadUnitsDir: PATHS.unitsDir,
    tls: spec.etcd.tls ? { ca: PKI.ca, cert: PKI.clientCert, key: PKI.clientKey } : null,
  };
}

function pathUnit(description: string, service: string): string {
  return [
    '[Unit]',
    `Description=${description}`,
    '',
    '[Path]',
    `PathExists=${PATHS.pkiReady}`,
    `Unit=${service}`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

const ETCD_SERVICE = [
  '[Unit]',
  'Description=etcd member (Flotilla)',
  'Documentation=https://etcd.io/docs/v3.4/op-guide/configuration/',
  'After=network-online.target',
  'Wants=network-online.target',
  '',
  '[Service]',
  'Type=notify',
  `EnvironmentFile=${PATHS.etcdEnv}`,
  `ExecStart=${PATHS.etcdBin}`,
  // The cluster NIC may get its address after etcd starts; retry instead of failing for good.
  'Restart=on-failure',
  'RestartSec=1s',
  'LimitNOFILE=65536',
  '',
].join('\n');

const FLEETD_SERVICE = [
  '[Unit]',
  'Description=Flotilla fleetd (engine + agent)',
  'After=network-online.target flotilla-etcd.service',
  'Wants=network-online.target',
  '',
  '[Service]',
  `ExecStart=${PATHS.flotillaBin} fleetd --config ${PATHS.fleetdConfig}`,
  'Restart=always',
  'RestartSec=1s',
  '',
].join('\n');

/** Every file and unit a node gets at first boot, except its host key and network config. */
export function nodeFiles(spec: ResolvedSpec, node: ResolvedNode): NodeFiles {
  const files: NodeFile[] = [];
  const units: NodeUnit[] = [];
  if (node.etcdJoin && !node.etcdMember) {
    const field = `nodes[${spec.nodes.findIndex((n) => n.name === node.name)}].etcdJoin`;
    throw new FlotillaError('invalid-input', `${field}: ${node.name} is not an etcd member, so it cannot join the etcd cluster`, [{ path: field, message: 'not an etcd member' }]);
  }
  if (node.etcdMember) {
    files.push({ path: PATHS.etcdEnv, contents: envFile(etcdEnvironment(spec, node)), mode: 0o644 });
    units.push({ name: 'flotilla-etcd.service', contents: ETCD_SERVICE, enabled: false });
    units.push({ name: 'flotilla-etcd.path', contents: pathUnit('Start etcd once secrets are delivered', 'flotilla-etcd.service'), enabled: true });
  }
  files.push({ path: PATHS.fleetdConfig, contents: `${JSON.stringify(fleetdConfig(spec, node), null, 2)}\n`, mode: 0o644 });
  units.push({ name: 'flotilla-fleetd.service', contents: FLEETD_SERVICE, enabled: false });
  units.push({ name: 'flotilla-fleetd.path', contents: pathUnit('Start fleetd once secrets are delivered', 'flotilla-fleetd.service'), enabled: true });
  for (const u of spec.units) files.push({ path: `${PATHS.unitsDir}/${u.name}`, contents: u.contents, mode: 0o644 });
  if (spec.units.length > 0) {
    files.push({ path: `${PATHS.unitsDir}/preload.json`, contents: `${JSON.stringify(spec.units.map((u) => ({ name: u.name, state: u.state })))}\n`, mode: 0o644 });
  }
  files.push({ path: PATHS.sshdDropin, contents: sshdDropin(spec.format), mode: 0o644 });
  return { files, units };
}

function sshdDropin(format: ResolvedSpec['format']): string {
  const lines = [`HostKey ${PATHS.hostKey}`, 'PasswordAuthentication no', 'PermitRootLogin no'];
  // Ignition writes keys to authorized_keys.d/ignition; sshd must be told to read it.
  if (format === 'ignition') lines.push('AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys.d/ignition');
  return `${lines.join('\n')}\n`;
}

/** systemd-networkd files for the Ignition path (cloud-config uses network-config v2 instead). */
export function networkdFiles(spec: ResolvedSpec, node: ResolvedNode): NodeFile[] {
  if (spec.platform === 'aws') return [];
  return [
    {
      path: `${PATHS.networkdDir}/10-flotilla-primary.network`,
      contents: `[Match]\nMACAddress=${node.primaryMac}\n\n[Network]\nDHCP=ipv4\n`,
      mode: 0o644,
    },
    {
      path: `${PATHS.networkdDir}/20-flotilla-cluster.network`,
      contents: `[Match]\nMACAddress=${node.clusterMac}\n\n[Network]\nAddress=${node.address}/${spec.network.prefixLength}\n`,
      mode: 0o644,
    },
  ];
}

/** network-config v2 for cloud-init (NoCloud), or undefined where the platform's DHCP suffices. */
export function networkConfig(spec: ResolvedSpec, node: ResolvedNode): Record<string, unknown> | undefined {
  if (spec.platform === 'aws') return undefined;
  return {
    version: 2,
    ethernets: {
      primary: { match: { macaddress: node.primaryMac }, 'set-name': 'eth0', dhcp4: true },
      cluster: { match: { macaddress: node.clusterMac }, 'set-name': 'cluster0', addresses: [`${node.address}/${spec.network.prefixLength}`] },
    },
  };
}
