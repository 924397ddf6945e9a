/**
 * `flotilla up`: image → render → launch → kernel → SSH → first-boot config done → secrets
 * delivered → etcd healthy → agents registered, each phase reported with its duration. Only
 * `launch` depends on the platform (a Launcher): QEMU processes in a namespace here, libvirt
 * domains in src/provision/libvirt/up.ts. The cluster's record (cluster.json), client SSH key,
 * host keys and PKI live in <state>/clusters/<name>/; `down` removes all of it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client } from 'ssh2';
import { generateKeyPair } from '../../config/ssh-keys';
import { FlotillaError } from '../../errors';
import { PATHS, PKI, etcdEndpoints } from '../../config/node-files';
import { renderCluster, type RenderedNode } from '../../config/render';
import { ensureSecrets, readSecrets, writeSecrets } from '../../config/secrets';
import type { ConfigFormat, ResolvedSpec } from '../../config/spec';
import { Registry } from '../../units/registry';
import { writeFileAtomic } from '../../util/fs';
import { sleep } from '../../util/async';
import { generatePki, installScript, nodePkiFiles, readPki, writePki, type ClusterPki } from '../pki';
import { libvirtQemuPid } from '../libvirt/driver';
import { clusterDir, destroyCluster, startCluster } from './cluster';
import { FirstBootFailedError, FirstBootWatch } from './console';
import { probeAccelerator } from './accel';
import { tuneForEmulation } from './tcg';
import { ensureImage, type BuildProgress, type ImageInfo } from './image';
import type { Accelerator } from './qemu-args';
import { cpuSeconds, runningPid } from './qemu';
import { sshConnect, sshExec, waitForSsh, type SshAuth } from './ssh';
import { openTunnel, type Tunnel } from './tunnel';


export const PHASES = ['image', 'render', 'launch', 'kernel', 'ssh', 'first-boot', 'secrets', 'etcd', 'agents'] as const;
export type Phase = (typeof PHASES)[number];

export interface PhaseEvent {
  phase: Phase;
  state: 'start' | 'done' | 'info';
  /** Seconds the phase took (done), or since launch for per-node milestones (info). */
  seconds?: number;
  detail?: string;
}

export interface NodeRecord {
  name: string;
  address: string;
  role: string;
  etcdMember: boolean;
  metadata: Record<string, string>;
  sshPort: number;
  hostPublicKey: string;
  /** QEMU's pidfile: Flotilla's (local), or libvirt's for the domain. */
  pidFile: string;
  /** libvirt platform: the node's domain (its QEMU is libvirt's child, not ours). */
  domain?: string;
  consoleLog: string;
  /** From the registry once the agent registered. */
  machineId?: string;
}

export interface ClusterRecord {
  version: 1;
  name: string;
  platform: 'local' | 'libvirt';
  format: ConfigFormat;
  /** Namespace the SSH forwards live in (local); absent: this host's 127.0.0.1 (libvirt). */
  netns?: string;
  createdAt: string;
  user: string;
  /** Client key Flotilla generated for this cluster (authorized on every node). */
  sshKeyFile: string;
  knownHostsFile: string;
  tls: boolean;
  keyPrefix: string;
  clientPort: number;
  /** Cluster-network endpoints (reachable from the nodes, or through a tunnel). */
  etcdEndpoints: string[];
  nodes: NodeRecord[];
  /** Seconds after each node's launch at which it reached each milestone. */
  timeline: Record<string, Partial<Record<Phase, number>>>;
  phases: Array<{ phase: Phase; seconds: number }>;
  /** QEMU CPU-seconds per node when the cluster was ready. */
  cpuSeconds: Record<string, number>;
}

export interface UpOptions {
  spec: ResolvedSpec;
  format?: ConfigFormat;
  progress?: (ev: PhaseEvent) => void;
  /** Per-phase deadline for waiting on nodes (default 10 min: TCG on a loaded host is slow). */
  timeoutMs?: number;
  /**
   * Tests only (no CLI flag): the files the node image ships, for the render's check of Ignition
   * entries; `[]` skips it, to boot a config that fails at first boot.
   */
  imageFiles?: readonly string[];
}

