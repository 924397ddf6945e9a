/**
 * The stack's configuration (`pulumi config set flotilla:KEY VALUE`), read and checked in one
 * place, at the program's entry point. Every problem is reported at once, each naming its key
 * and what to do; the program stops with a pulumi.RunError (printed without a stack trace).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { CONFIG_FORMATS, type ConfigFormat } from '../../config/spec';
import { parseIPv4Cidr } from '../../config/net';
import { checkAuthorizedKey } from '../../config/ssh-keys';
import { nearest } from '../../util/suggest';
import { adminCidrProblem, AMI_FAMILIES } from './aws';
import { MAX_NODE_COUNT, STACK_PLATFORMS, type StackPlatform } from './plan';

export const CONFIG_NAMESPACE = 'flotilla';

export interface StackConfig {
  platform: StackPlatform;
  clusterName?: string;
  nodeCount?: number;
  format?: ConfigFormat;
  /** Absolute path of the spec file, if one is configured. */
  specFile?: string;
  cidr?: string;
  /** The public key, always handled as a secret (it may have been set with --secret). */
  sshKey: pulumi.Output<string>;
  sshPrivateKey?: pulumi.Output<string>;
  /** Absolute path of the SSH private key on this machine, if configured. */
  sshPrivateKeyFile?: string;
  /** Absolute directory for inventory.json and its files; undefined: none is written. */
  inventoryDir?: string;
  aws?: {
    region?: string;
    instanceType?: string;
    image?: string;
    adminCidr: string;
    vpcId?: string;
    subnetId?: string;
    availabilityZone?: string;
    replaceMembers?: string[];
  };
  libvirt?: {
    uri?: string;
    imageId?: string;
    accel: 'auto' | 'kvm' | 'tcg';
    sshPortBase?: number;
    cpus?: number;
    memoryMiB?: number;
  };
}

/** Every key the program reads, for the docs and for typo hints. */
export const CONFIG_KEYS = [
  'platform', 'clusterName', 'nodeCount', 'format', 'spec', 'cidr', 'sshKey', 'sshPrivateKey', 'sshPrivateKeyFile', 'inventoryDir',
  'region', 'instanceType', 'image', 'adminCidr', 'vpcId', 'subnetId', 'availabilityZone', 'replaceMembers',
  'libvirtUri', 'accel', 'sshPortBase', 'cpus', 'memoryMiB',
] as const;

class Problems {
  readonly list: string[] = [];
  add(key: string, message: string): void {
    this.list.push(`${CONFIG_NAMESPACE}:${key}: ${message}`);
  }
}

