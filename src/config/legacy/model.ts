/**
 * A legacy CoreOS cloud-config as read and checked, independent of the output format.
 * Every part keeps where it was written so translations can report problems at that line.
 */
import type { Where } from './source';

export interface Sited<T> {
  value: T;
  at: Where;
}

/** The commands coreos-cloudinit accepted in `coreos.units[].command`. */
export const UNIT_COMMANDS = [
  'start',
  'stop',
  'restart',
  'reload',
  'try-restart',
  'reload-or-restart',
  'reload-or-try-restart',
] as const;
export type UnitCommand = (typeof UNIT_COMMANDS)[number];

/** Commands that bring a unit up; coreos-cloudinit issued them at every boot, so enabling is the lasting equivalent. */
export const STARTING_COMMANDS: readonly UnitCommand[] = ['start', 'restart', 'reload-or-restart'];

export interface LegacyDropIn {
  name: string;
  content: string;
  at: Where;
}

export interface LegacyUnit {
  at: Where;
  name: string;
  command?: Sited<UnitCommand>;
  enable: boolean;
  mask: boolean;
  /** Placed under /run instead of /etc. */
  runtime: boolean;
  content?: Sited<string>;
  dropIns: LegacyDropIn[];
}

/** The `write_files[].encoding` values coreos-cloudinit decoded. */
export const FILE_ENCODINGS = ['b64', 'base64', 'gz', 'gzip', 'gz+base64', 'gzip+base64', 'gz+b64', 'gzip+b64'] as const;
export type FileEncoding = (typeof FILE_ENCODINGS)[number];

export interface LegacyFile {
  at: Where;
  /** Absolute: coreos-cloudinit joined relative paths onto `/`. */
  path: string;
  /** `content` as written: text, or bytes when tagged `!!binary`. */
  written: string | Buffer;
  encoding?: FileEncoding;
  /** The bytes the file ends up holding. */
  bytes: Buffer;
  /** For gzip encodings: the compressed stream, so outputs can keep the file compressed. */
  gzipped?: Buffer;
  /** Default 0644, as coreos-cloudinit wrote it. */
  mode: number;
  owner?: FileOwner;
}

/** `owner: user:group`, `user`, or `:group`; numeric parts are ids. */
export interface FileOwner {
  text: string;
  user?: string;
  group?: string;
}

export interface LegacyUser {
  at: Where;
  name: string;
  passwordHash?: string;
  sshAuthorizedKeys: string[];
  gecos?: string;
  homedir?: string;
  noCreateHome: boolean;
  primaryGroup?: string;
  groups: string[];
  noUserGroup: boolean;
  system: boolean;
  noLogInit: boolean;
  shell?: string;
  uid?: number;
}

/** One `KEY=value` of an environment drop-in generated from `coreos.etcd2` or `coreos.fleet`. */
export interface EnvSetting {
  variable: string;
  value: string;
  at: Where;
}

/** `coreos.etcd2` / `coreos.fleet`: environment for a CoreOS-shipped unit. */
export interface EnvDropInSource {
  at: Where;
  unit: 'etcd2.service' | 'fleet.service';
  settings: EnvSetting[];
}

export interface LegacyUpdate {
  at: Where;
  rebootStrategy?: string;
  group?: string;
  server?: string;
}

export interface LegacyConfig {
  hostname?: Sited<string>;
  /** Top-level keys; coreos-cloudinit gave them to user `core`. */
  sshAuthorizedKeys?: Sited<string[]>;
  users: LegacyUser[];
  writeFiles: LegacyFile[];
  /** Set when `manage_etc_hosts: localhost`. */
  manageEtcHosts?: Where;
  envDropIns: EnvDropInSource[];
  units: LegacyUnit[];
  update?: LegacyUpdate;
}
