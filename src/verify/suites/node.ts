/**
 * The `node` suite, per node over its SSH connection: first boot finished without errors
 * (cloud-init, or Ignition), the hostname, the files Flotilla puts there with their modes
 * (src/config/node-files.ts and the PKI delivered after boot), no failed systemd units,
 * and the agent (and, on etcd members, etcd) running.
 */
import { PATHS, nodeFiles } from '../../config/node-files';
import type { ResolvedSpec } from '../../config/spec';
import { nodePkiFiles } from '../../cluster/pki';
import type { VerifyCluster } from '../cluster';
import type { Inventory, InventoryNode } from '../../cluster/inventory';
import { shq } from '../../ssh';
import { CheckFailed, CheckSkipped, expect, type Check, type CheckContext } from '../types';

export interface ExpectedFile {
  path: string;
  mode: number;
}

/**
 * Whether the cluster's etcd speaks TLS: the spec says so when there is one; otherwise the
 * inventory (TLS files for the host or the nodes, or an https endpoint).
 */
export function clusterUsesTls(inventory: Inventory, spec: ResolvedSpec | undefined): boolean {
  if (spec) return spec.etcd.tls;
  const e = inventory.etcd;
  return Boolean(e.tls || e.nodeTls) || e.endpoints.some((u) => u.startsWith('https:')) || inventory.nodes.some((n) => n.etcdEndpoint.startsWith('https:'));
}

/** What a node should have on disk: from the spec when known, else Flotilla's fixed paths; the PKI when `tls` (clusterUsesTls). */
export function expectedNodeFiles(node: InventoryNode, spec: ResolvedSpec | undefined, tls: boolean): ExpectedFile[] {
  const specNode = spec?.nodes.find((n) => n.name === node.name);
  const out: ExpectedFile[] = [];
  if (spec && specNode) {
    const nf = nodeFiles(spec, specNode);
    for (const f of nf.files) out.push({ path: f.path, mode: f.mode });
    for (const u of nf.units) out.push({ path: `${PATHS.systemdDir}/${u.name}`, mode: 0o644 });
  } else {
    if (node.etcdMember) out.push({ path: PATHS.etcdEnv, mode: 0o644 });
    out.push({ path: PATHS.fleetdConfig, mode: 0o644 }, { path: PATHS.sshdDropin, mode: 0o644 });
    const units = [...(node.etcdMember ? ['flotilla-etcd.service', 'flotilla-etcd.path'] : []), 'flotilla-fleetd.service', 'flotilla-fleetd.path'];
    for (const u of units) out.push({ path: `${PATHS.systemdDir}/${u}`, mode: 0o644 });
  }
  // The PKI delivered over SSH after boot (paths and modes decided in src/cluster/pki.ts).
  if (tls) {
    const blank = { cert: '', key: '' };
    const pki = { ca: blank, client: blank, members: node.etcdMember ? { [node.name]: { server: blank, peer: blank } } : {} };
    for (const f of nodePkiFiles(pki, node.name)) out.push({ path: f.path, mode: f.mode });
    out.push({ path: PATHS.pkiReady, mode: -1 });
  }
  return out;
}

interface CloudInitStatus {
  status?: string;
  errors?: unknown[];
  detail?: string;
  datasource?: string;
  extended_status?: string;
}

const IGNITION_MARKERS = ['/var/lib/flotilla/ignition.done', '/etc/.ignition-result.json'];

interface CloudInitResult {
  v1?: { datasource?: string | null; errors?: unknown[] };
}

/**
 * One command: the Ignition markers, then cloud-init's own result file when it finished
 * (reading it costs nothing; `cloud-init status` starts Python, 10-25 s on an emulated
 * CPU), and the status CLI only while there is no result yet.
 */
const FIRST_BOOT_PROBE = [
  `for f in ${IGNITION_MARKERS.join(' ')}; do [ -e "$f" ] && echo "::ignition $f"; done`,
  'if [ -r /run/cloud-init/result.json ]; then echo "::result"; cat /run/cloud-init/result.json',
  'elif command -v cloud-init >/dev/null 2>&1; then echo "::status"; cloud-init status --format json',
  'else echo "::no-cloud-init"; fi',
].join('\n');

