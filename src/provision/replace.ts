/**
 * `flotilla replace`: rolling replacement of a running cluster's nodes, one at a time, keeping
 * etcd's quorum (issue 7). Per node:
 *
 *   check    the other members are healthy and enough of them remain (replace-plan.ts)
 *   drain    stop the node's agent; wait until its movable units are active elsewhere
 *   leader   if the node's member leads, hand leadership to a caught-up follower (move-leader)
 *   remove   `etcdctl member remove` from another member
 *   destroy  stop the VM, delete its disk and first-boot media
 *   add      `etcdctl member add` with its peer URL, before it boots
 *   render   the node's config with etcd joining the existing cluster (`etcdJoin`: the
 *            membership member add left, initial-cluster-state existing)
 *   boot     a fresh VM (same name, address, ports, host key): kernel, SSH, first boot
 *   secrets  its PKI over the pinned SSH connection (pki.ts; the same certificates)
 *   etcd     its member started and every member healthy
 *   agent    its agent registered (a new machine ID: a new VM has a new /etc/machine-id)
 *   verify   a key written before the first replacement reads back, linearizably through
 *            another member and from the new member's own copy (kola's rolling-upgrade
 *            check); with `verify`, the node, etcd and fleet suites of `flotilla verify`
 *
 * Only `destroy` and `launch` depend on the platform (NodeMachinery). The order puts workers
 * first, then followers, the etcd leader last (replacementOrder). Typhoon refuses to replace
 * controllers in place for fear of quorum loss; here each step that could lose it is checked
 * against the live membership before it runs, and a run that stops half-way says which node is
 * out and that running the same command again resumes (every step looks at the live state).
 */
import { randomBytes } from 'node:crypto';
import { FlotillaError } from '../errors';
import { etcdPeerUrl } from '../config/node-files';
import { renderNode, type RenderedNode } from '../config/render';
import { ensureSecrets, readSecrets } from '../config/secrets';
import type { EtcdJoin, ResolvedSpec } from '../config/spec';
import { checkUnitText } from '../units/client';
import { throwIfProblems } from '../errors';
import { sleep } from '../util/async';
import { readPki } from '../cluster/pki';
import { connectRegistry } from '../cluster/registry-connection';
import type { NodeConnection } from '../ssh';
import { clientUrl, connectAnchor, connectNode, etcdctl, etcdView, membershipChange, must } from './replace-etcd';
import { deliverSecrets, waitFirstBoot, waitKernel, waitSsh, type BootingNode } from './bring-up';
import { FirstBootWatch } from './console';
import { probeAccelerator } from './local/accel';
import { ensureImage, type ImageInfo } from './image';
import type { Accelerator } from './local/qemu-args';
import { cpuSeconds } from './local/qemu';
import { tuneForEmulation } from './local/tcg';
import { nodePid, nodeRunning } from './up';
import type { Registry } from '../units/registry';
import { clientPublicKey, clusterFiles, readRecord, readSavedSpec, writeRecord, writeSavedSpec, type BootMode, type ClusterRecord, type NodeRecord, type Phase } from '../cluster/store';
import {
  joinMembership,
  leaderSuccessor,
  memberAction,
  quorum,
  replacementOrder,
  recordMismatchProblems,
  specChangeProblems,
  unitsNotMoved,
  unitsToMove,
  type DrainView,
  type MemberAction,
} from './replace-plan';

