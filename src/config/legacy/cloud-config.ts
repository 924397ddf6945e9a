/**
 * LegacyConfig -> modern cloud-config for cloud-init 22.4 (Debian 12). Units become files
 * under /etc/systemd (write_files) plus systemctl calls (runcmd). The big difference to keep
 * in mind: coreos-cloudinit ran at every boot, cloud-init runs write_files and runcmd once.
 */
import { Document, isSeq, visit } from 'yaml';
import { STARTING_COMMANDS, type LegacyConfig, type LegacyFile, type LegacyUnit, type LegacyUser, type UnitCommand } from './model';
import type { LegacySource, Where } from './source';
import { runCopies, runPlacement, runTmpfiles, RUN_TMPFILES_PATH } from './run-files';
import { dropInPath, ENV_DROPIN_NAME, envDropInContents, unitKind, unitPath } from './systemd';

/** The subset of cloud-init's `users` entry the converter writes. */
export interface CloudConfigUser {
  name: string;
  gecos?: string;
  homedir?: string;
  /** Applied even when the user exists, as coreos-cloudinit applied `passwd`. */
  hashed_passwd?: string;
  /** cloud-init locks passwords by default; a given hash is meant to be usable. */
  lock_passwd?: boolean;
  primary_group?: string;
  groups?: string[];
  shell?: string;
  ssh_authorized_keys?: string[];
  no_create_home?: boolean;
  no_user_group?: boolean;
  no_log_init?: boolean;
  system?: boolean;
  uid?: number;
}

export interface CloudConfigFile {
  path: string;
  content: string;
  encoding?: 'b64' | 'base64' | 'gz' | 'gzip' | 'gz+base64' | 'gzip+base64' | 'gz+b64' | 'gzip+b64';
  /** Octal string such as "0644". */
  permissions: string;
  owner?: string;
  /** Write in the final stage, after users exist, so `owner` can name them. */
  defer?: boolean;
}

export interface ModernCloudConfig {
  hostname?: string;
  manage_etc_hosts?: 'localhost';
  /** `default` is cloud-init's distribution user (debian on Debian 12). */
  users?: Array<'default' | CloudConfigUser>;
  ssh_authorized_keys?: string[];
  write_files?: CloudConfigFile[];
  /** Argument vectors; cloud-init shell-quotes each word. */
  runcmd?: string[][];
}

export function toCloudConfig(config: LegacyConfig, src: LegacySource): ModernCloudConfig {
  const out: ModernCloudConfig = {};
  if (config.hostname) out.hostname = config.hostname.value;
  if (config.manageEtcHosts) out.manage_etc_hosts = 'localhost';

  const users: Array<'default' | CloudConfigUser> = config.users.map((u) => cloudConfigUser(u, src));
  if (config.sshAuthorizedKeys) {
    out.ssh_authorized_keys = config.sshAuthorizedKeys.value;
    // cloud-init gives top-level keys to the default user, which exists only if `users` lists it.
    if (users.length > 0) users.unshift('default');
    src.warn(
      config.sshAuthorizedKeys.at,
      'coreos-cloudinit gave these keys to user `core`; cloud-init gives them to the distribution\'s default user (`debian` on Debian 12). Add a user `core` with these keys if logins depend on that name',
    );
  }
  if (users.length > 0) out.users = users;

  const files: CloudConfigFile[] = config.writeFiles.map(cloudConfigFile);
  files.push(...runFileCopies(config, src));
  if (config.update) files.push(updateConfFile(config, src));
  const runcmd = unitFilesAndCommands(config, src, files);
  if (files.length > 0) out.write_files = files;
  if (runcmd.length > 0) out.runcmd = runcmd;
  checkCarriable(config, src);
  return out;
}

/** Names and other short text have no base64 fallback, so text cloud-init would misread is an error. */
function checkCarriable(config: LegacyConfig, src: LegacySource): void {
  const check = (text: string | undefined, at: Where, what: string): void => {
    const bad = text === undefined ? null : PYYAML_UNSAFE.exec(text);
    if (bad) {
      src.error(at, `${what} contains U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}, which cloud-init's YAML reader would not read back as written`);
    }
  };
  check(config.hostname?.value, config.hostname?.at ?? { path: 'hostname' }, 'hostname');
  for (const key of config.sshAuthorizedKeys?.value ?? []) check(key, config.sshAuthorizedKeys!.at, 'an SSH key');
  for (const u of config.users) {
    for (const text of [u.name, u.gecos, u.homedir, u.passwordHash, u.primaryGroup, u.shell, ...u.groups, ...u.sshAuthorizedKeys]) check(text, u.at, 'a user field');
  }
  for (const f of config.writeFiles) {
    check(f.path, f.at, 'the path');
    check(f.owner?.text, f.at, 'the owner');
  }
  for (const unit of config.units) for (const d of unit.dropIns) check(d.name, d.at, 'the drop-in name');
}

