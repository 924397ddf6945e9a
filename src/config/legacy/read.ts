/**
 * Reads a legacy CoreOS cloud-config into a LegacyConfig, checking it the way coreos-cloudinit
 * would have used it. Broken input becomes errors; valid input that no modern system has an
 * equivalent for (whatever the output format) becomes warnings.
 */
import { gunzipSync } from 'node:zlib';
import { isMap, isScalar, type Node } from 'yaml';
import {
  FILE_ENCODINGS,
  UNIT_COMMANDS,
  type EnvDropInSource,
  type EnvSetting,
  type FileEncoding,
  type FileOwner,
  type LegacyConfig,
  type LegacyDropIn,
  type LegacyFile,
  type LegacyUnit,
  type LegacyUpdate,
  type LegacyUser,
  type UnitCommand,
} from './model';
import { resolveIncludes } from './include';
import { describe, isEmpty, templateHint, type Field, type LegacySource, type Where } from './source';
import {
  COREOS_ONLY_UNITS,
  ENV_DROPIN_NAME,
  ETCD2_SETTINGS,
  FLEET_SETTINGS,
  isValidDropInName,
  unitKind,
  unitSyntaxProblem,
  type SettingKind,
} from './systemd';

const TOP_LEVEL_KEYS = ['ssh_authorized_keys', 'coreos', 'write_files', 'hostname', 'users', 'manage_etc_hosts'];
const COREOS_KEYS = ['etcd', 'etcd2', 'flannel', 'fleet', 'locksmith', 'oem', 'update', 'units'];
const UNIT_KEYS = ['name', 'mask', 'enable', 'runtime', 'content', 'command', 'drop_ins'];
const DROPIN_KEYS = ['name', 'content'];
const UPDATE_KEYS = ['reboot_strategy', 'group', 'server'];
/** `append` and `defer` are cloud-init's, read only to report them. */
const FILE_KEYS = ['path', 'content', 'encoding', 'owner', 'permissions', 'append', 'defer'];
const USER_KEYS = [
  'name',
  'passwd',
  'groups',
  'homedir',
  'shell',
  'ssh_authorized_keys',
  'no_create_home',
  'primary_group',
  'system',
  'gecos',
  'uid',
  'no_user_group',
  'no_log_init',
  'coreos_ssh_import_github',
  'coreos_ssh_import_github_users',
  'coreos_ssh_import_url',
];

/** Why each CoreOS service section has no translation. */
const UNTRANSLATED_COREOS: Readonly<Record<string, string>> = {
  etcd: 'etcd 0.4 settings (etcd.service drop-in); no current system ships that etcd',
  flannel:
    'flanneld settings (FLANNELD_* in flanneld.service.d/20-cloudinit.conf); no current system ships flanneld.service (flannel now runs as a Kubernetes DaemonSet)',
  locksmith:
    'locksmithd reboot-coordination settings; Debian 12 has no locksmithd, and on Flatcar it is configured through /etc/flatcar/update.conf',
  oem: 'OEM identification (/etc/oem-release); describes a CoreOS image build and has no equivalent',
};

const SUBSTITUTIONS = /\\?\$(public|private)_ipv[46]\b/g;

export function readLegacyConfig(src: LegacySource): LegacyConfig {
  const config: LegacyConfig = { users: [], writeFiles: [], envDropIns: [], units: [] };
  checkHeader(src);
  if (src.doc.errors.length > 0) return config; // the tree is unreliable after a syntax error

  const root = src.doc.contents;
  const rootAt = src.where('', root);
  if (isEmpty(root)) {
    src.error({ path: '', line: 1 }, 'the document is empty');
    return config;
  }
  const top = src.mapping(src.deref(root), '', rootAt, TOP_LEVEL_KEYS);
  if (!top) return config;

  const hostname = top.get('hostname');
  const hostnameText = src.string(hostname);
  if (hostname && hostnameText) {
    config.hostname = { value: hostnameText, at: hostname.at };
    if (!/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(hostnameText) || hostnameText.length > 253) {
      src.warn(hostname.at, 'is not a valid host name (RFC 1123); it is passed on unchanged, but hostnamectl and the kernel will refuse or truncate it');
    }
  }

  const keys = top.get('ssh_authorized_keys');
  const keyList = src.strings(keys);
  if (keys && keyList && keyList.length > 0) config.sshAuthorizedKeys = { value: keyList, at: keys.at };

  const users = top.get('users');
  if (users) for (const item of src.sequence(users) ?? []) {
    const user = readUser(src, item.node, item.path, item.at);
    if (user) config.users.push(user);
  }

  const files = top.get('write_files');
  if (files) for (const item of src.sequence(files) ?? []) {
    const file = readFile(src, item.node, item.path, item.at);
    if (file) config.writeFiles.push(file);
  }

  const etcHosts = top.get('manage_etc_hosts');
  if (etcHosts) readManageEtcHosts(src, etcHosts, config);

  const coreos = top.get('coreos');
  if (coreos) readCoreos(src, coreos, config);
  resolveIncludes(src, config);

  reportSubstitutions(src);
  return config;
}

