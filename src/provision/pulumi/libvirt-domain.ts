/**
 * `pulumi-nodejs:dynamic/flotilla:LibvirtDomain`: one node on libvirt (its storage pool,
 * volumes and domain) through Flotilla's driver (src/provision/libvirt/driver.ts), which the
 * provider loads itself (see dynamic.ts). The first-boot documents carry the node's private
 * host key: they are a secret input and a secret output.
 *
 * Diff: what the volumes are made of (cluster, node, base image, first-boot documents, state
 * directory, connection) can only change by replacement, deleted before the new one is made
 * (same names and ports). CPUs, memory, accelerator, ports, MACs and kernel arguments change in
 * place: the domain is redefined and restarted.
 */
import * as pulumi from '@pulumi/pulumi';
import type { ClusterNicDesc } from '../libvirt/domain-xml';
import type { FirstBootDocs, NodeImage } from '../libvirt/driver';
import { loadSource, PROJECT_ROOT } from './dynamic';

type DriverModule = typeof import('../libvirt/driver');

const ROOT: string = PROJECT_ROOT;
const DRIVER = 'src/provision/libvirt/driver.ts';

export interface LibvirtDomainInputs {
  cluster: string;
  node: string;
  uri: string;
  stateDir: string;
  image: NodeImage;
  accel: 'kvm' | 'tcg';
  cpus: number;
  memoryMiB: number;
  firstBoot: FirstBootDocs;
  sshPort: number;
  primaryMac: string;
  cluster0?: ClusterNicDesc;
  extraCmdline?: string[];
}

export interface LibvirtDomainOutputs extends LibvirtDomainInputs {
  domain: string;
  uuid: string;
  pool: string;
  consoleLog: string;
  /** sha256 over what the volumes hold. */
  configHash: string;
  sshHost: string;
}

/** Properties that need a new node when they change. */
export const LIBVIRT_REPLACE_KEYS = ['cluster', 'node', 'uri', 'stateDir', 'image', 'firstBoot'] as const;
/** Properties changed in place (redefine + restart). */
export const LIBVIRT_UPDATE_KEYS = ['accel', 'cpus', 'memoryMiB', 'sshPort', 'primaryMac', 'cluster0', 'extraCmdline'] as const;

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

function descOf(p: LibvirtDomainInputs): import('../libvirt/driver').LibvirtNodeDesc {
  return {
    cluster: p.cluster,
    node: p.node,
    uri: p.uri,
    stateDir: p.stateDir,
    image: p.image,
    accel: p.accel,
    cpus: p.cpus,
    memoryMiB: p.memoryMiB,
    firstBoot: p.firstBoot,
    sshPort: p.sshPort,
    primaryMac: p.primaryMac,
    ...(p.cluster0 ? { cluster0: p.cluster0 } : {}),
    ...(p.extraCmdline ? { extraCmdline: p.extraCmdline } : {}),
  };
}

function outputsOf(p: LibvirtDomainInputs, info: import('../libvirt/driver').LibvirtNodeInfo): LibvirtDomainOutputs {
  return { ...p, domain: info.domain, uuid: info.uuid, pool: info.pool, consoleLog: info.consoleLog, configHash: info.configHash, sshHost: info.sshHost };
}

/** Order-independent comparison of plain JSON values. */
function sameJson(a: unknown, b: unknown): boolean {
  const norm = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(norm) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, norm((v as Record<string, unknown>)[k])])) : v;
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}