/** `#cloud-config` and the YAML, quoted for YAML 1.1 readers (cloud-init uses PyYAML, where `on` is a boolean). */
export function serializeCloudConfig(config: ModernCloudConfig): string {
  const doc = new Document(config, { version: '1.1' });
  // `- [systemctl, enable, x]` reads better than one word per line
  const runcmd = doc.get('runcmd', true);
  if (isSeq(runcmd)) for (const item of runcmd.items) if (isSeq(item)) item.flow = true;
  // PyYAML ends an unquoted scalar at a tab; double quotes carry it as \t
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value === 'string' && node.value.includes('\t') && !node.value.includes('\n')) node.type = 'QUOTE_DOUBLE';
    },
  });
  return `#cloud-config\n${doc.toString({ lineWidth: 0 })}`;
}

function cloudConfigUser(user: LegacyUser, src: LegacySource): CloudConfigUser {
  const out: CloudConfigUser = { name: user.name };
  if (user.gecos) out.gecos = user.gecos;
  if (user.homedir) out.homedir = user.homedir;
  if (user.passwordHash) {
    out.hashed_passwd = user.passwordHash;
    out.lock_passwd = false;
  }
  if (user.primaryGroup) out.primary_group = user.primaryGroup;
  if (user.groups.length > 0) out.groups = user.groups;
  if (user.shell) out.shell = user.shell;
  if (user.sshAuthorizedKeys.length > 0) out.ssh_authorized_keys = user.sshAuthorizedKeys;
  if (user.noCreateHome) out.no_create_home = true;
  if (user.noUserGroup) out.no_user_group = true;
  if (user.noLogInit) out.no_log_init = true;
  if (user.system) {
    out.system = true;
    if (!user.noCreateHome) {
      src.warn(user.at, 'system user: coreos-cloudinit created its home directory, cloud-init creates system users without one');
    }
  }
  if (user.uid !== undefined) out.uid = user.uid;
  return out;
}

