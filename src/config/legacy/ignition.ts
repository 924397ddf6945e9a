/**
 * LegacyConfig -> Ignition spec 3.3.0. Ignition runs once, before the system boots, and can only
 * write files, create users and enable or mask units: there is no "start now", so a unit that
 * coreos-cloudinit started (at every boot) is enabled instead.
 */
import {
  dataUrl,
  IGNITION_VERSION,
  type IgnitionConfig,
  type IgnitionFile,
  type IgnitionUnit,
  type IgnitionUser,
} from '../ignition-types';
import { STARTING_COMMANDS, type LegacyConfig, type LegacyFile, type LegacyUnit, type LegacyUser, type UnitCommand } from './model';
import { runCopies, runPlacement, runTmpfiles, RUN_TMPFILES_PATH } from './run-files';
import type { LegacySource, Where } from './source';
import { ENV_DROPIN_NAME, envDropInContents, hasInstallSection, unitKind, unitPath } from './systemd';

/** Ignition 3.3 user fields that ignition-types.ts does not list. */
interface IgnitionUserFull extends IgnitionUser {
  noUserGroup?: boolean;
  noLogInit?: boolean;
}

export function toIgnition(config: LegacyConfig, src: LegacySource): IgnitionConfig {
  const out: IgnitionConfig = { ignition: { version: IGNITION_VERSION } };

  const files = new FileTable(src);
  if (config.hostname) {
    files.add({ path: '/etc/hostname', mode: 0o644, overwrite: true, contents: { source: dataUrl(`${config.hostname.value}\n`) } }, config.hostname.at);
  }
  for (const f of config.writeFiles) {
    const p = runPlacement(f.path);
    if (p.kind === 'persistent') files.add(ignitionFile(f), f.at);
    else if (p.kind === 'unexpressible') src.error(f.at, `${f.path}: Ignition writes the root file system before the booted system mounts its /run, and this file cannot be copied there at boot: ${p.why}`);
    else if (p.kind === 'unit') {
      src.warn(f.at, `${f.path}: Ignition writes the root file system before the booted system mounts its /run, so this unit file is written to ${p.etcPath} and persists (coreos-cloudinit wrote it again at every boot)`);
      files.add({ ...ignitionFile(f), path: p.etcPath }, f.at);
    } else {
      src.warn(f.at, `${f.path}: Ignition writes the root file system before the booted system mounts its /run; written to ${p.copyPath}, which ${RUN_TMPFILES_PATH} copies to ${p.runPath} at every boot, as coreos-cloudinit wrote it at every boot`);
      files.add({ ...ignitionFile(f), path: p.copyPath }, f.at);
    }
  }
  const copies = runCopies(config.writeFiles);
  if (copies.length > 0) files.add({ path: RUN_TMPFILES_PATH, mode: 0o644, overwrite: true, contents: { source: dataUrl(runTmpfiles(copies)) } }, copies[0]!.file.at);

  const units = unitsFor(config, src, files);
  const users = usersFor(config, src);

  if (config.manageEtcHosts) {
    src.warn(
      config.manageEtcHosts,
      'not translated: coreos-cloudinit rewrote /etc/hosts from the running hostname at every boot; Ignition has no equivalent (Flatcar and Fedora CoreOS resolve their own name through nss-myhostname)',
    );
  }
  if (config.update) {
    src.warn(
      config.update.at,
      'not translated: update settings went to /etc/coreos/update.conf; Fedora CoreOS updates through Zincati (/etc/zincati/config.d) and Flatcar through /etc/flatcar/update.conf, which have different keys',
    );
  }

  if (files.size > 0) out.storage = { files: files.list() };
  if (units.length > 0) out.systemd = { units };
  if (users.length > 0) out.passwd = { users };
  return out;
}

