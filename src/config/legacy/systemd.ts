/**
 * systemd facts shared by both output formats: unit names and where unit files live, the
 * environment drop-ins coreos-cloudinit generated, and the unit-file syntax Ignition insists on.
 */
import type { EnvSetting, LegacyDropIn } from './model';

export type SettingKind = 'string' | 'bool' | 'int' | 'float';

/**
 * The `coreos.etcd2` keys coreos-cloudinit knew (config/etcd2.go) and their types; each became
 * `ETCD_<KEY>` with `-` read as `_` and upper-cased.
 */
export const ETCD2_SETTINGS: Readonly<Record<string, SettingKind>> = {
  advertise_client_urls: 'string',
  ca_file: 'string',
  cert_file: 'string',
  client_cert_auth: 'bool',
  cors: 'string',
  data_dir: 'string',
  debug: 'bool',
  discovery: 'string',
  discovery_fallback: 'string',
  discovery_srv: 'string',
  discovery_proxy: 'string',
  election_timeout: 'int',
  enable_pprof: 'bool',
  force_new_cluster: 'bool',
  heartbeat_interval: 'int',
  initial_advertise_peer_urls: 'string',
  initial_cluster: 'string',
  initial_cluster_state: 'string',
  initial_cluster_token: 'string',
  key_file: 'string',
  listen_client_urls: 'string',
  listen_peer_urls: 'string',
  log_package_levels: 'string',
  max_snapshots: 'int',
  max_wals: 'int',
  name: 'string',
  peer_ca_file: 'string',
  peer_cert_file: 'string',
  peer_key_file: 'string',
  peer_client_cert_auth: 'bool',
  peer_trusted_ca_file: 'string',
  proxy: 'string',
  proxy_dial_timeout: 'int',
  proxy_failure_wait: 'int',
  proxy_read_timeout: 'int',
  proxy_refresh_interval: 'int',
  proxy_write_timeout: 'int',
  snapshot_count: 'int',
  strict_reconfig_check: 'bool',
  trusted_ca_file: 'string',
  wal_dir: 'string',
};

/** The `coreos.fleet` keys (config/fleet.go); each became `FLEET_<KEY>`. */
export const FLEET_SETTINGS: Readonly<Record<string, SettingKind>> = {
  agent_ttl: 'string',
  authorized_keys_file: 'string',
  disable_engine: 'bool',
  engine_reconcile_interval: 'float',
  etcd_cafile: 'string',
  etcd_certfile: 'string',
  etcd_keyfile: 'string',
  etcd_key_prefix: 'string',
  etcd_request_timeout: 'float',
  etcd_servers: 'string',
  etcd_username: 'string',
  etcd_password: 'string',
  metadata: 'string',
  public_ip: 'string',
  token_limit: 'int',
  verbosity: 'int',
  verify_units: 'bool',
};

/** The drop-in name coreos-cloudinit used for generated environment. */
export const ENV_DROPIN_NAME = '20-cloudinit.conf';

/**
 * A `[Service]` section with one `Environment="VAR=value"` line per setting. Inside double
 * quotes systemd undoes C escapes, so quotes, backslashes and control characters are escaped;
 * `%` is left alone because configs relied on specifiers such as `%H`, as under coreos-cloudinit.
 */
export function envDropInContents(settings: readonly EnvSetting[]): string {
  const lines = settings.map((s) => `Environment="${escapeQuoted(`${s.variable}=${s.value}`)}"`);
  return `[Service]\n${lines.join('\n')}\n`;
}

function escapeQuoted(s: string): string {
  return s.replace(/[\\"\x00-\x1f\x7f]/g, (c) => {
    switch (c) {
      case '\\':
        return '\\\\';
      case '"':
        return '\\"';
      case '\n':
        return '\\n';
      case '\t':
        return '\\t';
      case '\r':
        return '\\r';
      default:
        return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
    }
  });
}

/** The inverse of the quoting in envDropInContents, for one `Environment=` line (used by tests and round-trips). */
export function parseEnvironmentLine(line: string): { variable: string; value: string } | undefined {
  const m = /^Environment="((?:[^"\\]|\\.)*)"$/.exec(line);
  if (!m) return undefined;
  const unescaped = m[1]!.replace(/\\(x[0-9a-f]{2}|.)/g, (_all, esc: string) => {
    if (esc.startsWith('x') && esc.length === 3) return String.fromCharCode(parseInt(esc.slice(1), 16));
    return ({ n: '\n', t: '\t', r: '\r' } as Record<string, string>)[esc] ?? esc;
  });
  const eq = unescaped.indexOf('=');
  return eq < 0 ? undefined : { variable: unescaped.slice(0, eq), value: unescaped.slice(eq + 1) };
}