/** What a platform does for a replacement: throw a node's VM away, boot a new one in its place. */
export interface NodeMachinery {
  platform: ClusterRecord['platform'];
  /** The image the node's current VM was booted from, if it is still in the cache. */
  currentImage(record: ClusterRecord, node: NodeRecord): ImageInfo | undefined;
  /** Stops the node's VM (if running) and deletes its disk and first-boot media. Safe to repeat. */
  destroy(record: ClusterRecord, node: NodeRecord): Promise<{ stopped: boolean }>;
  /** Boots a fresh VM for the node from `image` with `rendered` as its first boot; same name, address and SSH port. */
  launch(ctx: {
    record: ClusterRecord;
    node: NodeRecord;
    spec: ResolvedSpec;
    rendered: RenderedNode;
    image: ImageInfo;
    accel: Accelerator;
    /** As asked for (absent: the cluster's own boot mode). */
    boot?: BootMode;
    /** One line per template build step, fallback or restore. */
    info: (detail: string) => void;
  }): Promise<{ launchedAt: number; pidFile: string; consoleLog: string }>;
}

export const REPLACE_STEPS = ['check', 'drain', 'leader', 'remove', 'destroy', 'add', 'render', 'boot', 'secrets', 'etcd', 'agent', 'verify'] as const;
export type ReplaceStep = (typeof REPLACE_STEPS)[number];

export interface ReplaceEvent {
  /** Absent for run-wide events (image, plan). */
  node?: string;
  step: ReplaceStep | 'image' | 'plan' | 'sentinel';
  state: 'start' | 'done' | 'info';
  seconds?: number;
  detail?: string;
}

export interface ReplaceOptions {
  name: string;
  /** New configuration; default: the spec the cluster was made (or last replaced) with. */
  spec?: ResolvedSpec;
  /** Nodes to replace; default every node. */
  nodes?: string[];
  /** `current`: each node boots the image it runs now; `rebuild`: the image of Flotilla's current sources (built if not cached). */
  image?: 'current' | 'rebuild';
  /**
   * Checks the cluster after each node, e.g. verify's suites (`verifyReplaced` in
   * src/verify/verify.ts; verification sits above provisioning, so the caller hands it in).
   * Throws to fail the step; returns what passed, for the step's line.
   */
  verify?: (record: ClusterRecord, node: string) => Promise<string>;
  progress?: (ev: ReplaceEvent) => void;
  /** Deadline for each wait on the new node (boot, etcd, agent); default 10 min. */
  timeoutMs?: number;
  /** How each new VM starts (local: snapshot or fresh); default: how the cluster's nodes started. */
  boot?: BootMode;
  /** How long the drain may take; default 3 min. */
  drainTimeoutMs?: number;
}

export interface NodeReplacement {
  node: string;
  seconds: number;
  steps: Array<{ step: ReplaceStep; seconds: number }>;
  oldMemberId?: string;
  newMemberId?: string;
  oldMachineId?: string;
  newMachineId?: string;
  /** Units that ran on the node and were active elsewhere before it went. */
  movedUnits: string[];
  image: string;
  /** The pinned host key is reused (secrets.json): the node keeps its identity. */
  hostKey: 'kept';
}

export interface ReplaceResult {
  record: ClusterRecord;
  order: string[];
  replaced: NodeReplacement[];
  sentinelKey: string;
}

/** What the record keeps about replacements (beside ClusterRecord's own fields in cluster.json). */
export interface ReplacementHistory {
  replacements?: Array<{ node: string; finishedAt: string; seconds: number; image: string; memberId?: string; machineId?: string }>;
  /** Set while a node is out of the cluster; cleared when it is back. */
  replacing?: { node: string; since: string; step: ReplaceStep };
}

type ReplaceRecord = ClusterRecord & ReplacementHistory;

/** `spec` as `up` would have run it on this cluster: the cluster's own SSH key added, TCG's raises applied (tcg.ts). */
export function adoptSpec(spec: ResolvedSpec, record: ClusterRecord, accel: Accelerator): ResolvedSpec {
  const clusterKey = clientPublicKey(record);
  const s: ResolvedSpec = { ...spec, ssh: { ...spec.ssh, authorizedKeys: [...new Set([...spec.ssh.authorizedKeys, clusterKey])] } };
  return accel === 'tcg' ? tuneForEmulation(s).spec : s;
}