/** coreos-cloudinit only took user-data whose first line, trailing blanks aside, is `#cloud-config`. */
function checkHeader(src: LegacySource): void {
  const first = src.text.split('\n', 1)[0]!.replace(/\s+$/, '');
  if (first !== '#cloud-config') {
    const found = first === '' ? 'an empty line' : `\`${first.length > 40 ? `${first.slice(0, 40)}…` : first}\``;
    src.error({ path: '', line: 1, column: 1 }, `the first line must be \`#cloud-config\` (coreos-cloudinit compared the whole line and ignored anything else), found ${found}`);
  }
}

function readManageEtcHosts(src: LegacySource, field: Field, config: LegacyConfig): void {
  const node = field.value;
  // `false` or nothing asks for nothing, which is what leaving the key out does.
  if (isEmpty(node) || (isScalar(node) && node.value === false)) return;
  if (isScalar(node) && node.value === 'localhost') {
    config.manageEtcHosts = field.at;
    return;
  }
  src.error(field.at, `coreos-cloudinit accepted only \`localhost\` here, found ${src.describeNonText(node)}`);
}

function readCoreos(src: LegacySource, field: Field, config: LegacyConfig): void {
  const coreos = src.mapping(field.value, field.path, field.at, COREOS_KEYS);
  if (!coreos) return;
  for (const [name, why] of Object.entries(UNTRANSLATED_COREOS)) {
    const section = coreos.get(name);
    if (!section) continue;
    if (!isEmpty(section.value) && !isMap(section.value)) {
      src.error(section.at, `expected a mapping (key: value lines), found ${describe(section.value)}`);
      continue;
    }
    src.warn(section.keyAt, `not translated: ${why}`);
    const settings = src.settings(section);
    if (settings) src.scalarsOnly(settings);
  }

  const etcd2 = coreos.get('etcd2');
  if (etcd2) {
    const env = readEnvSection(src, etcd2, 'etcd2.service', 'ETCD_', ETCD2_SETTINGS);
    if (env) config.envDropIns.push(env);
  }
  const fleet = coreos.get('fleet');
  if (fleet) {
    const env = readEnvSection(src, fleet, 'fleet.service', 'FLEET_', FLEET_SETTINGS);
    if (env) config.envDropIns.push(env);
  }

  const update = coreos.get('update');
  if (update) config.update = readUpdate(src, update);

  const units = coreos.get('units');
  if (units) for (const item of src.sequence(units) ?? []) {
    const unit = readUnit(src, item.node, item.path, item.at);
    if (unit) config.units.push(unit);
  }
  checkEnvDropIns(src, config);
}

/**
 * The generated drop-ins keep the unit names of the source (etcd2.service, fleet.service) rather
 * than guessing a modern replacement, so each is reported unless the config itself defines that
 * unit. A user drop-in with the generated name is replaced, as coreos-cloudinit wrote its own last.
 */
function checkEnvDropIns(src: LegacySource, config: LegacyConfig): void {
  for (const env of config.envDropIns) {
    if (env.settings.length === 0) continue;
    const defined = config.units.some((u) => u.name === env.unit && u.content);
    if (!defined) {
      src.warn(
        env.at,
        `written as drop-in ${env.unit}.d/${ENV_DROPIN_NAME} under the CoreOS unit name, which the target does not ship (${COREOS_ONLY_UNITS[env.unit]}); it takes effect only once a unit named ${env.unit} exists`,
      );
    }
    for (const unit of config.units) {
      if (unit.name !== env.unit) continue;
      for (const d of unit.dropIns) {
        if (d.name === ENV_DROPIN_NAME) src.warn(d.at, `replaced by the drop-in generated from ${env.at.path}, as coreos-cloudinit wrote that one last`);
      }
    }
  }
}