function permissionsText(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

/** Owners other than root or numeric ids may be users this config creates, which happens after write_files. */
function needsUsers(file: LegacyFile): boolean {
  const names = [file.owner?.user, file.owner?.group].filter((n): n is string => n !== undefined);
  return names.some((n) => n !== 'root' && !/^\d+$/.test(n));
}

/**
 * Characters PyYAML (cloud-init's YAML reader) would not read back as written: tabs in an
 * unquoted line, YAML 1.1 line breaks (NEL, LS, PS), C1 controls and U+FFFE/U+FFFF, which the
 * `yaml` package emits raw even inside double quotes.
 */
const PYYAML_UNSAFE = /[\x7f-\x9f\u2028\u2029\ufffe\uffff]/;

/** A file whose text cannot travel as YAML text travels as base64 instead (cloud-init decodes it). */
function textFile(path: string, text: string, permissions = '0644'): CloudConfigFile {
  if (!PYYAML_UNSAFE.test(text)) return { path, content: text, permissions };
  return { path, content: Buffer.from(text, 'utf8').toString('base64'), encoding: 'b64', permissions };
}

function cloudConfigFile(file: LegacyFile): CloudConfigFile {
  const out: CloudConfigFile = { path: file.path, content: '', permissions: permissionsText(file.mode) };
  if (typeof file.written === 'string' && !PYYAML_UNSAFE.test(file.written)) {
    out.content = file.written;
    if (file.encoding) out.encoding = file.encoding;
  } else if (file.gzipped) {
    // `!!binary` content (or text YAML cannot carry): base64 text, still compressed
    out.content = file.gzipped.toString('base64');
    out.encoding = 'gz+b64';
  } else {
    out.content = file.bytes.toString('base64');
    out.encoding = 'b64';
  }
  if (file.owner) out.owner = file.owner.text;
  if (needsUsers(file)) out.defer = true;
  return out;
}

/**
 * Files under /run are written there for the first boot, as before, plus a persistent copy
 * that tmpfiles puts back at every later boot; units under /run/systemd are only warned about.
 */
function runFileCopies(config: LegacyConfig, src: LegacySource): CloudConfigFile[] {
  for (const file of config.writeFiles) {
    const p = runPlacement(file.path);
    if (p.kind === 'unexpressible') src.warn(file.at, `${file.path}: /run is emptied at every boot and cloud-init writes it on the first boot only; it cannot be kept for later boots: ${p.why}`);
    if (p.kind !== 'unit') continue;
    src.warn(
      file.at,
      `${file.path}: /run is emptied at every boot; coreos-cloudinit wrote it again at each boot, cloud-init writes it on the first boot only, so it is gone after a reboot (systemd reads unit files before tmpfiles runs: write it to ${p.etcPath} instead)`,
    );
  }
  const copies = runCopies(config.writeFiles);
  if (copies.length === 0) return [];
  for (const c of copies) {
    src.warn(
      c.file.at,
      `${c.file.path}: /run is emptied at every boot; coreos-cloudinit wrote it again at each boot, cloud-init writes it on the first boot only. Also written to ${c.copyPath}, which ${RUN_TMPFILES_PATH} copies to ${c.runPath} at every boot`,
    );
  }
  return [...copies.map((c) => ({ ...cloudConfigFile(c.file), path: c.copyPath })), textFile(RUN_TMPFILES_PATH, runTmpfiles(copies))];
}

/** What coreos-cloudinit wrote to /etc/coreos/update.conf (keys sorted, as it appended them). */
function updateConfFile(config: LegacyConfig, src: LegacySource): CloudConfigFile {
  const update = config.update!;
  const lines: string[] = [];
  if (update.group) lines.push(`GROUP=${update.group}`);
  if (update.rebootStrategy) lines.push(`REBOOT_STRATEGY=${update.rebootStrategy}`);
  if (update.server) lines.push(`SERVER=${update.server}`);
  src.warn(
    update.at,
    'written to /etc/coreos/update.conf as coreos-cloudinit did, but nothing on Debian 12 reads it (update_engine and locksmithd are CoreOS programs); the locksmithd/update-engine restarts coreos-cloudinit made are left out. Use unattended-upgrades for updates',
  );
  return textFile('/etc/coreos/update.conf', lines.length > 0 ? `${lines.join('\n')}\n` : '');
}

/**
 * Appends unit files and drop-ins to `files` and returns the runcmd: daemon-reload, a
 * systemd-networkd restart if network units were written, then mask/enable per unit and
 * finally the unit commands, each group in file order (coreos-cloudinit's order).
 */
function unitFilesAndCommands(config: LegacyConfig, src: LegacySource, files: CloudConfigFile[]): string[][] {
  const setup: string[][] = [];
  const commands: string[][] = [];
  let networkUnits = false;
  for (const unit of config.units) {
    const kind = unitKind(unit.name)!;
    if (unit.content) files.push(textFile(unitPath(unit.name, kind, unit.runtime), unit.content.value));
    for (const d of unit.dropIns) {
      if (isReplacedByEnvDropIn(config, unit, d.name)) continue;
      files.push(textFile(dropInPath(unit.name, kind, unit.runtime, d), d.content));
    }
    if (unit.runtime && (unit.content || unit.dropIns.length > 0)) warnRuntime(unit, src);
    if (kind === 'network') {
      networkUnits ||= unit.content !== undefined || unit.dropIns.length > 0;
      continue;
    }
    const runtimeFlag = unit.runtime ? ['--runtime'] : [];
    if (unit.mask) setup.push(['systemctl', 'mask', ...runtimeFlag, unit.name]);
    if (unit.enable) setup.push(['systemctl', 'enable', ...runtimeFlag, unit.name]);
    if (unit.command) {
      commands.push(['systemctl', unit.command.value, unit.name]);
      warnFirstBootOnly(unit, unit.command.value, unit.command.at, src);
    }
  }
  for (const env of config.envDropIns) {
    if (env.settings.length === 0) continue;
    // Persistent under /etc: coreos-cloudinit re-created its /run copy at every boot, cloud-init writes once.
    const path = dropInPath(env.unit, 'system', false, { name: ENV_DROPIN_NAME, content: '', at: env.at });
    files.push(textFile(path, envDropInContents(env.settings)));
  }
  const wroteUnits = files.some((f) => f.path.startsWith('/etc/systemd/') || f.path.startsWith('/run/systemd/'));
  if (!wroteUnits && setup.length === 0 && commands.length === 0) return [];
  const runcmd: string[][] = [['systemctl', 'daemon-reload']];
  if (networkUnits) runcmd.push(['systemctl', 'restart', 'systemd-networkd']);
  return [...runcmd, ...setup, ...commands];
}

function isReplacedByEnvDropIn(config: LegacyConfig, unit: LegacyUnit, dropIn: string): boolean {
  return dropIn === ENV_DROPIN_NAME && config.envDropIns.some((e) => e.unit === unit.name && e.settings.length > 0);
}

/** coreos-cloudinit ran at every boot, cloud-init's runcmd once; say so where it matters. */
function warnFirstBootOnly(unit: LegacyUnit, command: UnitCommand, at: Where, src: LegacySource): void {
  if (unit.mask) return; // a masked unit stays down whatever runs when
  if (!STARTING_COMMANDS.includes(command)) {
    src.warn(at, `coreos-cloudinit ran \`${command}\` at every boot; cloud-init's runcmd runs it on the first boot only`);
  } else if (!unit.enable) {
    src.warn(
      at,
      `coreos-cloudinit ran \`${command}\` at every boot; cloud-init's runcmd runs it on the first boot only, and the unit is not enabled here (add \`enable: true\` to start it at every boot)`,
    );
  }
}

function warnRuntime(unit: LegacyUnit, src: LegacySource): void {
  src.warn(
    unit.at,
    `runtime unit: written under /run, which is emptied at reboot; coreos-cloudinit wrote it again at every boot, cloud-init writes files on the first boot only, so the unit is gone after a reboot (drop \`runtime\` to keep it under /etc)`,
  );
}
