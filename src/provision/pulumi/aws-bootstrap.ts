/**
 * First-boot setup that makes a stock AMI run what Flotilla's units expect, as spec snippets
 * (config as data, merged by src/config like any user snippet):
 *
 * - Debian 12 (cloud-config): etcd and Node.js from Debian's own packages (`packages:`), with
 *   Debian's own etcd.service masked (Flotilla runs etcd from flotilla-etcd.service, as the node
 *   image does); the agent archive fetched from S3 by a small signed-GET script with the
 *   instance role and checked by sha512 (s3-fetch.ts), run by flotilla-agent-install.service,
 *   which flotilla-fleetd.service requires.
 * - Flatcar (docker) and Fedora CoreOS (podman) (Ignition): no package manager and a read-only
 *   /usr, so etcd and the agent run from pinned container images through the OS's own runtime,
 *   as Typhoon runs etcd there. Ignition itself fetches the agent archive from S3 with the
 *   instance role and checks its sha512 (`storage.files[].contents.source: s3://...`); a oneshot
 *   unit extracts it under /opt/flotilla; the agent's container gets the host's network and PID
 *   namespace and reaches the host's systemd through a `systemctl` that enters PID 1's mount
 *   namespace, so the systemd runner manages host units as on Debian.
 * - An `ami-...` is taken to be a Flotilla node image (etcd at /usr/bin/etcd, the agent at
 *   /usr/local/bin/flotilla): nothing is added.
 *
 * The units keep their names and paths (src/config/node-files.ts); only drop-ins are added.
 * Pure: no Pulumi here.
 */
import type { ResolvedSpec } from '../../config/spec';
import type { IgnitionConfig, IgnitionFile } from '../../config/ignition-types';
import { dataUrl } from '../../config/ignition-types';
import { PATHS } from '../../config/node-files';
import { AGENT_ROOT } from '../image/bundle';

/** How a node's image gets etcd and the agent. */
export type NodeSetup = 'debian-packages' | 'docker' | 'podman' | 'preinstalled';

/** Container images for the Ignition families, pinned by tag (the registries cannot be asked from here for digests). */
export const CONTAINER_IMAGES = {
  /** etcd 3.5 (Debian 12's etcd-server is 3.4.23; the wire protocol and the v3 API are the same). */
  etcd: 'quay.io/coreos/etcd:v3.5.15',
  /** Node.js 18, which the agent bundle targets (esbuild target node18). */
  node: 'docker.io/library/node:18.20.4-bookworm-slim',
} as const;

/** The agent archive's S3 object, as user-data refers to it. */
export interface AgentObjectRef {
  bucket: string;
  key: string;
  region: string;
  /** `<bucket>.s3.<region>.amazonaws.com` */
  regionalDomainName: string;
  sha512: string;
}

export interface SetupImages {
  etcd: string;
  node: string;
}

/** A spec snippet (ClusterSpec.snippets entry) carrying data serialised as JSON (valid YAML too). */
export interface SetupSnippet {
  format: 'cloud-config' | 'ignition';
  contents: string;
  nodes?: string[];
}

export const SETUP_PATHS = {
  /** Debian: the fetcher and what it reads. */
  fetcher: '/usr/local/lib/flotilla-install/fetch-agent.js',
  agentSource: `${PATHS.configDir}/agent-source.json`,
  /** Flatcar/FCOS: Ignition puts the archive here; it is extracted in the same directory. */
  optRoot: '/opt/flotilla',
  optArchive: '/opt/flotilla/agent.tar.gz',
  systemctlShim: '/opt/flotilla/shim/systemctl',
} as const;

/** An Ignition config without its version: a snippet (the rendered config carries the version). */
export type IgnitionFragment = Omit<IgnitionConfig, 'ignition'>;

export const INSTALL_UNIT = 'flotilla-agent-install.service';

/** Masks Debian's etcd.service: systemd treats an empty unit file as masked (systemd.unit(5)). */
const DEBIAN_ETCD_MASK = `${PATHS.systemdDir}/etcd.service`;

function debianInstallUnit(): string {
  return [
    '[Unit]',
    'Description=Fetch the Flotilla agent from S3 (instance role, sha512-checked)',
    'Wants=network-online.target',
    'After=network-online.target',
    `ConditionPathExists=!${PATHS.flotillaBin}`,
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    `ExecStart=/usr/bin/node ${SETUP_PATHS.fetcher} ${SETUP_PATHS.agentSource}`,
    '',
  ].join('\n');
}