/**
 * `coreos.etcd2` / `coreos.fleet`: each key becomes `PREFIX_KEY=value`. Empty, false and zero
 * values are left out, as coreos-cloudinit left them out (they mean "the daemon's default").
 */
function readEnvSection(
  src: LegacySource,
  field: Field,
  unit: EnvDropInSource['unit'],
  prefix: string,
  kinds: Readonly<Record<string, SettingKind>>,
): EnvDropInSource | undefined {
  const section = src.mapping(field.value, field.path, field.at, Object.keys(kinds));
  if (!section) return undefined;
  const settings: EnvSetting[] = [];
  for (const [name, f] of section) {
    const kind = kinds[name]!;
    let value: string | undefined;
    if (kind === 'string') value = src.string(f);
    else if (kind === 'bool') value = src.boolean(f) ? 'true' : undefined;
    else {
      const n = src.number(f, kind === 'int');
      value = n ? String(n) : undefined;
    }
    if (value === undefined || value === '') continue;
    if (name === 'proxy' && !/^(on|off|readonly)$/.test(value)) {
      src.error(f.at, `must be on, off or readonly, found ${JSON.stringify(value)}${templateHint(value)}`);
      continue;
    }
    settings.push({ variable: `${prefix}${name.toUpperCase()}`, value, at: f.at });
  }
  return { at: field.keyAt, unit, settings };
}

function readUpdate(src: LegacySource, field: Field): LegacyUpdate | undefined {
  const update = src.mapping(field.value, field.path, field.at, UPDATE_KEYS);
  if (!update) return undefined;
  const result: LegacyUpdate = { at: field.keyAt };
  const strategy = update.get('reboot_strategy');
  const strategyText = src.string(strategy);
  if (strategy && strategyText !== undefined) {
    // best-effort was accepted by older releases and meant etcd-lock when etcd runs, else reboot
    if (/^(best-effort|etcd-lock|reboot|off)$/.test(strategyText)) result.rebootStrategy = strategyText;
    else src.error(strategy.at, `must be etcd-lock, reboot, off or best-effort, found ${JSON.stringify(strategyText)}${templateHint(strategyText)}`);
  }
  const group = src.string(update.get('group'));
  if (group) result.group = group;
  const server = src.string(update.get('server'));
  if (server) result.server = server;
  return result;
}

function readUnit(src: LegacySource, node: Node | null, path: string, at: Where): LegacyUnit | undefined {
  const fields = src.mapping(node, path, at, UNIT_KEYS);
  if (!fields) return undefined;
  const name = src.string(fields.get('name'));
  const enable = src.boolean(fields.get('enable')) ?? false;
  const mask = src.boolean(fields.get('mask')) ?? false;
  const runtime = src.boolean(fields.get('runtime')) ?? false;
  const commandField = fields.get('command');
  const commandText = src.string(commandField);
  const contentField = fields.get('content');
  const content = src.string(contentField);

  if (!name) {
    src.error(at, 'unit has no `name`');
    return undefined;
  }
  const nameAt = fields.get('name')!.at;
  const kind = unitKind(name);
  if (!kind) {
    src.error(nameAt, `${JSON.stringify(name)} is not a systemd unit name (letters, digits, ":_.\\@-" and a unit type suffix such as .service)`);
    return undefined;
  }

  const unit: LegacyUnit = { at: nameAt, name, enable, mask, runtime, dropIns: [] };
  if (commandField && commandText !== undefined) {
    if ((UNIT_COMMANDS as readonly string[]).includes(commandText)) unit.command = { value: commandText as UnitCommand, at: commandField.at };
    else src.error(commandField.at, `unknown unit command ${JSON.stringify(commandText)}; coreos-cloudinit accepted ${UNIT_COMMANDS.join(', ')}`);
  }
  if (contentField && content) {
    const bad = unitSyntaxProblem(content);
    if (bad) src.error(contentField.at, `unit content line ${bad.line}: ${bad.message}; systemd skips such lines and Ignition rejects the whole unit`);
    else if (mask) src.warn(contentField.at, 'the unit is masked, so its content is not written (coreos-cloudinit replaced it with a link to /dev/null too)');
    else unit.content = { value: content, at: contentField.at };
  } else if (!mask && COREOS_ONLY_UNITS[name]) {
    src.warn(nameAt, `${name} has no \`content\` here, so it refers to the unit CoreOS shipped (${COREOS_ONLY_UNITS[name]}); without a unit of that name on the target, this entry does nothing`);
  }

  const dropIns = fields.get('drop_ins');
  if (dropIns) for (const item of src.sequence(dropIns) ?? []) {
    const dropIn = readDropIn(src, item.node, item.path, item.at);
    if (dropIn) unit.dropIns.push(dropIn);
  }

  if (kind === 'network') {
    if (enable) src.warn(fields.get('enable')!.at, 'network units (.network, .netdev, .link) are not enabled; coreos-cloudinit ignored `enable` for them too');
    if (unit.command) src.warn(unit.command.at, 'network units are not started; coreos-cloudinit ignored `command` for them and restarted systemd-networkd instead, as the output does');
  }
  return unit;
}