const SYSTEM_UNIT_TYPES = ['service', 'socket', 'device', 'mount', 'automount', 'swap', 'target', 'path', 'timer', 'snapshot', 'slice', 'scope'];
/** systemd-networkd files, which coreos-cloudinit placed under systemd/network and never enabled. */
const NETWORK_UNIT_TYPES = ['network', 'netdev', 'link'];

export type UnitKind = 'system' | 'network';

/** 'system' or 'network' for a valid unit name; undefined for anything else (including names with `/`). */
export function unitKind(name: string): UnitKind | undefined {
  if (name.length > 255 || !/^[A-Za-z0-9:_.\\@-]+$/.test(name)) return undefined;
  const dot = name.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const type = name.slice(dot + 1);
  if (SYSTEM_UNIT_TYPES.includes(type)) return 'system';
  if (NETWORK_UNIT_TYPES.includes(type)) return 'network';
  return undefined;
}

/** A drop-in file name: one path component. */
export function isValidDropInName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

/** Where coreos-cloudinit placed a unit: /etc or /run, systemd/system or systemd/network. */
export function unitDirectory(kind: UnitKind, runtime: boolean): string {
  return `/${runtime ? 'run' : 'etc'}/systemd/${kind}`;
}

export function unitPath(name: string, kind: UnitKind, runtime: boolean): string {
  return `${unitDirectory(kind, runtime)}/${name}`;
}

export function dropInPath(unit: string, kind: UnitKind, runtime: boolean, dropIn: LegacyDropIn): string {
  return `${unitDirectory(kind, runtime)}/${unit}.d/${dropIn.name}`;
}

/**
 * The first line of unit-file text that systemd would skip as garbage and that Ignition's
 * unit parser rejects outright (a setting without `=`, a section header without `]`).
 * Returns the 1-based line within the content and why.
 */
export function unitSyntaxProblem(contents: string): { line: number; message: string } | undefined {
  const lines = contents.split('\n');
  let continued = false;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, '');
    const wasContinued = continued;
    continued = raw.endsWith('\\');
    if (wasContinued) continue;
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (/^\.include[ \t]+\S/.test(line)) continue; // translated by resolveIncludes
    if (line.startsWith('[')) {
      if (!line.includes(']')) return { line: i + 1, message: 'section header without a closing `]`' };
      continue;
    }
    if (!line.includes('=')) return { line: i + 1, message: `\`${line.length > 40 ? `${line.slice(0, 40)}…` : line}\` is not a \`Name=value\` setting` };
  }
  return undefined;
}

/** Whether unit-file text has an `[Install]` section (without one, enabling does nothing). */
export function hasInstallSection(contents: string): boolean {
  return /^\s*\[Install\]\s*$/m.test(contents);
}

/**
 * Units that CoreOS shipped and configs referred to without giving their contents. Neither
 * Debian 12 nor Flatcar/Fedora CoreOS ship them under these names (Flatcar: etcd-member.service;
 * Debian: etcd.service from etcd-server), so starting or configuring them does nothing there.
 */
export const COREOS_ONLY_UNITS: Readonly<Record<string, string>> = {
  'etcd.service': 'etcd 0.4, dropped from CoreOS long ago',
  'etcd2.service': 'etcd 2 as shipped by CoreOS; Flatcar has etcd-member.service (etcd 3), Debian 12 has etcd.service (package etcd-server)',
  'fleet.service': 'fleet, archived in 2018 and shipped by no current distribution',
  'fleet.socket': 'fleet, archived in 2018 and shipped by no current distribution',
  'flanneld.service': 'flannel as shipped by CoreOS; today it runs as a Kubernetes DaemonSet',
  'locksmithd.service': 'CoreOS reboot coordination; Flatcar still has it, Debian 12 does not',
  'update-engine.service': 'CoreOS updates; Flatcar still has it, Debian 12 does not',
  'early-docker.service': 'CoreOS-only docker bootstrap',
  'early-docker.socket': 'CoreOS-only docker bootstrap',
};
