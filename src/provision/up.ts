/**
 * `flotilla up`: image → render → launch → kernel → SSH → first-boot config done → secrets
 * delivered → etcd healthy → agents registered, each phase reported with its duration. Only
 * `launch` depends on the platform (a Launcher): QEMU processes in a namespace
 * (src/provision/local/up.ts), libvirt domains (src/provision/libvirt/up.ts). The cluster's record (cluster.json), client SSH key,
 * host keys and PKI live in <state>/clusters/<name>/; `down` removes all of it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../errors';
import { etcdEndpoints } from '../config/node-files';
import { renderCluster, type RenderedNode } from '../config/render';
import { ensureSecrets, readSecrets, writeSecrets } from '../config/secrets';
import type { ConfigFormat, ResolvedSpec } from '../config/spec';
import { writeFileAtomic } from '../util/fs';
import { sleep } from '../util/async';
import { generatePki, readPki, writePki, type ClusterPki } from '../cluster/pki';
import { libvirtQemuPid } from './libvirt/driver';
import { FirstBootFailedError, FirstBootWatch } from './console';
import { probeAccelerator } from './local/accel';
import { tuneForEmulation } from './local/tcg';
import { ensureImage, type BuildProgress, type ImageInfo } from './image';
import type { Accelerator } from './local/qemu-args';
import { cpuSeconds, runningPid } from './local/qemu';
import { NodeConnection } from '../ssh';
import { deliverSecrets, nodeFailure, waitFirstBoot, waitKernel, waitSsh, type BootingNode } from './bring-up';
import { etcdctlCommand, memberEtcdctl } from '../cluster/etcdctl';
import { connectRegistry, type RecordConnection } from '../cluster/registry-connection';
import { clusterFiles, ensureClientKey, nodeSshTarget, readRecord, writeKnownHosts, writeRecord, writeSavedSpec, type BootMode, type BootRecord, type ClusterRecord, type NodeRecord, type Phase } from '../cluster/store';



export interface PhaseEvent {
  phase: Phase;
  state: 'start' | 'done' | 'info';
  /** Seconds the phase took (done), or since launch for per-node milestones (info). */
  seconds?: number;
  detail?: string;
}