function readDropIn(src: LegacySource, node: Node | null, path: string, at: Where): LegacyDropIn | undefined {
  const fields = src.mapping(node, path, at, DROPIN_KEYS);
  if (!fields) return undefined;
  const name = src.string(fields.get('name'));
  const content = src.string(fields.get('content'));
  if (!name) {
    src.error(at, 'drop-in has no `name`');
    return undefined;
  }
  const nameAt = fields.get('name')!.at;
  if (!isValidDropInName(name)) {
    src.error(nameAt, `${JSON.stringify(name)} is not a file name`);
    return undefined;
  }
  if (!name.endsWith('.conf')) {
    src.warn(nameAt, `not translated: systemd reads only drop-ins ending in .conf, so ${JSON.stringify(name)} never had an effect (and Ignition rejects it)`);
    return undefined;
  }
  if (!content) {
    src.warn(fields.get('content')?.at ?? nameAt, 'drop-in has no content; coreos-cloudinit skipped it, and so does the output');
    return undefined;
  }
  return { name, content, at: nameAt };
}

function readFile(src: LegacySource, node: Node | null, path: string, at: Where): LegacyFile | undefined {
  const fields = src.mapping(node, path, at, FILE_KEYS);
  if (!fields) return undefined;
  for (const name of ['append', 'defer'] as const) {
    const f = fields.get(name);
    if (f) src.warn(f.keyAt, `not translated: \`${f.key}\` is a cloud-init option coreos-cloudinit did not have; it replaced the file at once, and so does the output`);
  }
  const filePath = src.string(fields.get('path'));
  const contentField = fields.get('content');
  const written = src.stringOrBytes(contentField) ?? '';
  const encodingField = fields.get('encoding');
  const encodingText = src.string(encodingField);
  const permissionsField = fields.get('permissions');
  const permissions = src.string(permissionsField);
  const ownerText = src.string(fields.get('owner'));

  if (!filePath) {
    src.error(at, 'file has no `path`');
    return undefined;
  }
  let ok = true;
  let encoding: FileEncoding | undefined;
  if (encodingField && encodingText !== undefined && encodingText !== '') {
    if ((FILE_ENCODINGS as readonly string[]).includes(encodingText)) encoding = encodingText as FileEncoding;
    else {
      src.error(encodingField.at, `unsupported encoding ${JSON.stringify(encodingText)}; coreos-cloudinit decoded ${FILE_ENCODINGS.join(', ')}`);
      ok = false;
    }
  }
  let mode = 0o644;
  if (permissionsField && permissions !== undefined) {
    if (/^0?[0-7]{3,4}$/.test(permissions)) mode = parseInt(permissions, 8);
    else {
      src.error(permissionsField.at, `permissions must be an octal mode such as "0644", found ${JSON.stringify(permissions)}${templateHint(permissions)}`);
      ok = false;
    }
  }
  const decoded = ok ? decodeContent(src, written, encoding, contentField?.at ?? at) : undefined;
  if (!decoded) return undefined;
  const file: LegacyFile = {
    at: fields.get('path')!.at,
    path: filePath.startsWith('/') ? filePath : `/${filePath}`,
    written,
    bytes: decoded.bytes,
    mode,
  };
  if (encoding) file.encoding = encoding;
  if (decoded.gzipped) file.gzipped = decoded.gzipped;
  if (ownerText) file.owner = parseOwner(ownerText);
  return file;
}

