/**
 * Rendering: a resolved spec and its secrets become each node's first-boot documents.
 * The node's needs are built as data (node-files.ts), put through a Handlebars template
 * (values only via the `json` helper), re-parsed, merged with snippets, checked, and
 * serialised by the `yaml` package or JSON.stringify. Nothing is written here.
 */
import { Document, isScalar, parseDocument, Scalar, visit } from 'yaml';
import { FlotillaError, throwIfProblems, type Problem } from '../errors';
import { checkCloudConfig } from './cloud-config-check';
import { checkIgnition } from './ignition-check';
import { conflictProblems, defaultImageFiles, imageFileConflicts, originKey, STORAGE_KINDS, type Origins } from './image-files-check';
import { IGNITION_VERSION } from './ignition-types';
import { mergeConfig } from './merge';
import { networkConfig, networkdFiles, nodeFiles, PATHS, type NodeFile } from './node-files';
import type { ClusterSecrets } from './secrets';
import { generateHostKey } from '../ssh/keys';
import type { ConfigFormat, ResolvedNode, ResolvedSpec } from './spec';
import { loadTemplate } from './templates';

export interface RenderedNode {
  node: string;
  format: ConfigFormat;
  /** The first-boot document: `#cloud-config` YAML or Ignition JSON. */
  userData: string;
  /** NoCloud meta-data (cloud-config path only). */
  metaData?: string;
  /** NoCloud network-config v2 (cloud-config path, local and libvirt platforms). */
  networkConfig?: string;
  /** The pinned host public key. */
  hostPublicKey: string;
}

export interface RenderOptions {
  format?: ConfigFormat;
  /** Only these nodes; default all. */
  nodes?: string[];
  /**
   * Files the node image ships, checked against Ignition storage entries (image-files-check.ts).
   * Default: Flotilla's node image on local and libvirt, none on aws. Tests only: `[]` skips the
   * check (to boot a config that fails on the node).
   */
  imageFiles?: readonly string[];
}

function modeOctal(mode: number): string {
  return `0${mode.toString(8)}`;
}

interface TemplateContext {
  cluster: { name: string; format: ConfigFormat; platform: string };
  node: { name: string; role: string; address: string; metadata: Record<string, string>; etcdMember: boolean };
  hostname: string;
  user: { name: string; authorizedKeys: string[] };
  hostKey: { privateKey: string; publicKey: string };
  files: Array<NodeFile & { modeOctal: string }>;
  units: Array<{ name: string; contents: string; enabled: boolean }>;
  commands: string[][];
  ignitionVersion: string;
  network: Record<string, unknown> | null;
}

function contextFor(spec: ResolvedSpec, node: ResolvedNode, secrets: ClusterSecrets, format: ConfigFormat): TemplateContext {
  const hostKey = secrets.hostKeys[node.name];
  if (!hostKey) throw new FlotillaError('internal', `no host key for node ${node.name}; secrets were not generated for it`);
  const { files, units } = nodeFiles(spec, node);
  const net = networkConfig(spec, node);
  let allFiles: NodeFile[] = files;
  let commands: string[][] = [];
  if (format === 'cloud-config') {
    // cloud-init has no units module: units become files, enabled from runcmd (argv form, no shell).
    allFiles = [...files, ...units.map((u) => ({ path: `${PATHS.systemdDir}/${u.name}`, contents: u.contents, mode: 0o644 }))];
    const enable = units.filter((u) => u.enabled).map((u) => u.name);
    // `enable --now` reloads systemd itself; a separate daemon-reload costs ~2 s per node under TCG.
    commands = enable.length ? [['systemctl', 'enable', '--now', ...enable]] : [];
  } else {
    allFiles = [
      ...files,
      { path: '/etc/hostname', contents: `${node.name}\n`, mode: 0o644 },
      // What cloud-config's manage_etc_hosts writes: without the node's own name here, every sudo
      // on a Debian node printed "unable to resolve host" after a failed DNS lookup.
      { path: '/etc/hosts', contents: `127.0.0.1\tlocalhost\n127.0.1.1\t${node.name}\n::1\t\tlocalhost ip6-localhost ip6-loopback\n`, mode: 0o644 },
      // cloud-config's `sudo:` has no Ignition equivalent: the same rule as a sudoers drop-in.
      { path: `/etc/sudoers.d/90-flotilla-${spec.ssh.user}`, contents: `${spec.ssh.user} ALL=(ALL) NOPASSWD:ALL\n`, mode: 0o440 },
      { path: PATHS.hostKey, contents: hostKey.privateKey, mode: 0o600 },
      { path: `${PATHS.hostKey}.pub`, contents: `${hostKey.publicKey}\n`, mode: 0o644 },
      ...networkdFiles(spec, node),
    ];
  }
  return {
    cluster: { name: spec.name, format, platform: spec.platform },
    node: { name: node.name, role: node.role, address: node.address, metadata: node.metadata, etcdMember: node.etcdMember },
    hostname: node.name,
    user: { name: spec.ssh.user, authorizedKeys: spec.ssh.authorizedKeys },
    hostKey,
    files: allFiles.map((f) => ({ ...f, modeOctal: modeOctal(f.mode) })),
    units: format === 'ignition' ? units : [],
    commands,
    ignitionVersion: IGNITION_VERSION,
    network: net ?? null,
  };
}