export const libvirtDomainProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: LibvirtDomainInputs, news: LibvirtDomainInputs): Promise<pulumi.dynamic.CheckResult> {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    const fail = (property: string, reason: string): void => void failures.push({ property, reason });
    if (!LABEL.test(String(news.cluster))) fail('cluster', `not a cluster name: ${JSON.stringify(news.cluster)}`);
    if (!LABEL.test(String(news.node))) fail('node', `not a node name: ${JSON.stringify(news.node)}`);
    if (typeof news.uri !== 'string' || !/^[a-z+]+:\/\//.test(news.uri)) fail('uri', `not a libvirt URI: ${JSON.stringify(news.uri)}`);
    if (typeof news.stateDir !== 'string' || !news.stateDir.startsWith('/')) fail('stateDir', 'must be an absolute path');
    if (news.accel !== 'kvm' && news.accel !== 'tcg') fail('accel', `must be kvm or tcg, got ${JSON.stringify(news.accel)}`);
    if (!Number.isInteger(news.cpus) || news.cpus < 1 || news.cpus > 64) fail('cpus', `must be a whole number from 1 to 64, got ${JSON.stringify(news.cpus)}`);
    if (!Number.isInteger(news.memoryMiB) || news.memoryMiB < 128) fail('memoryMiB', `must be a whole number of at least 128, got ${JSON.stringify(news.memoryMiB)}`);
    if (!Number.isInteger(news.sshPort) || news.sshPort < 1024 || news.sshPort > 65535) fail('sshPort', `must be a port from 1024 to 65535, got ${JSON.stringify(news.sshPort)}`);
    if (!MAC.test(String(news.primaryMac))) fail('primaryMac', `not a lower-case MAC address: ${JSON.stringify(news.primaryMac)}`);
    const img = news.image as Partial<LibvirtDomainInputs['image']> | undefined;
    if (!img || typeof img.disk !== 'string' || typeof img.kernel !== 'string' || typeof img.initrd !== 'string' || typeof img.cmdline !== 'string' || !Number.isInteger(img.virtualBytes)) {
      fail('image', 'needs disk, kernel, initrd, cmdline and virtualBytes');
    }
    const fb = news.firstBoot as Partial<LibvirtDomainInputs['firstBoot']> | undefined;
    if (!fb || (fb.format !== 'cloud-config' && fb.format !== 'ignition') || typeof fb.userData !== 'string' || fb.node !== news.node) {
      fail('firstBoot', 'needs the rendered documents of this node (node, format, userData)');
    }
    return { inputs: news, failures };
  },

  async diff(_id: pulumi.ID, olds: LibvirtDomainOutputs, news: LibvirtDomainInputs): Promise<pulumi.dynamic.DiffResult> {
    const replaces = LIBVIRT_REPLACE_KEYS.filter((k) => !sameJson(olds[k], news[k]));
    const updates = LIBVIRT_UPDATE_KEYS.filter((k) => !sameJson(olds[k], news[k]));
    return { changes: replaces.length + updates.length > 0, replaces: [...replaces], deleteBeforeReplace: true };
  },

  async create(inputs: LibvirtDomainInputs): Promise<pulumi.dynamic.CreateResult> {
    const driver = loadSource<DriverModule>(ROOT, DRIVER);
    const info = await driver.defineAndStart(descOf(inputs));
    return { id: info.domain, outs: outputsOf(inputs, info) };
  },

  async update(_id: pulumi.ID, _olds: LibvirtDomainOutputs, news: LibvirtDomainInputs): Promise<pulumi.dynamic.UpdateResult> {
    const driver = loadSource<DriverModule>(ROOT, DRIVER);
    const info = await driver.redefine(descOf(news), { graceMs: 30_000 });
    return { outs: outputsOf(news, info) };
  },

  async delete(_id: pulumi.ID, props: LibvirtDomainOutputs): Promise<void> {
    const driver = loadSource<DriverModule>(ROOT, DRIVER);
    // The node's disk goes away with it: a hard power-off loses nothing that is kept.
    await driver.destroy(props.cluster, props.node, { uri: props.uri, stateDir: props.stateDir, graceMs: 0 });
  },

  async read(id: pulumi.ID, props: LibvirtDomainOutputs): Promise<pulumi.dynamic.ReadResult> {
    const driver = loadSource<DriverModule>(ROOT, DRIVER);
    const info = await driver.nodeInfo(props.cluster, props.node, { uri: props.uri, stateDir: props.stateDir });
    // Gone: an empty result tells the engine the resource no longer exists.
    if (!info) return {};
    return { id, props: { ...props, configHash: info.configHash, sshPort: info.sshPort } };
  },
};

/** Inputs of a LibvirtDomain; `firstBoot` should be a secret (it holds the private host key). */
export type LibvirtDomainArgs = { [K in keyof LibvirtDomainInputs]: pulumi.Input<LibvirtDomainInputs[K]> };

export class LibvirtDomain extends pulumi.dynamic.Resource {
  declare readonly domain: pulumi.Output<string>;
  declare readonly uuid: pulumi.Output<string>;
  declare readonly sshHost: pulumi.Output<string>;
  declare readonly sshPort: pulumi.Output<number>;
  declare readonly consoleLog: pulumi.Output<string>;
  declare readonly configHash: pulumi.Output<string>;
  declare readonly firstBoot: pulumi.Output<FirstBootDocs>;

  constructor(name: string, args: LibvirtDomainArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(
      libvirtDomainProvider,
      name,
      { ...args, domain: undefined, uuid: undefined, pool: undefined, consoleLog: undefined, configHash: undefined, sshHost: undefined },
      { ...opts, additionalSecretOutputs: [...(opts.additionalSecretOutputs ?? []), 'firstBoot'] },
      'flotilla',
      'LibvirtDomain',
    );
  }
}