/** A replacement that stopped: which node is out, what state it was left in, how to go on. */
function stoppedError(record: ClusterRecord, node: string, step: ReplaceStep, out: boolean, cause: unknown, extra = ''): FlotillaError {
  const others = record.nodes.filter((n) => n.name !== node).map((n) => n.name);
  const state = out
    ? `${node} is OUT of the cluster (its old VM and etcd member are gone; the rest of the cluster, ${others.join(', ')}, keeps quorum without it)`
    : `${node} is unchanged and in service`;
  const message = `replace ${node}: failed at step ${step}: ${(cause as Error).message}\n${state}.${extra}\nResume with: flotilla replace --name ${record.name} --nodes ${node}`;
  return new FlotillaError(FlotillaError.is(cause) ? cause.code : 'external', message, [], { cause });
}

async function drainView(registry: Registry): Promise<DrainView> {
  const snap = await registry.snapshot();
  const launched = new Map<string, { global: boolean; machineId?: string }>();
  for (const job of snap.jobs.filter((j) => j.desiredState === 'launched')) {
    const text = await registry.getBody(job.hash);
    if (text === undefined) continue;
    try {
      const o = checkUnitText(job.name, text).options;
      launched.set(job.name, { global: o.global, ...(o.machineId !== undefined ? { machineId: o.machineId } : {}) });
    } catch {
      /* a unit the scheduler cannot place is not ours to wait for */
    }
  }
  return { schedule: snap.schedule, states: snap.states, launched };
}