export function serializeIgnition(config: IgnitionConfig): string {
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** Files by path in first-written order; a later write replaces an earlier one, as on disk. */
class FileTable {
  private readonly files = new Map<string, { file: IgnitionFile; at: Where }>();
  constructor(private readonly src: LegacySource) {}

  get size(): number {
    return this.files.size;
  }

  add(file: IgnitionFile, at: Where): void {
    const earlier = this.files.get(file.path);
    if (earlier) {
      this.src.warn(at, `${file.path} is also written by ${earlier.at.path || 'the config'} (line ${earlier.at.line ?? '?'}); Ignition takes each path once, so this later content replaces it, as it did on disk`);
    }
    this.files.set(file.path, { file, at });
  }

  list(): IgnitionFile[] {
    return [...this.files.values()].map((e) => e.file);
  }
}

function ignitionFile(file: LegacyFile): IgnitionFile {
  const out: IgnitionFile = {
    path: file.path,
    mode: file.mode,
    // coreos-cloudinit replaced existing files; Ignition refuses to unless told so
    overwrite: true,
    contents: file.gzipped ? { source: dataUrl(file.gzipped), compression: 'gzip' } : { source: dataUrl(textOrBytes(file.bytes)) },
  };
  const user = file.owner?.user;
  const group = file.owner?.group;
  if (user) out.user = /^\d+$/.test(user) ? { id: Number(user) } : { name: user };
  if (group) out.group = /^\d+$/.test(group) ? { id: Number(group) } : { name: group };
  return out;
}

/** Valid UTF-8 stays text (readable percent-encoding when that is short enough); anything else stays bytes. */
function textOrBytes(bytes: Buffer): string | Buffer {
  const text = bytes.toString('utf8');
  return Buffer.from(text, 'utf8').equals(bytes) ? text : bytes;
}

interface UnitDraft {
  unit: IgnitionUnit;
  dropIns: Map<string, string>;
  /** The first entry for the unit, and the entry whose content is used. */
  at: Where;
  contentAt?: Where;
}

/**
 * Merges every entry for a unit name into one Ignition unit (Ignition takes each name once;
 * coreos-cloudinit applied entries one after another, so later content and drop-ins win).
 * Network units are not systemd units to Ignition and become files under /etc/systemd/network.
 */
function unitsFor(config: LegacyConfig, src: LegacySource, files: FileTable): IgnitionUnit[] {
  const drafts = new Map<string, UnitDraft>();
  const draft = (name: string, at: Where): UnitDraft => {
    let d = drafts.get(name);
    if (!d) {
      d = { unit: { name }, dropIns: new Map(), at };
      drafts.set(name, d);
    }
    return d;
  };

  for (const unit of config.units) {
    const kind = unitKind(unit.name)!;
    if (unit.runtime) {
      src.warn(unit.at, 'runtime unit: Ignition writes the root file system from the initramfs and cannot place files in the booted system\'s /run, so this unit is written under /etc and persists');
    }
    if (kind === 'network') {
      if (unit.content) files.add({ path: unitPath(unit.name, 'network', false), mode: 0o644, overwrite: true, contents: { source: dataUrl(unit.content.value) } }, unit.content.at);
      for (const d of unit.dropIns) {
        files.add({ path: `/etc/systemd/network/${unit.name}.d/${d.name}`, mode: 0o644, overwrite: true, contents: { source: dataUrl(d.content) } }, d.at);
      }
      continue;
    }
    const d = draft(unit.name, unit.at);
    if (unit.content) {
      d.unit.contents = unit.content.value;
      d.contentAt = unit.content.at;
    }
    for (const dropIn of unit.dropIns) d.dropIns.set(dropIn.name, dropIn.content);
    if (unit.mask) d.unit.mask = true;
    if (unit.enable) d.unit.enabled = true;
    if (unit.command) translateCommand(unit, unit.command.value, unit.command.at, d.unit, src);
  }

  for (const env of config.envDropIns) {
    if (env.settings.length === 0) continue;
    draft(env.unit, env.at).dropIns.set(ENV_DROPIN_NAME, envDropInContents(env.settings));
  }

  const result: IgnitionUnit[] = [];
  for (const { unit, dropIns, at, contentAt } of drafts.values()) {
    if (unit.mask && unit.enabled) {
      src.warn(at, `${unit.name} is both masked and enabled or started; it is only masked`);
      delete unit.enabled;
    }
    if (unit.enabled && unit.contents !== undefined && contentAt && !hasInstallSection(unit.contents)) {
      src.warn(
        contentAt,
        `${unit.name} is enabled, but its content has no [Install] section, so enabling does nothing and it will not start; add [Install] WantedBy=multi-user.target`,
      );
    }
    if (dropIns.size > 0) unit.dropins = [...dropIns].map(([name, contents]) => ({ name, contents }));
    result.push(unit);
  }
  return result;
}

function translateCommand(legacy: LegacyUnit, command: UnitCommand, at: Where, unit: IgnitionUnit, src: LegacySource): void {
  if (STARTING_COMMANDS.includes(command)) {
    unit.enabled = true;
    return;
  }
  // Stopping a masked unit is what masking already guarantees.
  if (legacy.mask && command === 'stop') return;
  src.warn(
    at,
    `not translated: \`${command}\` acts on a running ${legacy.name}; Ignition runs before any unit starts and can only enable or mask units`,
  );
}

/** Users in order; a name given twice is merged, and the top-level keys go to `core` as on CoreOS. */
function usersFor(config: LegacyConfig, src: LegacySource): IgnitionUserFull[] {
  const users = new Map<string, IgnitionUserFull>();
  for (const legacy of config.users) {
    const user = ignitionUser(legacy);
    const earlier = users.get(user.name);
    if (earlier) {
      src.warn(legacy.at, `user ${user.name} is listed more than once; Ignition takes each user once, so the entries are merged (later values win, keys and groups are combined)`);
      users.set(user.name, mergeUsers(earlier, user));
    } else users.set(user.name, user);
  }
  if (config.sshAuthorizedKeys) {
    const core = users.get('core') ?? { name: 'core' };
    core.sshAuthorizedKeys = unique([...(core.sshAuthorizedKeys ?? []), ...config.sshAuthorizedKeys.value]);
    users.set('core', core);
  }
  return [...users.values()];
}

function ignitionUser(user: LegacyUser): IgnitionUserFull {
  const out: IgnitionUserFull = { name: user.name };
  if (user.passwordHash) out.passwordHash = user.passwordHash;
  if (user.sshAuthorizedKeys.length > 0) out.sshAuthorizedKeys = user.sshAuthorizedKeys;
  if (user.uid !== undefined) out.uid = user.uid;
  if (user.gecos) out.gecos = user.gecos;
  if (user.homedir) out.homeDir = user.homedir;
  if (user.noCreateHome) out.noCreateHome = true;
  if (user.primaryGroup) out.primaryGroup = user.primaryGroup;
  if (user.groups.length > 0) out.groups = user.groups;
  if (user.noUserGroup) out.noUserGroup = true;
  if (user.noLogInit) out.noLogInit = true;
  if (user.shell) out.shell = user.shell;
  if (user.system) out.system = true;
  return out;
}

function mergeUsers(a: IgnitionUserFull, b: IgnitionUserFull): IgnitionUserFull {
  const merged: IgnitionUserFull = { ...a, ...b };
  const keys = unique([...(a.sshAuthorizedKeys ?? []), ...(b.sshAuthorizedKeys ?? [])]);
  const groups = unique([...(a.groups ?? []), ...(b.groups ?? [])]);
  if (keys.length > 0) merged.sshAuthorizedKeys = keys;
  if (groups.length > 0) merged.groups = groups;
  return merged;
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