function intValue(p: Problems, cfg: pulumi.Config, key: string, min: number, max: number): number | undefined {
  const raw = cfg.get(key);
  if (raw === undefined) return undefined;
  const v = Number(raw.trim());
  if (raw.trim() === '' || !Number.isInteger(v) || v < min || v > max) {
    p.add(key, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
    return undefined;
  }
  return v;
}

function choice<T extends string>(p: Problems, cfg: pulumi.Config, key: string, choices: readonly T[]): T | undefined {
  const v = cfg.get(key);
  if (v === undefined) return undefined;
  if (!(choices as readonly string[]).includes(v)) {
    p.add(key, `must be one of ${choices.join(', ')}, got ${JSON.stringify(v)}`);
    return undefined;
  }
  return v as T;
}

function cidrValue(p: Problems, cfg: pulumi.Config, key: string, example: string): string | undefined {
  const v = cfg.get(key);
  if (v === undefined) return undefined;
  if (!parseIPv4Cidr(v.trim())) {
    p.add(key, `${JSON.stringify(v)} is not an IPv4 CIDR with its host bits zero (e.g. ${example})`);
    return undefined;
  }
  return v.trim();
}

/**
 * Reads and checks the stack configuration. `projectDir` anchors a relative `spec` path (the
 * directory holding Pulumi.yaml). Throws pulumi.RunError listing every problem.
 */
export function readStackConfig(cfg: pulumi.Config = new pulumi.Config(CONFIG_NAMESPACE), projectDir: string = process.cwd(), stack: string = pulumi.getStack()): StackConfig {
  const p = new Problems();
  const platform = choice(p, cfg, 'platform', STACK_PLATFORMS);
  if (cfg.get('platform') === undefined) p.add('platform', `is required: pulumi config set ${CONFIG_NAMESPACE}:platform aws (or libvirt)`);

  const clusterName = cfg.get('clusterName');
  if (clusterName !== undefined && !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(clusterName)) {
    p.add('clusterName', `${JSON.stringify(clusterName)} is not a DNS label (lowercase letters, digits and "-", at most 63)`);
  }
  const nodeCount = intValue(p, cfg, 'nodeCount', 1, MAX_NODE_COUNT);
  const format = choice(p, cfg, 'format', CONFIG_FORMATS);
  const specRaw = cfg.get('spec');
  const specFile = specRaw !== undefined && specRaw.trim() !== '' ? path.resolve(projectDir, specRaw.trim()) : undefined;
  if (specFile !== undefined && nodeCount !== undefined) p.add('nodeCount', 'leave it unset when flotilla:spec names a spec file (the spec lists the nodes)');
  const cidr = cidrValue(p, cfg, 'cidr', '10.99.0.0/24');

  const sshKeyText = cfg.get('sshKey');
  if (sshKeyText === undefined || sshKeyText.trim() === '') {
    p.add('sshKey', `is required: the OpenSSH public key that may log in, e.g. pulumi config set ${CONFIG_NAMESPACE}:sshKey "$(cat ~/.ssh/id_ed25519.pub)" (add --secret to keep it out of plain sight)`);
  } else {
    const err = checkAuthorizedKey(sshKeyText);
    if (err) p.add('sshKey', err);
  }
  const privText = cfg.get('sshPrivateKey');
  if (privText !== undefined && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(privText)) {
    p.add('sshPrivateKey', 'must be an OpenSSH or PEM private key (set it with --secret: pulumi config set --secret flotilla:sshPrivateKey < ~/.ssh/id_ed25519)');
  }
  const keyFileRaw = cfg.get('sshPrivateKeyFile');
  let sshPrivateKeyFile: string | undefined;
  let keyFromFile: string | undefined;
  if (keyFileRaw !== undefined) {
    sshPrivateKeyFile = path.resolve(projectDir, keyFileRaw.replace(/^~(?=$|\/)/, os.homedir()));
    try {
      keyFromFile = fs.readFileSync(sshPrivateKeyFile, 'utf8');
      if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(keyFromFile)) p.add('sshPrivateKeyFile', `${sshPrivateKeyFile} is not an OpenSSH or PEM private key`);
    } catch (err) {
      p.add('sshPrivateKeyFile', `cannot read ${sshPrivateKeyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  const invRaw = cfg.get('inventoryDir');
  const inventoryDir = invRaw === '-' ? undefined : path.resolve(projectDir, invRaw ?? path.join('.flotilla', 'pulumi', stack));

  let aws: StackConfig['aws'];
  let libvirt: StackConfig['libvirt'];
  if (platform === 'aws') {
    const adminRaw = cfg.get('adminCidr');
    const adminProblem = adminRaw === undefined ? undefined : adminCidrProblem(adminRaw.trim());
    if (adminRaw === undefined) p.add('adminCidr', 'is required on aws: the only CIDR SSH is open to, e.g. your address as 203.0.113.7/32');
    else if (adminProblem) p.add('adminCidr', adminProblem);
    const adminCidr = adminRaw !== undefined && !adminProblem ? adminRaw.trim() : undefined;
    const replaceRaw = cfg.get('replaceMembers');
    const replaceMembers = replaceRaw === undefined || replaceRaw.trim() === '' ? undefined : replaceRaw.split(',').map((x) => x.trim());
    if (replaceMembers?.some((m) => !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(m))) {
      p.add('replaceMembers', `must be etcd member names separated by commas (e.g. node2), got ${JSON.stringify(replaceRaw)}`);
    }
    const image = cfg.get('image');
    if (image !== undefined && !(image in AMI_FAMILIES) && !/^ami-[0-9a-f]{8,17}$/.test(image)) {
      p.add('image', `must be an AMI id (ami-...) or one of ${Object.keys(AMI_FAMILIES).join(', ')}, got ${JSON.stringify(image)}`);
    }
    const region = cfg.get('region');
    if (region !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d$/.test(region)) p.add('region', `${JSON.stringify(region)} is not an AWS region (e.g. eu-west-1)`);
    const vpcId = cfg.get('vpcId');
    const subnetId = cfg.get('subnetId');
    if ((vpcId === undefined) !== (subnetId === undefined)) p.add(vpcId === undefined ? 'vpcId' : 'subnetId', 'give both vpcId and subnetId (an existing network), or neither');
    if (adminCidr !== undefined) {
      aws = {
        adminCidr,
        ...(region !== undefined ? { region } : {}),
        ...(cfg.get('instanceType') !== undefined ? { instanceType: cfg.get('instanceType')! } : {}),
        ...(image !== undefined ? { image } : {}),
        ...(vpcId !== undefined ? { vpcId } : {}),
        ...(subnetId !== undefined ? { subnetId } : {}),
        ...(cfg.get('availabilityZone') !== undefined ? { availabilityZone: cfg.get('availabilityZone')! } : {}),
        ...(replaceMembers !== undefined ? { replaceMembers } : {}),
      };
    }
  } else if (platform === 'libvirt') {
    const imageId = cfg.get('image');
    if (imageId !== undefined && !/^[0-9a-f]{64}$/.test(imageId)) p.add('image', `on libvirt: a Flotilla node image id (64 hex digits, see the image cache) or unset for the current image, got ${JSON.stringify(imageId)}`);
    const accel = choice(p, cfg, 'accel', ['auto', 'kvm', 'tcg'] as const) ?? 'auto';
    const uri = cfg.get('libvirtUri');
    if (uri !== undefined && !/^[a-z+]+:\/\/[A-Za-z0-9./_-]*$/.test(uri)) p.add('libvirtUri', `not a libvirt URI: ${JSON.stringify(uri)}`);
    const sshPortBase = intValue(p, cfg, 'sshPortBase', 1024, 65535 - MAX_NODE_COUNT);
    const cpus = intValue(p, cfg, 'cpus', 1, 64);
    const memoryMiB = intValue(p, cfg, 'memoryMiB', 256, 1024 * 1024);
    libvirt = {
      accel,
      ...(uri !== undefined ? { uri } : {}),
      ...(imageId !== undefined ? { imageId } : {}),
      ...(sshPortBase !== undefined ? { sshPortBase } : {}),
      ...(cpus !== undefined ? { cpus } : {}),
      ...(memoryMiB !== undefined ? { memoryMiB } : {}),
    };
  }

  // A mistyped key would otherwise be ignored in silence.
  for (const full of Object.keys(pulumi.runtime.allConfig())) {
    if (!full.startsWith(`${CONFIG_NAMESPACE}:`)) continue;
    const key = full.slice(CONFIG_NAMESPACE.length + 1);
    if (!(CONFIG_KEYS as readonly string[]).includes(key)) {
      const near = nearest(key, CONFIG_KEYS);
      p.add(key, `unknown key${near ? ` (did you mean ${CONFIG_NAMESPACE}:${near}?)` : `; known keys: ${CONFIG_KEYS.join(', ')}`}`);
    }
  }

  if (p.list.length > 0) {
    throw new pulumi.RunError(`invalid stack configuration: ${p.list.length} problem${p.list.length === 1 ? '' : 's'}\n${p.list.map((l) => `  ${l}`).join('\n')}`);
  }
  return {
    platform: platform!,
    ...(clusterName !== undefined ? { clusterName } : {}),
    ...(nodeCount !== undefined ? { nodeCount } : {}),
    ...(format !== undefined ? { format } : {}),
    ...(specFile !== undefined ? { specFile } : {}),
    ...(cidr !== undefined ? { cidr } : {}),
    sshKey: cfg.requireSecret('sshKey').apply((k) => k.trim()),
    ...(privText !== undefined
      ? { sshPrivateKey: cfg.requireSecret('sshPrivateKey') }
      : keyFromFile !== undefined
        ? { sshPrivateKey: pulumi.secret(keyFromFile) }
        : {}),
    ...(sshPrivateKeyFile !== undefined ? { sshPrivateKeyFile } : {}),
    ...(inventoryDir !== undefined ? { inventoryDir } : {}),
    ...(aws ? { aws } : {}),
    ...(libvirt ? { libvirt } : {}),
  };
}