export interface UpResult {
  record: ClusterRecord;
  /** True when the cluster was already running and nothing was changed. */
  already: boolean;
}

/** What a platform's launch step gets: everything rendered, nothing started yet. */
export interface LaunchContext {
  spec: ResolvedSpec;
  rendered: RenderedNode[];
  image: ImageInfo;
  accel: Accelerator;
  progress: (ev: PhaseEvent) => void;
}

export interface LaunchedNode {
  name: string;
  sshPort: number;
  consoleLog: string;
  pidFile: string;
  domain?: string;
  /** Date.now() when its VM was started: node milestones are counted from here. */
  launchedAt: number;
}

export interface LaunchedCluster {
  netns?: string;
  /** In spec order. */
  nodes: LaunchedNode[];
  /** One line for the launch phase's report. */
  detail: string;
}

/** The platform-specific part of `up`: start one VM per rendered node, undoing all of it if any fails. */
export interface Launcher {
  platform: ClusterRecord['platform'];
  /** Checks what the platform needs before anything is built or written (fail fast). */
  preflight?(): Promise<void>;
  launch(ctx: LaunchContext): Promise<LaunchedCluster>;
  /**
   * Stops every VM of the cluster and keeps its files (console logs, rendered configs, record),
   * after a first boot failed: waiting cannot repair it, and emulated VMs cost CPU. Returns one
   * line for the error. Platforms without it leave the cluster running.
   */
  halt?(name: string): Promise<string>;
}

/** QEMU processes in the cluster's network namespace (src/provision/local/cluster.ts). */
export const localLauncher: Launcher = {
  platform: 'local',
  async launch({ spec, rendered, image, accel }) {
    const c = await startCluster({ spec, rendered, image, accel });
    return {
      netns: c.netns,
      nodes: c.nodes.map((n) => ({ name: n.name, sshPort: n.sshPort, consoleLog: n.consoleLog, pidFile: n.pidFile, launchedAt: n.launchedAt })),
      detail: `${c.nodes.length} QEMU processes in netns ${c.netns}`,
    };
  },
  async halt(name) {
    const stopped = await destroyCluster(name, { keepFiles: true });
    return `stopped the cluster's ${stopped.length} VM${stopped.length === 1 ? '' : 's'}; its files stay in ${clusterDir(name)} until 'flotilla down --name ${name}'`;
  },
};

const files = (name: string) => {
  const dir = clusterDir(name);
  return {
    dir,
    record: path.join(dir, 'cluster.json'),
    key: path.join(dir, 'ssh', 'id_ed25519'),
    knownHosts: path.join(dir, 'ssh', 'known_hosts'),
    secrets: path.join(dir, 'secrets.json'),
    pki: path.join(dir, 'pki.json'),
  };
};

export function readRecord(name: string): ClusterRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(files(name).record, 'utf8')) as ClusterRecord;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FlotillaError('invalid-input', `${files(name).record}: unreadable cluster record: ${(err as Error).message}`);
  }
}

/** Names of the local clusters with a record. */
export function listClusters(): string[] {
  const dir = path.dirname(clusterDir('x'));
  try {
    return fs.readdirSync(dir).filter((n) => fs.existsSync(path.join(dir, n, 'cluster.json'))).sort();
  } catch {
    return [];
  }
}

/** `--name` default: the one local cluster, if there is exactly one. */
export function resolveClusterName(name: string | undefined): string {
  if (name) return name;
  const all = listClusters();
  if (all.length === 1) return all[0]!;
  throw new FlotillaError('usage', all.length === 0 ? 'no local cluster; run flotilla up' : `several local clusters (${all.join(', ')}); pass --name`);
}