/** Parses template output as YAML; a failure here means the template itself is broken. */
function parseTemplateYaml(text: string, what: string): Document {
  const doc = parseDocument(text, { uniqueKeys: true, strict: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new FlotillaError('invalid-input', `${what}: template produced invalid YAML at line ${e.linePos?.[0].line}: ${e.message.split('\n')[0]}`);
  }
  return doc;
}

/**
 * Characters the `yaml` package writes raw but PyYAML (cloud-init's parser, YAML 1.1)
 * reads differently: NEL, LS and PS are line breaks there (raw NEL inside double quotes
 * is folded to a space), and DEL, C1 controls, U+FFFE and U+FFFF are refused as non-printable.
 * Strings holding them are double-quoted (see prettify) with these escaped.
 */
const PYYAML_UNSAFE = /[\u007f-\u009f\u2028\u2029\ufffe\uffff]/;
const PYYAML_UNSAFE_ALL = /[\u007f-\u009f\u2028\u2029\ufffe\uffff]/g;

function escapeForPyYaml(text: string): string {
  return text.replace(PYYAML_UNSAFE_ALL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const YAML11_WORDS = new Set(['y', 'n', 'yes', 'no', 'on', 'off', 'true', 'false', 'null']);

/** Readable output: multi-line strings as block literals, collections in block style. */
function prettify(doc: Document): void {
  visit(doc, {
    Scalar(key, node) {
      if (typeof node.value !== 'string') return;
      if (PYYAML_UNSAFE.test(node.value) || /[\r\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff]/.test(node.value)) node.type = Scalar.QUOTE_DOUBLE;
      else if (node.value.includes('\n')) node.type = Scalar.BLOCK_LITERAL;
      // Plain keys where unambiguous in YAML 1.1 too (cloud-init reads with PyYAML); values stay quoted.
      else if (key === 'key' && /^[a-z][a-z0-9_-]*$/.test(node.value) && !YAML11_WORDS.has(node.value)) node.type = Scalar.PLAIN;
    },
    Map(_k, node) {
      node.flow = false;
    },
    Seq(_k, node) {
      // Short lists of short strings (argv lists in runcmd, groups) read better on one line.
      node.flow = node.items.length > 0 && node.items.every((i) => isScalar(i) && typeof i.value === 'string' && i.value.length <= 40 && !i.value.includes('\n'));
    },
  });
}

/**
 * Merges the spec's snippets for `node` into `base`. With `origins`, records for every Ignition
 * storage entry (by kind and path) which snippet wrote it last, and at which index of its list.
 */
function applySnippets(base: unknown, spec: ResolvedSpec, node: string, format: ConfigFormat, origins?: Origins): unknown {
  let out = base;
  spec.snippets.forEach((s, index) => {
    if (s.format !== format || (s.nodes && !s.nodes.includes(node))) return;
    const data = parseSnippet(s.contents, s.source, format);
    if (origins) {
      const storage = (data as { storage?: Record<string, unknown> }).storage;
      for (const kind of STORAGE_KINDS) {
        const list = storage?.[kind];
        if (!Array.isArray(list)) continue;
        list.forEach((e, entry) => {
          const p = (e as Record<string, unknown> | null)?.path;
          if (typeof p === 'string') origins.set(originKey(kind, p), { snippet: { index, field: s.field ?? `snippets[${index}]`, source: s.source }, entry });
        });
      }
    }
    out = mergeConfig(out, data, '', s.source);
  });
  return out;
}

/** A node's Ignition config after the template and the snippets, with where each storage entry came from. */
function mergedIgnition(spec: ResolvedSpec, node: ResolvedNode, secrets: ClusterSecrets): { merged: unknown; origins: Origins; hostPublicKey: string } {
  const ctx = contextFor(spec, node, secrets, 'ignition');
  const text = loadTemplate('ignition.json', spec.templatesDir)(ctx);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new FlotillaError('invalid-input', `ignition.json template produced invalid JSON for ${node.name}: ${(err as Error).message}`);
  }
  const origins: Origins = new Map();
  return { merged: applySnippets(data, spec, node.name, 'ignition', origins), origins, hostPublicKey: ctx.hostKey.publicKey };
}

/**
 * The image-file check (image-files-check.ts) for a spec as a whole, without its secrets:
 * every node's Ignition config rendered with a placeholder host key, every conflict reported
 * once with the nodes it hits, at the snippet's spec field. Only specs whose Ignition rendering
 * can differ from the built-in template's are rendered (Ignition snippets or own templates); the
 * built-in template marks every file it writes `overwrite: true`. Other render failures are left
 * to the render itself.
 */
export function specImageFileProblems(spec: ResolvedSpec, imageFiles: readonly string[] = defaultImageFiles(spec)): Problem[] {
  const hasIgnitionSnippets = spec.snippets.some((s) => s.format === 'ignition');
  if (imageFiles.length === 0 || !(hasIgnitionSnippets || (spec.templatesDir !== undefined && spec.format === 'ignition'))) return [];
  const ign = spec.format === 'ignition' ? spec : { ...spec, format: 'ignition' as const };
  const key = placeholderHostKey();
  const secrets: ClusterSecrets = { version: 1, cluster: spec.name, hostKeys: Object.fromEntries(spec.nodes.map((n) => [n.name, key])) };
  const seen: Array<{ node: string; conflicts: ReturnType<typeof imageFileConflicts> }> = [];
  for (const n of spec.nodes) {
    let merged: { merged: unknown; origins: Origins };
    try {
      merged = mergedIgnition(ign, n, secrets);
    } catch (err) {
      if (FlotillaError.is(err)) return [];
      throw err;
    }
    seen.push({ node: n.name, conflicts: imageFileConflicts(merged.merged, imageFiles, merged.origins) });
  }
  return conflictProblems(seen, spec.templatesDir);
}

let placeholder: ClusterSecrets['hostKeys'][string] | undefined;
function placeholderHostKey(): ClusterSecrets['hostKeys'][string] {
  placeholder ??= generateHostKey('image-file-check');
  return placeholder;
}

function parseSnippet(text: string, source: string, format: ConfigFormat): unknown {
  if (format === 'ignition') {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new FlotillaError('invalid-input', `${source}: Ignition snippet is not valid JSON: ${(err as Error).message}`, [{ path: '', message: 'not valid JSON', file: source }]);
    }
    const problems = checkIgnition(data, { requireVersion: false }).map((p) => ({ ...p, file: source }));
    throwIfProblems(problems, `${source}: invalid Ignition snippet`);
    // The rendered config carries the version; a snippet's own is dropped after the check.
    const { ignition: _ignored, ...rest } = data as Record<string, unknown>;
    return rest;
  }
  const doc = parseDocument(text, { uniqueKeys: true, strict: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new FlotillaError('invalid-input', `${source}:${e.linePos?.[0].line ?? '?'}: cloud-config snippet is not valid YAML: ${e.message.split('\n')[0]}`, [
      { path: '', message: e.message.split('\n')[0]!, file: source, line: e.linePos?.[0].line },
    ]);
  }
  const data = doc.toJS({ maxAliasCount: 100 }) as unknown;
  throwIfProblems(checkCloudConfig(data).map((p) => ({ ...p, file: source })), `${source}: invalid cloud-config snippet`);
  return data;
}

function finishCloudConfig(doc: Document, spec: ResolvedSpec, node: string): string {
  const data = doc.toJS() as unknown;
  const merged = applySnippets(data, spec, node, 'cloud-config');
  // Keep the template's document (with its comments) unless a snippet changed something.
  let out = doc;
  if (merged !== data) {
    out = new Document(merged);
    out.commentBefore = doc.commentBefore;
  }
  throwIfProblems(checkCloudConfig(merged), `cloud-config for node ${node}`);
  prettify(out);
  // The text comes from the YAML library's serialiser, never from string pasting; only
  // double-quoted scalars can hold PyYAML-unsafe characters (see prettify), so escaping them is safe.
  // Tests parse the result with PyYAML, as cloud-init does, and compare it with this data.
  return escapeForPyYaml(`#cloud-config\n${out.toString({ lineWidth: 0 }).replace(/^#cloud-config\n/, '')}`);
}

/** Renders one node's documents. */
export function renderNode(
  spec0: ResolvedSpec,
  node: ResolvedNode,
  secrets: ClusterSecrets,
  format: ConfigFormat = spec0.format,
  opts: Pick<RenderOptions, 'imageFiles'> = {},
): RenderedNode {
  // The node's files depend on the format too (sshd must read Ignition's authorized_keys.d): a
  // format chosen over the spec's (`up --format`) is the spec's format for this render.
  const spec = spec0.format === format ? spec0 : { ...spec0, format };
  if (format === 'ignition') {
    const { merged, origins, hostPublicKey } = mergedIgnition(spec, node, secrets);
    const problems = checkIgnition(merged, { requireVersion: true });
    throwIfProblems(problems, `Ignition config for node ${node.name}`);
    // Where the merged config exists: entries the node image makes fail at first boot.
    const conflicts = imageFileConflicts(merged, opts.imageFiles ?? defaultImageFiles(spec), origins);
    throwIfProblems(conflictProblems([{ node: node.name, conflicts }], spec.templatesDir), `Ignition config for node ${node.name}`);
    return { node: node.name, format, userData: `${JSON.stringify(merged)}\n`, hostPublicKey };
  }
  const ctx = contextFor(spec, node, secrets, format);
  const hostPublicKey = ctx.hostKey.publicKey;
  const cc = finishCloudConfig(parseTemplateYaml(loadTemplate('cloud-config.yaml', spec.templatesDir)(ctx), `cloud-config for ${node.name}`), spec, node.name);
  const metaData = `instance-id: ${JSON.stringify(`${spec.name}-${node.name}`)}\nlocal-hostname: ${JSON.stringify(node.name)}\n`;
  let net: string | undefined;
  if (ctx.network) {
    const doc = parseTemplateYaml(loadTemplate('network-config.yaml', spec.templatesDir)(ctx), `network-config for ${node.name}`);
    const problems = checkNetworkConfig(doc.toJS());
    throwIfProblems(problems, `network-config for node ${node.name}`);
    prettify(doc);
    net = escapeForPyYaml(doc.toString({ lineWidth: 0 }));
  }
  return { node: node.name, format, userData: cc, metaData, ...(net !== undefined ? { networkConfig: net } : {}), hostPublicKey };
}

/** Renders every node (or the named ones). Throws before returning anything if one fails. */
export function renderCluster(spec: ResolvedSpec, secrets: ClusterSecrets, opts: RenderOptions = {}): RenderedNode[] {
  const format = opts.format ?? spec.format;
  let nodes = spec.nodes;
  if (opts.nodes) {
    const unknown = opts.nodes.filter((n) => !spec.nodes.some((s) => s.name === n));
    if (unknown.length) throw new FlotillaError('not-found', `no node named ${unknown.map((u) => JSON.stringify(u)).join(', ')} in cluster ${spec.name} (nodes: ${spec.nodes.map((n) => n.name).join(', ')})`);
    nodes = spec.nodes.filter((n) => opts.nodes!.includes(n.name));
  }
  return nodes.map((n) => renderNode(spec, n, secrets, format, opts.imageFiles ? { imageFiles: opts.imageFiles } : {}));
}

/** Own checks for network-config v2 (cloud-init 22.4 has no schema for it). */
export function checkNetworkConfig(data: unknown): Problem[] {
  const problems: Problem[] = [];
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return [{ path: '', message: 'network-config must be a mapping' }];
  const d = data as Record<string, unknown>;
  if (d.version !== 2) problems.push({ path: 'version', message: `must be 2, got ${JSON.stringify(d.version)}` });
  const eth = d.ethernets;
  if (typeof eth !== 'object' || eth === null || Array.isArray(eth)) problems.push({ path: 'ethernets', message: 'must be a mapping of interface ids' });
  else {
    for (const [id, cfg] of Object.entries(eth as Record<string, unknown>)) {
      const c = cfg as Record<string, unknown>;
      const mac = (c?.match as Record<string, unknown> | undefined)?.macaddress;
      if (mac !== undefined && (typeof mac !== 'string' || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac))) problems.push({ path: `ethernets.${id}.match.macaddress`, message: `not a MAC address: ${JSON.stringify(mac)}` });
      const addrs = c?.addresses;
      if (addrs !== undefined && (!Array.isArray(addrs) || addrs.some((a) => typeof a !== 'string' || !/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(a)))) {
        problems.push({ path: `ethernets.${id}.addresses`, message: 'must be a list of address/prefix strings' });
      }
    }
  }
  return problems;
}