/** Replaces the cluster's nodes one at a time on `machinery`'s platform. */
export async function replaceNodes(opts: ReplaceOptions, machinery: NodeMachinery): Promise<ReplaceResult> {
  const progress = opts.progress ?? (() => undefined);
  const timeoutMs = opts.timeoutMs ?? 10 * 60_000;
  const drainTimeoutMs = opts.drainTimeoutMs ?? 3 * 60_000;
  const record = readRecord(opts.name) as ReplaceRecord | undefined;
  if (!record) throw new FlotillaError('not-found', `no cluster named ${opts.name} (see 'flotilla ls')`);
  if (record.platform !== machinery.platform) throw new FlotillaError('conflict', `cluster ${opts.name} runs on ${record.platform}; this replacement is for ${machinery.platform}`);

  const saved = readSavedSpec(opts.name);
  if (!saved && !opts.spec) throw new FlotillaError('usage', `cluster ${opts.name} has no saved spec (made by an older flotilla up); pass --spec FILE with the spec it was made from`);
  const names = opts.nodes ?? record.nodes.map((n) => n.name);
  const unknown = names.filter((n) => !record.nodes.some((x) => x.name === n));
  if (unknown.length) throw new FlotillaError('not-found', `nodes: cluster ${opts.name} has no node ${unknown.join(', ')} (nodes: ${record.nodes.map((n) => n.name).join(', ')})`, [{ path: 'nodes', message: `unknown node ${unknown.join(', ')}` }]);
  if (new Set(names).size !== names.length) throw new FlotillaError('usage', 'nodes: a node is named twice', [{ path: 'nodes', message: 'duplicate' }]);
  if (names.length === 0) throw new FlotillaError('usage', 'nodes: no node to replace');

  // Checked before anything is built or touched.
  const given = opts.spec ? (opts.spec.name === opts.name ? opts.spec : { ...opts.spec, name: opts.name }) : undefined;
  if (saved && given) throwIfProblems(specChangeProblems(saved, given), `--spec cannot replace nodes of cluster ${opts.name}`);
  throwIfProblems(recordMismatchProblems(record.nodes, given ?? saved!), `the spec does not describe cluster ${opts.name}'s nodes`);

  // The image first: a build can take minutes and must not happen with a node out.
  const t0 = performance.now();
  let rebuilt: ImageInfo | undefined;
  if (opts.image === 'rebuild') {
    progress({ step: 'image', state: 'start' });
    rebuilt = await ensureImage({}, (b) => b.phase === 'done' && progress({ step: 'image', state: 'info', ...(b.seconds !== undefined ? { seconds: b.seconds } : {}), detail: `${b.step}${b.detail ? ` ${b.detail}` : ''}` }));
    progress({ step: 'image', state: 'done', seconds: (performance.now() - t0) / 1000, detail: rebuilt.id.slice(0, 12) });
  }
  const images = new Map<string, ImageInfo>();
  for (const n of names) {
    const node = record.nodes.find((x) => x.name === n)!;
    const img = rebuilt ?? machinery.currentImage(record, node);
    if (!img) throw new FlotillaError('not-found', `node ${n}: the image its VM was booted from is no longer cached; pass --image rebuild to boot it from the current image`);
    images.set(n, img);
  }
  const accel = (await probeAccelerator(images.values().next().value!)).accel;
  const spec = given ? adoptSpec(given, record, accel) : saved!;
  const files = clusterFiles(opts.name);
  const secrets = ensureSecrets(spec, readSecrets(files.secrets));
  const pki = record.tls ? readPki(files.pki) : undefined;
  if (record.tls && !pki) throw new FlotillaError('not-found', `cluster ${opts.name}: pki.json is missing; the replaced nodes could not get their certificates`);

  // Plan: the order is fixed now from the leader now; each node's own check runs again right before it.
  const first = await connectAnchor(record, '');
  let order: string[];
  const sentinelKey = `${record.keyPrefix}replace/sentinel-${randomBytes(4).toString('hex')}`;
  const sentinelValue = `written-before-replacing-${names.join('-')}-${new Date().toISOString()}`;
  try {
    const view = await etcdView(record, first.conn);
    const leader = view.members.find((m) => m.id === view.leaderId)?.name;
    order = replacementOrder(names.map((n) => ({ name: n, etcdMember: record.nodes.find((x) => x.name === n)!.etcdMember })), leader);
    progress({ step: 'plan', state: 'info', detail: `order ${order.join(' -> ')} (workers, then followers, the etcd leader${leader ? ` ${leader}` : ''} last); ${view.members.length} members, ${view.healthyIds.size} healthy` });
    await must(etcdctl(first.conn, record, `put ${sentinelKey} ${sentinelValue}`), 'writing the sentinel key');
    progress({ step: 'sentinel', state: 'info', detail: `wrote ${sentinelKey}; it must read back after each node` });
  } finally {
    await first.conn.close();
  }

  const replaced: NodeReplacement[] = [];
  try {
    for (const name of order) {
      replaced.push(await replaceOne({ record, name, spec, secrets, pki, image: images.get(name)!, accel, machinery, progress, timeoutMs, ...(opts.boot ? { boot: opts.boot } : {}), drainTimeoutMs, sentinelKey, sentinelValue, ...(opts.verify ? { verify: opts.verify } : {}) }));
      // The saved spec is what the next replacement (or a resumed one) renders from.
      writeSavedSpec(opts.name, spec);
    }
  } finally {
    // Best effort, also after a failure: a resumed run writes its own key.
    await connectAnchor(record, '')
      .then(async (last) => {
        try {
          await etcdctl(last.conn, record, `del ${sentinelKey}`);
        } finally {
          await last.conn.close();
        }
      })
      .catch(() => undefined);
  }
  return { record, order, replaced, sentinelKey };
}

interface OneContext {
  record: ReplaceRecord;
  name: string;
  spec: ResolvedSpec;
  secrets: ReturnType<typeof ensureSecrets>;
  pki: ReturnType<typeof readPki>;
  image: ImageInfo;
  accel: Accelerator;
  boot?: BootMode;
  machinery: NodeMachinery;
  progress: (ev: ReplaceEvent) => void;
  timeoutMs: number;
  drainTimeoutMs: number;
  sentinelKey: string;
  sentinelValue: string;
  verify?: (record: ClusterRecord, node: string) => Promise<string>;
}