/** The node's live QEMU process, if any. */
export function nodePid(n: Pick<NodeRecord, 'pidFile' | 'domain'>): number | undefined {
  return n.domain ? libvirtQemuPid(n.domain, n.pidFile) : runningPid(n.pidFile);
}

export function nodeRunning(n: NodeRecord): boolean {
  return nodePid(n) !== undefined;
}

function clusterKey(file: string): { privateKey: string; publicKey: string } {
  if (!fs.existsSync(file)) {
    const k = generateKeyPair('flotilla-cluster-key');
    writeFileAtomic(file, k.privateKey, 0o600);
    writeFileAtomic(`${file}.pub`, `${k.publicKey}\n`, 0o644);
  }
  return { privateKey: fs.readFileSync(file, 'utf8'), publicKey: fs.readFileSync(`${file}.pub`, 'utf8').trim() };
}

export function sshAuth(record: ClusterRecord): SshAuth {
  return { username: record.user, privateKey: fs.readFileSync(record.sshKeyFile) };
}

/** Runs a root shell script on a node (heredoc, so the script needs no quoting). */
async function runScript(client: Client, script: string, timeoutMs: number): Promise<void> {
  if (script.includes('FLOTILLA_SCRIPT_EOF')) throw new FlotillaError('internal', 'script contains its own delimiter');
  const r = await sshExec(client, `sudo sh -s <<'FLOTILLA_SCRIPT_EOF'\n${script}FLOTILLA_SCRIPT_EOF\n`, timeoutMs);
  if (r.code !== 0) throw new FlotillaError('external', `script failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
}

/** The etcdctl invocation on a node, with the cluster's client certificate when TLS is on. */
export function etcdctlCommand(record: Pick<ClusterRecord, 'tls' | 'clientPort'>, args: string): string {
  const scheme = record.tls ? 'https' : 'http';
  const tls = record.tls ? ` --cacert=${PKI.ca} --cert=${PKI.clientCert} --key=${PKI.clientKey}` : '';
  return `sudo env ETCDCTL_API=3 etcdctl --endpoints=${scheme}://127.0.0.1:${record.clientPort}${tls} ${args}`;
}

function consoleTail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no console output)';
  }
}

/** Fails with the node's console log named (and its tail shown), the way every node failure should read. */
function nodeFailure(node: NodeRecord, what: string, cause?: unknown): FlotillaError {
  const why = cause ? `: ${(cause as Error).message}` : '';
  return new FlotillaError('external', `node ${node.name}: ${what}${why}\nconsole log: ${node.consoleLog}\n--- last lines ---\n${consoleTail(node.consoleLog)}`, [], cause ? { cause } : undefined);
}

export async function upLocal(opts: UpOptions): Promise<UpResult> {
  return upCluster(opts, localLauncher);
}