/** Decodes `content` as coreos-cloudinit did (config/decode.go): base64 strictly, gzip fully. */
function decodeContent(
  src: LegacySource,
  written: string | Buffer,
  encoding: FileEncoding | undefined,
  at: Where,
): { bytes: Buffer; gzipped?: Buffer } | undefined {
  const raw = typeof written === 'string' ? Buffer.from(written, 'utf8') : written;
  if (!encoding) return { bytes: raw };
  const isBase64 = encoding === 'b64' || encoding === 'base64' || encoding.endsWith('+base64') || encoding.endsWith('+b64');
  const isGzip = encoding.startsWith('gz');
  let data = raw;
  if (isBase64) {
    const decoded = decodeBase64Strict(raw.toString('latin1'));
    if (typeof decoded === 'string') {
      src.error(at, `content is not valid base64 (encoding ${encoding}): ${decoded}${templateHint(raw.toString('latin1'))}`);
      return undefined;
    }
    data = decoded;
  }
  if (!isGzip) return { bytes: data };
  try {
    return { bytes: gunzipSync(data), gzipped: data };
  } catch (err) {
    src.error(at, `content is not valid gzip data (encoding ${encoding}): ${(err as Error).message}`);
    return undefined;
  }
}

/** Go's base64.StdEncoding: padded standard alphabet, line breaks ignored. Returns the bytes or why not. */
function decodeBase64Strict(text: string): Buffer | string {
  const compact = text.replace(/[\r\n]/g, '');
  const bad = /[^A-Za-z0-9+/=]/.exec(compact);
  if (bad) return `character ${JSON.stringify(bad[0])} at offset ${bad.index} is not in the base64 alphabet`;
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(compact)) {
    return 'wrong length or misplaced `=` padding';
  }
  return Buffer.from(compact, 'base64');
}

function parseOwner(text: string): FileOwner {
  const colon = text.indexOf(':');
  const user = colon < 0 ? text : text.slice(0, colon);
  const group = colon < 0 ? '' : text.slice(colon + 1);
  return { text, ...(user ? { user } : {}), ...(group ? { group } : {}) };
}

function readUser(src: LegacySource, node: Node | null, path: string, at: Where): LegacyUser | undefined {
  const fields = src.mapping(node, path, at, USER_KEYS);
  if (!fields) return undefined;
  for (const name of ['coreos_ssh_import_github', 'coreos_ssh_import_github_users', 'coreos_ssh_import_url']) {
    const f = fields.get(name);
    if (f) {
      src.warn(
        f.keyAt,
        `not translated: \`${f.key}\` fetched keys over the network at every boot (deprecated by coreos-cloudinit itself); list the keys in ssh-authorized-keys (cloud-init also offers ssh_import_id: [gh:USER])`,
      );
    }
  }
  const name = src.string(fields.get('name'));
  const user: LegacyUser = {
    at,
    name: name ?? '',
    sshAuthorizedKeys: src.strings(fields.get('ssh_authorized_keys')) ?? [],
    groups: src.strings(fields.get('groups')) ?? [],
    noCreateHome: src.boolean(fields.get('no_create_home')) ?? false,
    noUserGroup: src.boolean(fields.get('no_user_group')) ?? false,
    noLogInit: src.boolean(fields.get('no_log_init')) ?? false,
    system: src.boolean(fields.get('system')) ?? false,
  };
  const optional = { passwordHash: 'passwd', gecos: 'gecos', homedir: 'homedir', primaryGroup: 'primary_group', shell: 'shell' } as const;
  for (const [prop, key] of Object.entries(optional) as Array<[keyof typeof optional, string]>) {
    const value = src.string(fields.get(key));
    if (value) user[prop] = value;
  }
  const uid = src.number(fields.get('uid'), true);
  if (uid !== undefined) user.uid = uid;
  if (!name) {
    src.error(at, 'user has no `name`');
    return undefined;
  }
  user.at = fields.get('name')!.at;
  return user;
}

/**
 * coreos-cloudinit replaced `$private_ipv4` and friends with the machine's addresses from the
 * provider's metadata before parsing. Neither cloud-init nor Ignition does, so each use is reported.
 */
function reportSubstitutions(src: LegacySource): void {
  src.eachText((text, at) => {
    const found = new Set<string>();
    for (const m of text.matchAll(SUBSTITUTIONS)) found.add(m[0]);
    if (found.size === 0) return;
    const names = [...found].map((n) => `\`${n}\``).join(', ');
    src.warn(
      at,
      `${names}: coreos-cloudinit replaced these with the machine's address from provider metadata (a leading \\ kept the text); cloud-init and Ignition leave them as they are, so fill in the address or set it at boot`,
    );
  });
}