function requireInstallDropin(): string {
  return ['[Unit]', `Requires=${INSTALL_UNIT}`, `After=${INSTALL_UNIT}`, ''].join('\n');
}

/** Debian 12 (cloud-config): packages, the masked Debian etcd unit, the fetcher and its unit. */
export function debianSetup(agent: AgentObjectRef, fetcher: string): Record<string, unknown> {
  const source = { endpoint: `https://${agent.regionalDomainName}`, key: agent.key, region: agent.region, sha512: agent.sha512, dest: '/usr/local' };
  const file = (p: string, content: string, mode: number) => ({ path: p, permissions: `0${mode.toString(8)}`, owner: 'root:root', content });
  return {
    package_update: true,
    // etcd-client: etcdctl for the member replacement procedure (docs/pulumi.md).
    packages: ['etcd-server', 'etcd-client', 'nodejs'],
    write_files: [
      file(DEBIAN_ETCD_MASK, '', 0o644),
      file(SETUP_PATHS.fetcher, fetcher, 0o755),
      file(SETUP_PATHS.agentSource, `${JSON.stringify(source, null, 2)}\n`, 0o644),
      file(`${PATHS.systemdDir}/${INSTALL_UNIT}`, debianInstallUnit(), 0o644),
      file(`${PATHS.systemdDir}/flotilla-fleetd.service.d/10-agent-install.conf`, requireInstallDropin(), 0o644),
    ],
  };
}

function ignFile(p: string, contents: string, mode: number): IgnitionFile {
  return { path: p, mode, overwrite: true, contents: { source: dataUrl(contents) } };
}

function runtimeBin(runtime: 'docker' | 'podman'): string {
  return `/usr/bin/${runtime}`;
}

function runtimeUnitDeps(runtime: 'docker' | 'podman'): string[] {
  // Flatcar's docker is a daemon (socket-activated); podman runs without one.
  return runtime === 'docker' ? ['Requires=docker.service', 'After=docker.service'] : [];
}

/** flotilla-etcd.service in a container: host network, the same env file, PKI and data paths. */
export function etcdContainerDropin(runtime: 'docker' | 'podman', image: string): string {
  const bin = runtimeBin(runtime);
  const run = [
    bin, 'run', '--rm', '--name', 'flotilla-etcd', '--network', 'host',
    '--env-file', PATHS.etcdEnv,
    '-v', `${PATHS.pkiDir}:${PATHS.pkiDir}:ro`,
    '-v', `${PATHS.etcdDataDir}:${PATHS.etcdDataDir}`,
    image, '/usr/local/bin/etcd',
  ];
  return [
    '[Unit]',
    ...runtimeUnitDeps(runtime),
    '',
    '[Service]',
    // `docker run` does not speak sd_notify; the container runs until stopped.
    'Type=simple',
    `ExecStartPre=-${bin} rm -f flotilla-etcd`,
    'ExecStart=',
    `ExecStart=${run.join(' ')}`,
    `ExecStop=${bin} stop -t 10 flotilla-etcd`,
    '',
  ].join('\n');
}

/** flotilla-fleetd.service in a container that manages the host's units (see the module comment). */
export function fleetdContainerDropin(runtime: 'docker' | 'podman', image: string): string {
  const bin = runtimeBin(runtime);
  const run = [
    bin, 'run', '--rm', '--name', 'flotilla-fleetd', '--network', 'host', '--pid', 'host', '--privileged',
    '-v', `${SETUP_PATHS.optRoot}/bin/flotilla:${PATHS.flotillaBin}:ro`,
    '-v', `${SETUP_PATHS.optRoot}/lib/flotilla:${AGENT_ROOT}:ro`,
    '-v', `${SETUP_PATHS.systemctlShim}:/usr/local/sbin/systemctl:ro`,
    '-v', `${PATHS.configDir}:${PATHS.configDir}:ro`,
    '-v', '/var/lib/flotilla:/var/lib/flotilla',
    '-v', '/etc/machine-id:/etc/machine-id:ro',
    '-v', '/run/systemd/system:/run/systemd/system',
    image, 'node', PATHS.flotillaBin, 'fleetd', '--config', PATHS.fleetdConfig,
  ];
  return [
    '[Unit]',
    `Requires=${INSTALL_UNIT}`,
    `After=${INSTALL_UNIT}`,
    ...runtimeUnitDeps(runtime),
    '',
    '[Service]',
    `ExecStartPre=-${bin} rm -f flotilla-fleetd`,
    'ExecStart=',
    `ExecStart=${run.join(' ')}`,
    `ExecStop=${bin} stop -t 10 flotilla-fleetd`,
    '',
  ].join('\n');
}