/** `up` on any platform: everything but the launch is the same. */
export async function upCluster(opts: UpOptions, launcher: Launcher): Promise<UpResult> {
  const spec0 = opts.spec;
  const name = spec0.name;
  const f = files(name);
  const progress = opts.progress ?? (() => undefined);
  const timeoutMs = opts.timeoutMs ?? 10 * 60_000;
  const existing = readRecord(name);
  if (existing) {
    if (existing.platform !== launcher.platform) {
      throw new FlotillaError('conflict', `cluster ${name} exists on platform ${existing.platform}, not ${launcher.platform}; run 'flotilla down --name ${name}' first or choose another name`);
    }
    const down = existing.nodes.filter((n) => !nodeRunning(n));
    if (down.length === 0) return { record: existing, already: true };
    throw new FlotillaError('conflict', `cluster ${name} exists but ${down.map((n) => n.name).join(', ')} ${down.length === 1 ? 'is' : 'are'} not running; run 'flotilla down --name ${name}' first`);
  }
  await launcher.preflight?.();
  const phases: ClusterRecord['phases'] = [];
  const phase = async <T>(p: Phase, fn: () => Promise<T>, detail?: (r: T) => string): Promise<T> => {
    progress({ phase: p, state: 'start' });
    const t = performance.now();
    const r = await fn();
    const seconds = (performance.now() - t) / 1000;
    phases.push({ phase: p, seconds });
    progress({ phase: p, state: 'done', seconds, ...(detail ? { detail: detail(r) } : {}) });
    return r;
  };

  const image = await phase(
    'image',
    () => ensureImage({}, (b: BuildProgress) => b.phase === 'done' && progress({ phase: 'image', state: 'info', ...(b.seconds !== undefined ? { seconds: b.seconds } : {}), detail: `${b.step}${b.detail ? ` ${b.detail}` : ''}` })),
    (i) => `${i.id.slice(0, 12)}`,
  );

  const accel = await probeAccelerator(image);
  progress({ phase: 'launch', state: 'info', detail: `accelerator ${accel.accel} (${accel.reason})` });
  fs.mkdirSync(f.dir, { recursive: true, mode: 0o700 });
  const key = clusterKey(f.key);
  let spec: ResolvedSpec = { ...spec0, ssh: { ...spec0.ssh, authorizedKeys: [...new Set([...spec0.ssh.authorizedKeys, key.publicKey])] } };
  if (accel.accel === 'tcg') {
    const tuned = tuneForEmulation(spec);
    for (const note of tuned.notes) progress({ phase: 'render', state: 'info', detail: `TCG: ${note}` });
    spec = tuned.spec;
  }
  // A format given over the spec's becomes the spec's: spec.json (what replace renders again
  // from) and verify's expectations must describe what the nodes really got.
  if (opts.format && opts.format !== spec.format) spec = { ...spec, format: opts.format };
  const format = spec.format;
  const { rendered, pki } = await phase<{ rendered: RenderedNode[]; pki: ClusterPki | undefined }>(
    'render',
    async () => {
      const secrets = ensureSecrets(spec, readSecrets(f.secrets));
      writeSecrets(f.secrets, secrets);
      // `flotilla replace` renders nodes again from the spec the cluster was made with (0600: snippets may hold secrets).
      writeFileAtomic(path.join(f.dir, 'spec.json'), `${JSON.stringify(spec, null, 2)}\n`, 0o600);
      let pki: ClusterPki | undefined;
      if (spec.etcd.tls) {
        pki = readPki(f.pki) ?? (await generatePki(spec));
        writePki(f.pki, pki);
      }
      return { rendered: renderCluster(spec, secrets, { format, ...(opts.imageFiles ? { imageFiles: opts.imageFiles } : {}) }), pki };
    },
    (r) => `${r.rendered.length} nodes, ${format}, ${Math.round(r.rendered.reduce((n, x) => n + Buffer.byteLength(x.userData), 0) / r.rendered.length)} bytes/node${r.pki ? ', TLS PKI' : ''}`,
  );

  const cluster = await phase('launch', () => launcher.launch({ spec, rendered, image, accel: accel.accel, progress }), (c) => c.detail);

  const record: ClusterRecord = {
    version: 1,
    name,
    platform: launcher.platform,
    format,
    ...(cluster.netns !== undefined ? { netns: cluster.netns } : {}),
    createdAt: new Date().toISOString(),
    user: spec.ssh.user,
    sshKeyFile: f.key,
    knownHostsFile: f.knownHosts,
    tls: spec.etcd.tls,
    keyPrefix: spec.agent.keyPrefix,
    clientPort: spec.etcd.clientPort,
    etcdEndpoints: etcdEndpoints(spec),
    nodes: cluster.nodes.map((n) => {
      const s = spec.nodes.find((x) => x.name === n.name)!;
      const hostPublicKey = rendered.find((r) => r.node === n.name)!.hostPublicKey;
      return { name: n.name, address: s.address, role: s.role, etcdMember: s.etcdMember, metadata: s.metadata, sshPort: n.sshPort, hostPublicKey, pidFile: n.pidFile, ...(n.domain ? { domain: n.domain } : {}), consoleLog: n.consoleLog };
    }),
    timeline: Object.fromEntries(cluster.nodes.map((n) => [n.name, { launch: 0 }])),
    phases,
    cpuSeconds: {},
  };
  // The rendered documents stay beside each node (0600: they hold its host key) for artifacts.
  for (const r of rendered) {
    const ndir = path.dirname(cluster.nodes.find((n) => n.name === r.node)!.consoleLog);
    writeFileAtomic(path.join(ndir, r.format === 'ignition' ? 'rendered.ign' : 'rendered.user-data'), r.userData, 0o600);
    if (r.networkConfig) writeFileAtomic(path.join(ndir, 'rendered.network-config'), r.networkConfig, 0o600);
  }
  // Known before anything else can fail, so `down` and `ssh` always work on what was launched.
  writeFileAtomic(f.knownHosts, record.nodes.map((n) => `[127.0.0.1]:${n.sshPort} ${n.hostPublicKey}`).join('\n') + '\n', 0o644);
  writeFileAtomic(f.record, `${JSON.stringify(record, null, 2)}\n`, 0o644);

  const byName = new Map(record.nodes.map((n) => [n.name, n]));
  const since = (node: string) => (Date.now() - cluster.nodes.find((n) => n.name === node)!.launchedAt) / 1000;
  const mark = (node: string, p: Phase) => {
    const s = since(node);
    record.timeline[node]![p] = Math.round(s * 10) / 10;
    progress({ phase: p, state: 'info', seconds: s, detail: node });
  };
  const clients = new Map<string, Client>();
  // Every node's console, read by every wait until first boot is done: a failed first boot on any
  // node (Ignition, cloud-init, the image's failure marker) ends all the waits within a poll.
  const boot = new FirstBootWatch(cluster.nodes);
  try {
    await phase('kernel', () =>
      Promise.all(
        cluster.nodes.map(async (n) => {
          const deadline = n.launchedAt + timeoutMs;
          while (!(fs.existsSync(n.consoleLog) && fs.statSync(n.consoleLog).size > 0)) {
            const failed = boot.failure();
            if (failed) throw failed;
            if (!nodeRunning(byName.get(n.name)!)) throw nodeFailure(byName.get(n.name)!, 'QEMU exited before the kernel printed anything');
            if (Date.now() > deadline) throw nodeFailure(byName.get(n.name)!, 'no console output');
            await sleep(100);
          }
          mark(n.name, 'kernel');
        }),
      ),
    );
    const auth: SshAuth = { username: spec.ssh.user, privateKey: key.privateKey };
    await phase('ssh', () =>
      Promise.all(
        cluster.nodes.map(async (l) => {
          const n = byName.get(l.name)!;
          try {
            await waitNodeSsh(record, n, l.launchedAt + timeoutMs, auth, boot);
          } catch (err) {
            if (FirstBootFailedError.is(err)) throw err;
            throw nodeFailure(n, 'never answered SSH with its pinned host key', err);
          }
          mark(n.name, 'ssh');
          clients.set(n.name, await sshConnect(sshEndpoint(record, n), n.hostPublicKey, auth, 30_000));
        }),
      ),
    );
    const flag = format === 'ignition' ? '/var/lib/flotilla/ignition.done' : '/var/lib/cloud/instance/boot-finished';
    await phase('first-boot', () =>
      Promise.all(
        record.nodes.map(async (n) => {
          const c = clients.get(n.name)!;
          const wait = await boot.guard(sshExec(c, `for i in $(seq ${Math.ceil(timeoutMs / 500)}); do [ -e ${flag} ] && break; sleep 0.5; done; test -e ${flag}`, timeoutMs + 10_000));
          if (wait.code !== 0) throw nodeFailure(n, `first-boot config did not finish (${flag} missing)`);
          if (format === 'cloud-config') {
            const res = await sshExec(c, 'cat /run/cloud-init/result.json', 30_000);
            let errors: string[] = [];
            try {
              errors = (JSON.parse(res.stdout) as { v1?: { errors?: string[] } }).v1?.errors ?? [];
            } catch {
              errors = [`unreadable /run/cloud-init/result.json: ${res.stderr.trim()}`];
            }
            if (errors.length) throw nodeFailure(n, `cloud-init reported errors: ${errors.join('; ')}`);
          }
          mark(n.name, 'first-boot');
        }),
      ),
    );
    await phase(
      'secrets',
      () =>
        Promise.all(
          record.nodes.map(async (n) => {
            const script = pki ? installScript(nodePkiFiles(pki, n.name), PATHS.pkiReady) : `set -eu\nmkdir -p ${PATHS.pkiDir}\ntouch ${PATHS.pkiReady}\n`;
            try {
              await runScript(clients.get(n.name)!, script, 60_000);
            } catch (err) {
              throw nodeFailure(n, 'secret delivery failed', err);
            }
            mark(n.name, 'secrets');
          }),
        ),
      () => (pki ? 'TLS keys over the pinned SSH connections' : 'no TLS: start signal only'),
    );
    const first = record.nodes.find((n) => n.etcdMember)!;
    const members = record.nodes.filter((n) => n.etcdMember);
    await phase(
      'etcd',
      async () => {
        const deadline = Date.now() + timeoutMs;
        let last = '';
        for (;;) {
          // A starved emulated guest can take minutes to run one etcdctl (measured: 2m53s with
          // nine TCG VMs on two cores): a run that outlasts its deadline is "not yet", not a failure.
          const callMs = Math.max(30_000, Math.min(120_000, deadline - Date.now()));
          const r = await sshExec(clients.get(first.name)!, etcdctlCommand(record, 'endpoint health --cluster -w json'), callMs).catch((err: unknown) => {
            if (FlotillaError.is(err) && err.code === 'timeout') return undefined;
            throw err;
          });
          if (!r) last = `etcdctl did not answer within ${Math.round(callMs / 1000)} s`;
          else {
            try {
              const health = JSON.parse(r.stdout) as Array<{ endpoint: string; health: boolean }>;
              if (health.length === members.length && health.every((h) => h.health)) break;
              last = `${health.filter((h) => h.health).length}/${members.length} healthy`;
            } catch {
              last = (r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? '';
            }
          }
          if (Date.now() > deadline) throw nodeFailure(first, `etcd did not become healthy: ${last}; see also 'flotilla ssh ${first.name} -- journalctl -u flotilla-etcd'`);
          await sleep(500);
        }
        for (const n of members) mark(n.name, 'etcd');
      },
      () => `${members.length} members healthy${record.tls ? ' over TLS' : ''}`,
    );
    await phase(
      'agents',
      async () => {
        const conn = await connectRecord(record, clients.get(first.name)!);
        try {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const machines = await conn.registry.listMachines();
            for (const m of machines) {
              const n = record.nodes.find((x) => x.address === m.address);
              if (n && !n.machineId) {
                n.machineId = m.id;
                mark(n.name, 'agents');
              }
            }
            if (record.nodes.every((n) => n.machineId)) break;
            if (Date.now() > deadline) {
              const missing = record.nodes.filter((n) => !n.machineId);
              throw nodeFailure(missing[0]!, `agent never registered (${missing.map((n) => n.name).join(', ')}); see 'flotilla ssh ${missing[0]!.name} -- journalctl -u flotilla-fleetd'`);
            }
            await sleep(300);
          }
        } finally {
          await conn.close();
        }
      },
      () => `${record.nodes.length} machines registered`,
    );
    for (const n of record.nodes) {
      const pid = nodePid(n);
      record.cpuSeconds[n.name] = Math.round(((pid !== undefined ? cpuSeconds(pid) : undefined) ?? 0) * 10) / 10;
    }
    writeFileAtomic(f.record, `${JSON.stringify(record, null, 2)}\n`, 0o644);
    return { record, already: false };
  } catch (err0) {
    let err = err0;
    writeFileAtomic(f.record, `${JSON.stringify(record, null, 2)}\n`, 0o644);
    if (FirstBootFailedError.is(err)) {
      for (const c of clients.values()) c.end();
      const note = launcher.halt
        ? await launcher.halt(name).catch((e: unknown) => `stopping the cluster's VMs failed (${(e as Error).message}); run 'flotilla down --name ${name}'`)
        : `the cluster is left running; 'flotilla down --name ${name}' removes it`;
      err = err.withNote(note);
    }
    throw err;
  } finally {
    for (const c of clients.values()) c.end();
  }
}