/**
 * Judges the first-boot probe's output: a pass message, or the Ignition markers found when
 * the Ignition unit still has to be checked. Throws CheckFailed with the reason otherwise.
 */
export function judgeFirstBootProbe(r: { code: number | null; stdout: string; stderr: string }, format: ResolvedSpec['format'] | undefined): { pass: string } | { ignition: string[] } {
  const lines = r.stdout.split('\n');
  const ignition = lines.filter((l) => l.startsWith('::ignition ')).map((l) => l.slice('::ignition '.length));
  const kindAt = lines.findIndex((l) => l === '::result' || l === '::status' || l === '::no-cloud-init');
  const kind = kindAt >= 0 ? lines[kindAt] : undefined;
  const body = lines.slice(kindAt + 1).join('\n');
  if (format !== 'ignition') {
    if (kind === '::result') {
      let res: CloudInitResult;
      try {
        res = JSON.parse(body) as CloudInitResult;
      } catch {
        throw new CheckFailed(`/run/cloud-init/result.json is not JSON: ${body.slice(0, 200)}`);
      }
      const errors = Array.isArray(res.v1?.errors) ? res.v1.errors.map((e) => (typeof e === 'string' ? e : JSON.stringify(e))) : [];
      if (errors.length) throw new CheckFailed(`cloud-init finished with errors: ${errors.join('; ')}`);
      if (res.v1?.datasource) return { pass: `cloud-init done (datasource ${res.v1.datasource})` };
      // No datasource: cloud-init ran without configuring this machine (an Ignition node?).
      if (ignition.length === 0) throw new CheckFailed('cloud-init finished without a datasource and there is no Ignition result');
    } else if (kind === '::status') {
      let st: CloudInitStatus;
      try {
        st = JSON.parse(body) as CloudInitStatus;
      } catch {
        throw new CheckFailed(`cloud-init status did not answer JSON (exit ${r.code}): ${(r.stderr || body).trim().slice(0, 300)}`);
      }
      const errors = Array.isArray(st.errors) ? st.errors.map(String) : [];
      if (st.status === 'done' && errors.length === 0) return { pass: `cloud-init done${st.datasource ? ` (datasource ${st.datasource})` : ''}` };
      if (st.status === 'done' || st.status === 'error' || errors.length) throw new CheckFailed(`cloud-init finished with errors: ${errors.join('; ') || st.detail || st.status}`);
      if (st.status === 'running' || st.status === 'not started') throw new CheckFailed(`cloud-init is still ${st.status}`);
      // disabled / not run: an Ignition node, or nothing configured this machine.
      if (ignition.length === 0) throw new CheckFailed(`cloud-init status is "${st.status}" (${st.detail ?? 'no detail'}) and there is no Ignition result (${IGNITION_MARKERS.join(', ')})`);
    } else if (kind === '::no-cloud-init') {
      if (ignition.length === 0) throw new CheckFailed(`neither cloud-init nor an Ignition result (${IGNITION_MARKERS.join(', ')}) is on the node`);
    } else {
      throw new CheckFailed(`the first-boot probe printed nothing usable (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
    }
  }
  if (ignition.length === 0) throw new CheckFailed(`Ignition has not finished: none of ${IGNITION_MARKERS.join(', ')} exists`);
  return { ignition };
}

async function firstBoot(ctx: CheckContext, spec: ResolvedSpec | undefined): Promise<string> {
  const verdict = judgeFirstBootProbe(await ctx.exec(FIRST_BOOT_PROBE), spec?.format);
  if ('pass' in verdict) return verdict.pass;
  const unit = await ctx.exec('systemctl is-failed flotilla-ignition.service 2>/dev/null');
  expect(unit.stdout.trim() !== 'failed', 'flotilla-ignition.service failed: see journalctl -u flotilla-ignition.service');
  return `Ignition applied (${verdict.ignition.join(', ')})`;
}

async function files(ctx: CheckContext, expected: ExpectedFile[]): Promise<string> {
  // stat needs only search permission on the directories; /etc/flotilla/pki is root-only, hence sudo.
  const r = await ctx.exec(`stat -c '%a %n' -- ${expected.map((f) => shq(f.path)).join(' ')}`, { sudo: true });
  const seen = new Map<string, number>();
  for (const line of r.stdout.split('\n')) {
    const m = /^([0-7]{1,4}) (.+)$/.exec(line);
    if (m) seen.set(m[2]!, parseInt(m[1]!, 8));
  }
  const missing = expected.filter((f) => !seen.has(f.path)).map((f) => f.path);
  const wrong = expected.filter((f) => f.mode >= 0 && seen.has(f.path) && seen.get(f.path) !== f.mode).map((f) => `${f.path} is ${seen.get(f.path)!.toString(8).padStart(4, '0')}, want ${f.mode.toString(8).padStart(4, '0')}`);
  const problems = [...(missing.length ? [`missing: ${missing.join(', ')}`] : []), ...wrong];
  if (problems.length) throw new CheckFailed(`${problems.join('; ')}${r.code !== 0 && missing.length === 0 ? ` (${r.stderr.trim().slice(0, 200)})` : ''}`);
  return `${expected.length} files present with expected modes`;
}

async function failedUnits(ctx: CheckContext): Promise<string> {
  const r = await ctx.exec('systemctl --failed --no-legend --plain --no-pager');
  if (r.code !== 0) throw new CheckFailed(`systemctl --failed did not run (exit ${r.code}): ${r.stderr.trim().slice(0, 200) || 'no output'} (is systemd PID 1 here?)`);
  const units = r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((u): u is string => Boolean(u));
  const node = ctx.node!.name;
  if (units.length) throw new CheckFailed(`failed units: ${units.join(', ')}`, { failedUnits: units.map((unit) => ({ node, unit })) });
  return 'no failed units';
}

async function unitActive(ctx: CheckContext, unit: string): Promise<string> {
  const r = await ctx.exec(`systemctl is-active ${shq(unit)}`);
  const state = r.stdout.trim() || r.stderr.trim() || `exit ${r.code}`;
  if (state !== 'active') {
    const failed = state === 'failed' ? { failedUnits: [{ node: ctx.node!.name, unit }] } : undefined;
    throw new CheckFailed(`${unit} is ${state}`, failed);
  }
  return `${unit} active`;
}

export function nodeSuite(cluster: VerifyCluster): Check[] {
  const spec = cluster.spec;
  const tls = clusterUsesTls(cluster.inventory, spec);
  const checks: Check[] = [];
  for (const n of cluster.nodes) {
    const node = n.name;
    const base = { suite: 'node', node };
    checks.push(
      { ...base, id: 'node.first-boot', name: 'first boot finished without errors', retry: true, run: (ctx) => firstBoot(ctx, spec) },
      {
        ...base,
        id: 'node.hostname',
        name: 'hostname is the node name',
        run: async (ctx) => {
          const h = (await ctx.exec('hostname')).stdout.trim().split('.')[0];
          expect(h === n.name, `hostname is ${JSON.stringify(h)}, want ${JSON.stringify(n.name)}`);
          return `hostname ${h}`;
        },
      },
      { ...base, id: 'node.files', name: 'Flotilla files present with expected modes', run: (ctx) => files(ctx, expectedNodeFiles(n, spec, tls)) },
      { ...base, id: 'node.failed-units', name: 'no failed systemd units', retry: true, run: failedUnits },
      { ...base, id: 'node.agent', name: 'flotilla-fleetd active', retry: true, run: (ctx) => unitActive(ctx, 'flotilla-fleetd.service') },
    );
    if (n.etcdMember) checks.push({ ...base, id: 'node.etcd-service', name: 'flotilla-etcd active', retry: true, run: (ctx) => unitActive(ctx, 'flotilla-etcd.service') });
  }
  if (checks.length === 0) checks.push({ suite: 'node', id: 'node.none', name: 'nodes', run: async () => { throw new CheckSkipped('no nodes in the inventory'); } });
  return checks;
}