function optInstallUnit(): string {
  return [
    '[Unit]',
    'Description=Unpack the Flotilla agent (fetched from S3 and sha512-checked by Ignition)',
    `ConditionPathExists=!${SETUP_PATHS.optRoot}/bin/flotilla`,
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    `ExecStart=/usr/bin/tar -xzf ${SETUP_PATHS.optArchive} -C ${SETUP_PATHS.optRoot} --no-same-owner`,
    '',
  ].join('\n');
}

/** The agent's `systemctl` inside its container: the host's, in PID 1's mount namespace. */
export const SYSTEMCTL_SHIM = '#!/bin/sh\n# The host\'s systemctl, run in PID 1\'s mount namespace (the container shares its PID namespace).\nexec nsenter --target 1 --mount -- /usr/bin/systemctl "$@"\n';

/** Flatcar / Fedora CoreOS (Ignition): the archive from S3, its unpacking, the container drop-ins. */
export function containerSetup(runtime: 'docker' | 'podman', agent: AgentObjectRef, images: SetupImages, opts: { createSudoGroup: boolean }): IgnitionFragment {
  const config: IgnitionFragment = {
    storage: {
      directories: [
        { path: PATHS.etcdDataDir, mode: 0o700 },
        { path: PATHS.fleetdStateDir, mode: 0o755 },
        { path: `${SETUP_PATHS.optRoot}/shim`, mode: 0o755 },
      ],
      files: [
        { path: SETUP_PATHS.optArchive, mode: 0o644, overwrite: true, contents: { source: `s3://${agent.bucket}/${agent.key}`, verification: { hash: `sha512-${agent.sha512}` } } },
        ignFile(SETUP_PATHS.systemctlShim, SYSTEMCTL_SHIM, 0o755),
      ],
    },
    systemd: {
      units: [
        { name: INSTALL_UNIT, contents: optInstallUnit() },
        { name: 'flotilla-fleetd.service', dropins: [{ name: '10-container.conf', contents: fleetdContainerDropin(runtime, images.node) }] },
      ],
    },
  };
  // Fedora CoreOS's administrators group is wheel; the rendered config puts the user in sudo
  // (Flatcar's and Debian's), which Ignition would fail to find. The sudoers rule names the user.
  if (opts.createSudoGroup) config.passwd = { groups: [{ name: 'sudo' }] };
  return config;
}

/** The etcd drop-in for members on the container families. */
export function etcdContainerSetup(runtime: 'docker' | 'podman', images: SetupImages): IgnitionFragment {
  return { systemd: { units: [{ name: 'flotilla-etcd.service', dropins: [{ name: '10-container.conf', contents: etcdContainerDropin(runtime, images.etcd) }] }] } };
}

export interface SetupInput {
  setup: NodeSetup;
  /** Present unless `preinstalled`. */
  agent?: AgentObjectRef;
  /** The bundled fetcher (Debian). */
  fetcher?: string;
  images?: Partial<SetupImages>;
  /** Fedora CoreOS has no `sudo` group. */
  createSudoGroup?: boolean;
}

/**
 * The snippets for a cluster's nodes; [] for images that have everything (`preinstalled`). A
 * member that replaces a removed one needs no snippet: its etcd.env says it joins (the node's
 * `etcdJoin`, see plan.ts renderStack), and every setup reads etcd.env.
 */
export function setupSnippets(spec: ResolvedSpec, input: SetupInput): SetupSnippet[] {
  const members = spec.nodes.filter((n) => n.etcdMember).map((n) => n.name);
  const images: SetupImages = { ...CONTAINER_IMAGES, ...(input.images ?? {}) };
  const json = (x: unknown) => JSON.stringify(x);
  if (input.setup === 'preinstalled') return [];
  if (!input.agent) throw new Error(`node setup ${input.setup} needs the agent object`);
  if (input.setup === 'debian-packages') {
    if (spec.format !== 'cloud-config') throw new Error('debian-packages setup is cloud-config');
    if (!input.fetcher) throw new Error('debian-packages setup needs the fetcher script');
    return [{ format: 'cloud-config', contents: json(debianSetup(input.agent, input.fetcher)) }];
  }
  if (spec.format !== 'ignition') throw new Error(`${input.setup} setup is Ignition`);
  return [
    { format: 'ignition', contents: json(containerSetup(input.setup, input.agent, images, { createSudoGroup: input.createSudoGroup ?? false })) },
    ...(members.length ? [{ format: 'ignition' as const, contents: json(etcdContainerSetup(input.setup, images)), nodes: members }] : []),
  ];
}