/** Where a node's SSH forward listens: 127.0.0.1, inside the cluster's namespace if it has one. */
export function sshEndpoint(record: Pick<ClusterRecord, 'netns'>, node: Pick<NodeRecord, 'sshPort'>): { host: string; port: number; netns?: string } {
  return { host: '127.0.0.1', port: node.sshPort, ...(record.netns ? { netns: record.netns } : {}) };
}

/** Waits for one node's SSH (pinned host key, a real command succeeds) until `deadline` (epoch ms), or until a first boot fails. */
async function waitNodeSsh(record: ClusterRecord, node: NodeRecord, deadline: number, auth: SshAuth, boot: FirstBootWatch): Promise<void> {
  await waitForSsh('127.0.0.1', node.sshPort, node.hostPublicKey, deadline, {
    auth,
    ...(record.netns ? { netns: record.netns } : {}),
    // The image reports on its console when sshd listens and the uplink has its address.
    readyHint: () => boot.saw(node.name, 'ssh'),
    abort: () => boot.failure() ?? (nodeRunning(node) ? undefined : `QEMU for ${node.name} is not running (see ${node.consoleLog})`),
  });
}

/** A registry connection to a local cluster: SSH to an etcd member, tunnel to its etcd. */
export interface RecordConnection {
  registry: Registry;
  close(): Promise<void>;
}