async function replaceOne(c: OneContext): Promise<NodeReplacement> {
  const { record, name, progress } = c;
  const node = record.nodes.find((n) => n.name === name)!;
  const steps: NodeReplacement['steps'] = [];
  const tNode = performance.now();
  let current: ReplaceStep = 'check';
  let out = false;
  let agentStopped = false;
  let newConn: NodeConnection | undefined;
  const step = async <T>(s: ReplaceStep, fn: () => Promise<T>, detail?: (r: T) => string | undefined): Promise<T> => {
    current = s;
    if (out) {
      record.replacing = { node: name, since: record.replacing?.since ?? new Date().toISOString(), step: s };
      writeRecord(record);
    }
    progress({ node: name, step: s, state: 'start' });
    const t = performance.now();
    const r = await fn();
    const seconds = (performance.now() - t) / 1000;
    steps.push({ step: s, seconds });
    const d = detail?.(r);
    progress({ node: name, step: s, state: 'done', seconds, ...(d ? { detail: d } : {}) });
    return r;
  };
  const result: NodeReplacement = { node: name, seconds: 0, steps, movedUnits: [], image: c.image.id, hostKey: 'kept' };
  const anchor = await connectAnchor(record, name).catch((err: unknown) => {
    throw stoppedError(record, name, 'check', false, err);
  });
  const peerUrl = etcdPeerUrl(c.spec, node);
  let action: MemberAction | undefined;
  try {
    // 1. check
    const view0 = await step('check', async () => {
      const view = await etcdView(record, anchor.conn);
      const voters = view.members.filter((m) => !m.learner);
      if (node.etcdMember) {
        const decision = memberAction({ node: name, peerUrl, members: view.members, healthyIds: view.healthyIds });
        if ('refused' in decision) throw new FlotillaError('conflict', decision.refused);
        action = decision.action;
      } else if (view.healthyIds.size < quorum(voters.length)) {
        throw new FlotillaError('conflict', `etcd has no quorum (${view.healthyIds.size} of ${voters.length} members healthy); fix it before replacing nodes`);
      }
      return view;
    }, (v) => `${v.members.length} members, ${v.healthyIds.size} healthy${action ? `; ${action.kind === 'remove-then-add' ? `member ${action.member.id} will be removed and re-added` : action.kind === 'add' ? 'no member yet: it will be added' : `member ${action.member.id} was added already: the node joins it`}` : ''}`);
    if (action?.kind === 'remove-then-add') result.oldMemberId = action.member.id;

    // 2. drain
    const conn = await connectRegistry(record, anchor.conn);
    try {
      await step('drain', async () => {
        const machines = await conn.registry.listMachines();
        const machine = machines.find((m) => m.address === node.address);
        if (!machine) return 'its agent is not registered: nothing to drain';
        result.oldMachineId = machine.id;
        const toMove = unitsToMove(await drainView(conn.registry), machine.id);
        let stopNote = '';
        try {
          const target = connectNode(record, node);
          try {
            // The path unit too: it would start the agent again while pki/ready exists.
            agentStopped = true;
            await must(target.exec('systemctl stop flotilla-fleetd.path flotilla-fleetd.service', { sudo: true, timeoutMs: 90_000 }), 'stopping the agent');
          } finally {
            await target.close();
          }
        } catch (err) {
          stopNote = `; its agent could not be stopped (${(err as Error).message}): waiting for its lease to expire`;
        }
        const deadline = Date.now() + c.drainTimeoutMs;
        for (;;) {
          const [view, still] = await Promise.all([drainView(conn.registry), conn.registry.listMachines()]);
          const pending = unitsNotMoved(view, toMove, machine.id);
          const gone = !still.some((m) => m.id === machine.id);
          if (pending.length === 0 && gone) break;
          if (Date.now() > deadline) {
            throw new FlotillaError(
              'timeout',
              `drain did not finish within ${Math.round(c.drainTimeoutMs / 1000)} s: ${pending.length ? `${pending.join(', ')} not active on another machine (no other machine may satisfy their [X-Fleet] constraints)` : 'its machine is still registered'}`,
            );
          }
          await sleep(1000);
        }
        result.movedUnits = toMove;
        return `agent stopped, machine ${machine.id.slice(0, 8)} gone${toMove.length ? `, ${toMove.join(', ')} active elsewhere` : ', no movable unit ran there'}${stopNote}`;
      }, (d) => d);
    } finally {
      await conn.close();
    }

    // 3. leader, remove, destroy
    if (action?.kind === 'remove-then-add') {
      const member = action.member;
      await step('leader', async () => {
        // An unknown leader (a status that did not parse, an election under way) is asked again, never guessed.
        let view = await etcdView(record, anchor.conn);
        for (let i = 0; view.leaderId === undefined && i < 20; i++) {
          await sleep(3000);
          view = await etcdView(record, anchor.conn);
        }
        if (view.leaderId === undefined) throw new FlotillaError('external', 'etcd reports no leader; cannot tell whether leadership must move first');
        if (view.leaderId !== member.id) return `${name} does not lead (leader ${view.members.find((m) => m.id === view.leaderId)?.name ?? 'unknown'})`;
        const to = leaderSuccessor(view.statuses, view.members, member.id, view.healthyIds);
        if (!to) throw new FlotillaError('conflict', `${name} leads and no healthy follower can take over`);
        // move-leader must reach the current leader: address it by its client URL from the anchor.
        await must(etcdctl(anchor.conn, record, `move-leader ${to.id}`, { endpoints: [member.clientUrls[0] ?? clientUrl(record, node)], timeoutMs: 90_000 }), 'etcdctl move-leader');
        return `leadership moved to ${to.name} (${to.id})`;
      }, (d) => d);
      await step('remove', async () => {
        await membershipChange(record, anchor.conn, `member remove ${member.id}`);
        out = true;
        return `member ${member.id} removed; ${view0.members.length - 1} members left`;
      }, (d) => d);
    }
    out = true;
    await step('destroy', async () => {
      const r = await c.machinery.destroy(record, node);
      return r.stopped ? 'VM stopped, disk and first-boot media deleted' : 'VM was not running; disk and first-boot media deleted';
    }, (d) => d);

    // 4. render, add, boot
    let join: EtcdJoin | undefined;
    if (node.etcdMember) {
      await step('add', async () => {
        let members = (await etcdView(record, anchor.conn)).members;
        const mine = members.find((m) => m.peerUrls.includes(peerUrl));
        if (!mine) {
          await membershipChange(record, anchor.conn, `member add ${name} --peer-urls=${peerUrl}`);
          members = (await etcdView(record, anchor.conn)).members;
        }
        const added = members.find((m) => m.peerUrls.includes(peerUrl));
        if (!added) throw new FlotillaError('external', `etcd does not list a member with ${peerUrl} after member add`);
        result.newMemberId = added.id;
        join = { state: 'existing', members: joinMembership(members, name, peerUrl) };
        return `member ${added.id} ${mine ? 'was added already' : 'added'} (unstarted); initial cluster ${join.members.map((m) => m.name).join(',')}`;
      }, (d) => d);
    }
    const rendered = await step('render', async () => {
      const n = c.spec.nodes.find((x) => x.name === name)!;
      return renderNode(c.spec, { ...n, ...(join ? { etcdJoin: join } : {}) }, c.secrets, record.format);
    }, (r) => `${r.format}, ${Buffer.byteLength(r.userData)} bytes${join ? ', etcd initial-cluster-state existing' : ''}`);
    const launched = await step('boot', async () => {
      const l = await c.machinery.launch({
        record,
        node,
        spec: c.spec,
        rendered,
        image: c.image,
        accel: c.accel,
        ...(c.boot ? { boot: c.boot } : {}),
        info: (detail) => progress({ node: name, step: 'boot', state: 'info', detail }),
      });
      record.accelerator = c.accel;
      record.timeline[name] = { launch: 0 };
      const since = () => Math.round(((Date.now() - l.launchedAt) / 1000) * 10) / 10;
      const mark = (p: Phase) => {
        record.timeline[name]![p] = since();
        progress({ node: name, step: 'boot', state: 'info', seconds: since(), detail: `${p}` });
      };
      // The same bring-up as up's: a failed first boot (Ignition, cloud-init) ends every wait.
      const b: BootingNode = { record, node: { ...node, consoleLog: l.consoleLog }, deadline: l.launchedAt + c.timeoutMs, boot: new FirstBootWatch([{ name, consoleLog: l.consoleLog, launchedAt: l.launchedAt }]), running: () => nodeRunning({ ...node, pidFile: l.pidFile }) };
      await waitKernel(b);
      mark('kernel');
      newConn = await waitSsh(b);
      mark('ssh');
      await waitFirstBoot(b, newConn);
      mark('first-boot');
      return l;
    }, () => `VM up: SSH at ${record.timeline[name]!.ssh} s, first boot done at ${record.timeline[name]!['first-boot']} s after launch`);
    node.pidFile = launched.pidFile;
    node.consoleLog = launched.consoleLog;
    const sinceLaunch = () => Math.round(((Date.now() - launched.launchedAt) / 1000) * 10) / 10;

    // 5. secrets, etcd, agent
    await step('secrets', async () => {
      await deliverSecrets({ node }, newConn!, c.pki);
      await newConn!.close();
      record.timeline[name]!.secrets = sinceLaunch();
      return c.pki ? 'the same certificates (same name and address) over the pinned SSH connection' : 'no TLS: start signal only';
    }, (d) => d);
    if (node.etcdMember) {
      await step('etcd', async () => {
        const deadline = Date.now() + c.timeoutMs;
        let last = '';
        for (;;) {
          const view = await etcdView(record, anchor.conn).catch((err: unknown) => {
            last = (err as Error).message;
            return undefined;
          });
          if (view) {
            const mine = view.members.find((m) => m.peerUrls.includes(peerUrl));
            const all = view.members.every((m) => m.started && view.healthyIds.has(m.id));
            if (mine && mine.started && mine.name === name && all) {
              result.newMemberId = mine.id;
              break;
            }
            last = `${view.members.filter((m) => m.started).length}/${view.members.length} members started, ${view.healthyIds.size} healthy`;
          }
          if (Date.now() > deadline) throw new FlotillaError('timeout', `etcd on ${name} did not join: ${last}; see 'flotilla ssh --name ${record.name} ${name} -- journalctl -u flotilla-etcd'`);
          await sleep(1000);
        }
        record.timeline[name]!.etcd = sinceLaunch();
        return `member ${result.newMemberId} started; every member healthy`;
      }, (d) => d);
    }
    await step('agent', async () => {
      const conn2 = await connectRegistry(record, anchor.conn);
      try {
        const deadline = Date.now() + c.timeoutMs;
        for (;;) {
          const here = (await conn2.registry.listMachines()).filter((x) => x.address === node.address);
          // The old machine was gone before the VM was destroyed (drain), so this is the new VM
          // wearing the old identity: waiting would never see a new one.
          if (result.oldMachineId && here.some((x) => x.id === result.oldMachineId)) {
            throw new FlotillaError('external', `${name}'s new VM registered under its old machine ID ${result.oldMachineId.slice(0, 8)}: its /etc/machine-id was not new (the platform gave the VM its old identity), and the scheduler would take it for the old machine`);
          }
          const m = here.find((x) => x.id !== result.oldMachineId);
          if (m) {
            result.newMachineId = m.id;
            node.machineId = m.id;
            node.metadata = c.spec.nodes.find((x) => x.name === name)!.metadata;
            break;
          }
          if (Date.now() > deadline) throw new FlotillaError('timeout', `the agent on ${name} never registered; see 'flotilla ssh --name ${record.name} ${name} -- journalctl -u flotilla-fleetd'`);
          await sleep(500);
        }
      } finally {
        await conn2.close();
      }
      record.timeline[name]!.agents = sinceLaunch();
      const pid = nodePid(node);
      record.cpuSeconds[name] = Math.round(((pid !== undefined ? cpuSeconds(pid) : undefined) ?? 0) * 10) / 10;
      return `machine ${result.newMachineId!.slice(0, 8)} registered`;
    }, (d) => d);
    out = false;
    delete record.replacing;
    writeRecord(record);

    // 6. verify
    await step('verify', async () => {
      const member = node.etcdMember ? [clientUrl(record, node)] : undefined;
      // Linearizable through the anchor, then from the new member's own copy (serializable).
      const lin = (await must(etcdctl(anchor.conn, record, `get ${c.sentinelKey} --print-value-only`), 'reading the sentinel key')).trim();
      if (lin !== c.sentinelValue) throw new FlotillaError('external', `the key written before the replacement reads ${JSON.stringify(lin)}, not ${JSON.stringify(c.sentinelValue)}`);
      if (member) {
        const local = (await must(etcdctl(anchor.conn, record, `get ${c.sentinelKey} --print-value-only --consistency=s`, { endpoints: member }), `reading the sentinel key from ${name}'s member`)).trim();
        if (local !== c.sentinelValue) throw new FlotillaError('external', `${name}'s new member holds ${JSON.stringify(local)} for the sentinel key, not the value written before`);
      }
      const view = await etcdView(record, anchor.conn);
      const sick = view.members.filter((m) => !view.healthyIds.has(m.id));
      if (sick.length) throw new FlotillaError('external', `etcd members not healthy after the replacement: ${sick.map((m) => m.name || m.id).join(', ')}`);
      const suites = c.verify ? `; ${await c.verify(record, name)}` : '';
      return `sentinel key read back${member ? ` (also from ${name}'s own member)` : ''}; ${view.members.length} members healthy${suites}`;
    }, (d) => d);
  } catch (err) {
    if (out) writeRecord(record);
    // Still in the cluster but drained: put its agent back so it takes units again.
    const restored = !out && agentStopped ? ` ${await restoreAgent(record, node)}.` : '';
    throw stoppedError(record, name, current, out, err, restored);
  } finally {
    await newConn?.close();
    await anchor.conn.close();
  }
  result.seconds = (performance.now() - tNode) / 1000;
  (record.replacements ??= []).push({ node: name, finishedAt: new Date().toISOString(), seconds: Math.round(result.seconds * 10) / 10, image: c.image.id, ...(result.newMemberId ? { memberId: result.newMemberId } : {}), ...(result.newMachineId ? { machineId: result.newMachineId } : {}) });
  writeRecord(record);
  return result;
}

/** Starts the node's agent again after a drain that could not finish; says what happened. */
async function restoreAgent(record: ClusterRecord, node: NodeRecord): Promise<string> {
  try {
    const conn = connectNode(record, node);
    try {
      await must(conn.exec('systemctl start flotilla-fleetd.path flotilla-fleetd.service', { sudo: true, timeoutMs: 90_000 }), 'starting the agent');
    } finally {
      await conn.close();
    }
    return `${node.name}'s agent was started again`;
  } catch (err) {
    return `starting ${node.name}'s agent again failed too (${(err as Error).message}): run 'flotilla ssh --name ${record.name} ${node.name} -- sudo systemctl start flotilla-fleetd.path flotilla-fleetd.service'`;
  }
}