export interface UpOptions {
  spec: ResolvedSpec;
  format?: ConfigFormat;
  progress?: (ev: PhaseEvent) => void;
  /** Per-phase deadline for waiting on nodes (default 10 min: TCG on a loaded host is slow). */
  timeoutMs?: number;
  /** Restore nodes from a snapshot template (the local platform's default) or boot each from the kernel. */
  boot?: BootMode;
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
  /** As asked for; absent: the platform's default (local: snapshot). */
  boot?: BootMode;
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
  /** How the nodes started (absent: booted from the kernel). */
  boot?: BootRecord;
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


/** The node's live QEMU process, if any. */
export function nodePid(n: Pick<NodeRecord, 'pidFile' | 'domain'>): number | undefined {
  return n.domain ? libvirtQemuPid(n.domain, n.pidFile) : runningPid(n.pidFile);
}

export function nodeRunning(n: NodeRecord): boolean {
  return nodePid(n) !== undefined;
}


/** `up` on any platform: everything but the launch is the same. */
export async function upCluster(opts: UpOptions, launcher: Launcher): Promise<UpResult> {
  const spec0 = opts.spec;
  const name = spec0.name;
  const f = clusterFiles(name);
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
  const key = ensureClientKey(name);
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
      writeSavedSpec(name, spec);
      let pki: ClusterPki | undefined;
      if (spec.etcd.tls) {
        pki = readPki(f.pki) ?? (await generatePki(spec));
        writePki(f.pki, pki);
      }
      return { rendered: renderCluster(spec, secrets, { format, ...(opts.imageFiles ? { imageFiles: opts.imageFiles } : {}) }), pki };
    },
    (r) => `${r.rendered.length} nodes, ${format}, ${Math.round(r.rendered.reduce((n, x) => n + Buffer.byteLength(x.userData), 0) / r.rendered.length)} bytes/node${r.pki ? ', TLS PKI' : ''}`,
  );

  const cluster = await phase('launch', () => launcher.launch({ spec, rendered, image, accel: accel.accel, ...(opts.boot ? { boot: opts.boot } : {}), progress }), (c) => c.detail);

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
    accelerator: accel.accel,
    boot: cluster.boot ?? { mode: 'fresh' },
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
  writeKnownHosts(record);
  writeRecord(record);

  const byName = new Map(record.nodes.map((n) => [n.name, n]));
  const since = (node: string) => (Date.now() - cluster.nodes.find((n) => n.name === node)!.launchedAt) / 1000;
  const mark = (node: string, p: Phase) => {
    const s = since(node);
    record.timeline[node]![p] = Math.round(s * 10) / 10;
    progress({ phase: p, state: 'info', seconds: s, detail: node });
  };
  const clients = new Map<string, NodeConnection>();
  // Every node's console, read by every wait until first boot is done: a failed first boot on any
  // node (Ignition, cloud-init, the image's failure marker) ends all the waits within a poll.
  const boot = new FirstBootWatch(cluster.nodes);
  try {
    const booting = new Map(
      cluster.nodes.map((l) => [l.name, { record, node: byName.get(l.name)!, deadline: l.launchedAt + timeoutMs, boot, running: () => nodeRunning(byName.get(l.name)!), privateKey: key.privateKey } satisfies BootingNode]),
    );
    const eachNode = (fn: (b: BootingNode) => Promise<void>) => Promise.all([...booting.values()].map(fn));
    await phase('kernel', () =>
      eachNode(async (b) => {
        await waitKernel(b);
        mark(b.node.name, 'kernel');
      }),
    );
    await phase('ssh', () =>
      eachNode(async (b) => {
        clients.set(b.node.name, await waitSsh(b));
        mark(b.node.name, 'ssh');
      }),
    );
    await phase('first-boot', () =>
      eachNode(async (b) => {
        await waitFirstBoot(b, clients.get(b.node.name)!);
        mark(b.node.name, 'first-boot');
      }),
    );
    await phase(
      'secrets',
      () =>
        eachNode(async (b) => {
          await deliverSecrets(b, clients.get(b.node.name)!, pki);
          mark(b.node.name, 'secrets');
        }),
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
          const r = await clients.get(first.name)!.exec(etcdctlCommand('endpoint health --cluster -w json', memberEtcdctl(record)), { sudo: true, timeoutMs: callMs }).catch((err: unknown) => {
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
        const conn = await connectRegistry(record, clients.get(first.name)!);
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
    writeRecord(record);
    return { record, already: false };
  } catch (err0) {
    let err = err0;
    writeRecord(record);
    if (FirstBootFailedError.is(err)) {
      await Promise.all([...clients.values()].map((c) => c.close()));
      const note = launcher.halt
        ? await launcher.halt(name).catch((e: unknown) => `stopping the cluster's VMs failed (${(e as Error).message}); run 'flotilla down --name ${name}'`)
        : `the cluster is left running; 'flotilla down --name ${name}' removes it`;
      err = err.withNote(note);
    }
    throw err;
  } finally {
    await Promise.all([...clients.values()].map((c) => c.close()));
  }
}

/** The registry of a local cluster: SSH to a running etcd member, a tunnel to its etcd. */
export async function connectRecord(record: ClusterRecord): Promise<RecordConnection> {
  const member = record.nodes.find((n) => n.etcdMember && nodeRunning(n)) ?? record.nodes.find((n) => n.etcdMember)!;
  // The whole 30 s may go to the key exchange: a starved emulated guest was seen needing more than 10 s.
  const conn = new NodeConnection(nodeSshTarget(record, member), { readyTimeoutMs: 30_000 });
  try {
    const reg = await connectRegistry(record, conn);
    return {
      registry: reg.registry,
      async close() {
        await reg.close();
        await conn.close();
      },
    };
  } catch (err) {
    await conn.close();
    throw err;
  }
}