export async function connectRecord(record: ClusterRecord, viaClient?: Client): Promise<RecordConnection> {
  const member = record.nodes.find((n) => n.etcdMember && nodeRunning(n)) ?? record.nodes.find((n) => n.etcdMember)!;
  // The whole 30 s may go to the key exchange: a starved emulated guest was seen needing more than 10 s.
  const client = viaClient ?? (await sshConnect(sshEndpoint(record, member), member.hostPublicKey, sshAuth(record), 30_000, 30_000));
  let tunnel: Tunnel | undefined;
  try {
    tunnel = await openTunnel(client, '127.0.0.1', record.clientPort);
    let tls: { ca: string; cert: string; key: string } | undefined;
    if (record.tls) {
      const pki = readPki(files(record.name).pki);
      if (!pki) throw new FlotillaError('not-found', `cluster ${record.name}: ${files(record.name).pki} is missing`);
      tls = { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key };
    }
    // Emulated nodes answer slowly: generous deadlines, or a busy etcd reads as a dead one.
    const registry = await Registry.connect({ endpoints: [`${record.tls ? 'https' : 'http'}://127.0.0.1:${tunnel.port}`], prefix: record.keyPrefix, ...(tls ? { tls } : {}), dialTimeoutMs: 30_000, requestTimeoutMs: 30_000 });
    const t = tunnel;
    return {
      registry,
      async close() {
        await registry.close();
        await t.close();
        if (!viaClient) client.end();
      },
    };
  } catch (err) {
    await tunnel?.close();
    if (!viaClient) client.end();
    throw err;
  }
}

export async function downLocal(name: string): Promise<{ stopped: string[]; existed: boolean }> {
  const existed = fs.existsSync(clusterDir(name));
  const stopped = await destroyCluster(name);
  return { stopped, existed };
}
