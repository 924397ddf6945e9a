/**
 * Boot timeline of local QEMU nodes from Flotilla's rendered first-boot configs: one VM alone,
 * then three at once, in the same run. For each node, seconds from QEMU's launch to
 *   ssh     SSH answers with the pinned host key and runs a command,
 *   done    cloud-init finished (boot-finished and result.json exist; `cloud-init status` is
 *           checked afterwards) or, for Ignition, the first-boot unit finished,
 * and the QEMU process's CPU seconds at that point. With 3 nodes, also whether node 1 reaches
 * the others over the cluster network.
 *
 * Run: node --import tsx bench/boot.ts [--runs 1,3] [--format cloud-config|ignition] [--cpus N] [--analyze]
 */
import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { utils } from 'ssh2';
import { loadSpecObject } from '../src/config/load';
import { renderCluster } from '../src/config/render';
import { ensureSecrets } from '../src/config/secrets';
import type { ConfigFormat } from '../src/config/spec';
import { probeAccelerator } from '../src/provision/local/accel';
import { consoleMarkers, destroyCluster, nodeCpuSeconds, localNodeTarget, startCluster, waitNodeSsh, type LocalCluster, type LocalNode, type LoginKey } from '../src/provision/local/cluster';
import { ensureImage } from '../src/provision/image';
import { NodeConnection } from '../src/ssh';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1,3' },
    format: { type: 'string', default: 'cloud-config' },
    cpus: { type: 'string' },
    memory: { type: 'string' },
    analyze: { type: 'boolean', default: false },
    append: { type: 'string' },
    keep: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});

const sizes = values.runs!.split(',').map(Number);
const format = values.format as ConfigFormat;
const TIMEOUT_MS = 10 * 60_000;

function fmt(n: number | undefined, digits = 1): string {
  return n === undefined ? '-' : n.toFixed(digits);
}

interface NodeResult {
  node: string;
  ssh: number;
  done: number;
  cpuAtSsh?: number;
  cpuAtDone?: number;
  status: string;
  analyze?: string;
  ping?: string;
  markers: string;
}

/** Waits in the guest (one SSH session, no repeated handshakes) for first-boot configuration to finish. */
async function waitDone(cluster: LocalCluster, node: LocalNode, auth: LoginKey): Promise<{ done: number; cpu?: number; status: string; analyze?: string }> {
  const client = new NodeConnection(localNodeTarget(cluster, node, auth));
  try {
    const flag = format === 'ignition' ? '/var/lib/flotilla/ignition.done' : '/var/lib/cloud/instance/boot-finished /run/cloud-init/result.json';
    const wait = await client.exec(`for f in ${flag}; do while [ ! -e $f ]; do sleep 0.2; done; done`, { timeoutMs: TIMEOUT_MS });
    const done = (Date.now() - node.launchedAt) / 1000;
    const cpu = nodeCpuSeconds(node);
    if (wait.code !== 0) throw new Error(`${node.name}: waiting for ${flag} failed: ${wait.stderr}`);
    let status = 'ignition applied';
    if (format === 'cloud-config') {
      const st = await client.exec('cloud-init status --long', { timeoutMs: 120_000 });
      status = st.stdout.trim().split('\n').find((l) => l.startsWith('status:')) ?? st.stdout.trim();
      if (!/status: done/.test(status)) status += ` (exit ${st.code}) ${st.stdout.trim().replace(/\n/g, ' | ')}`;
    }
    let analyze: string | undefined;
    if (values.analyze) {
      const a = await client.exec([
          'systemd-analyze time',
          // Guest CPU: total, PID 1 (with generators), services; then the costliest services.
          `echo "guest cpu (s): total $(awk '/^cpu /{printf "%.1f", ($2+$3+$4+$7+$8)/100}' /proc/stat), pid1 $(awk '/usage_usec/{printf "%.1f", $2/1e6}' /sys/fs/cgroup/init.scope/cpu.stat), services $(awk '/usage_usec/{printf "%.1f", $2/1e6}' /sys/fs/cgroup/system.slice/cpu.stat)"`,
          `for u in $(systemctl list-units --all --no-legend --plain --type=service | awk '{print $1}'); do v=$(systemctl show -p CPUUsageNSec --value "$u"); case "$v" in ''|*'not set'*) ;; *) echo "$((v/1000000)) ms $u";; esac; done | sort -rn | head -n 12`,
          'systemd-analyze critical-chain --no-pager | tail -n +3 | head -n 12',
        ].join('; '),
        { timeoutMs: 120_000 },
      );
      analyze = a.stdout;
    }
    return { done, ...(cpu !== undefined ? { cpu } : {}), status, ...(analyze ? { analyze } : {}) };
  } finally {
    await client.close();
  }
}

async function run(n: number, auth: LoginKey, publicKey: string): Promise<void> {
  const name = `bench${n}`;
  const spec = loadSpecObject({
    name,
    format,
    nodes: Array.from({ length: n }, (_, i) => ({ name: `node${i + 1}` })),
    ssh: { authorizedKeys: [publicKey] },
  });
  const secrets = ensureSecrets(spec);
  const rendered = renderCluster(spec, secrets);
  const image = await ensureImage({}, (p) => p.phase !== 'start' && console.log(`  image: ${p.step} ${p.phase}${p.seconds !== undefined ? ` ${p.seconds}s` : ''}${p.detail ? ` ${p.detail}` : ''}`));
  const accel = await probeAccelerator(image);
  console.log(`\n== ${n} VM${n > 1 ? 's' : ''} at once (${format}, accel ${accel.accel}: ${accel.reason}${accel.cached ? ', cached' : ''})`);
  await destroyCluster(name);
  const t0 = performance.now();
  const cluster = await startCluster({
    spec,
    rendered,
    image,
    accel: accel.accel,
    ...(values.cpus ? { cpus: Number(values.cpus) } : {}),
    ...(values.memory ? { memoryMiB: Number(values.memory) } : {}),
    ...(values.append ? { extraCmdline: values.append.split(' ') } : {}),
  });
  console.log(`  launched ${n} QEMU process${n > 1 ? 'es' : ''} in ${((performance.now() - t0) / 1000).toFixed(2)} s (overlays, seeds, namespace ${cluster.netns})`);
  try {
    const results = await Promise.all(
      cluster.nodes.map(async (node): Promise<NodeResult> => {
        const ssh = await waitNodeSsh(cluster, node, auth, TIMEOUT_MS, values.verbose ? (n, e) => console.log(`  ${node.name} ssh attempt ${n} failed at ${((Date.now() - node.launchedAt) / 1000).toFixed(1)} s: ${e}`) : undefined);
        const cpuAtSsh = nodeCpuSeconds(node);
        const d = await waitDone(cluster, node, auth);
        const m = consoleMarkers(node.consoleLog);
        const markers = `guest uptime at console markers: ssh ${fmt(m.ssh)} s, first-boot ${fmt(m['first-boot'])} s`;
        return { node: node.name, markers, ssh, done: d.done, ...(cpuAtSsh !== undefined ? { cpuAtSsh } : {}), ...(d.cpu !== undefined ? { cpuAtDone: d.cpu } : {}), status: d.status, ...(d.analyze ? { analyze: d.analyze } : {}) };
      }),
    );
    if (n > 1) {
      const first = cluster.nodes[0]!;
      const client = new NodeConnection(localNodeTarget(cluster, first, auth));
      try {
        for (const other of cluster.nodes.slice(1)) {
          const t = performance.now();
          const p = await client.exec(`ping -c1 -W5 ${other.address}`, { timeoutMs: 30_000 });
          const ms = /time=([\d.]+) ms/.exec(p.stdout)?.[1];
          results[0]!.ping = `${results[0]!.ping ? `${results[0]!.ping}, ` : ''}${other.address} ${p.code === 0 ? `ok ${ms} ms` : `FAILED (exit ${p.code}: ${(p.stderr + p.stdout).trim().slice(0, 200)})`} (${((performance.now() - t) / 1000).toFixed(1)} s)`;
        }
      } finally {
        await client.close();
      }
    }
    const all = ((performance.now() - t0) / 1000).toFixed(1);
    console.log('  node     ssh(s)  done(s)  cpu@ssh  cpu@done  status');
    for (const r of results) console.log(`  ${r.node.padEnd(8)} ${fmt(r.ssh).padStart(6)}  ${fmt(r.done).padStart(7)}  ${fmt(r.cpuAtSsh).padStart(7)}  ${fmt(r.cpuAtDone).padStart(8)}  ${r.status}`);
    console.log(`  all done ${all} s after launch; max ssh ${fmt(Math.max(...results.map((r) => r.ssh)))} s, max done ${fmt(Math.max(...results.map((r) => r.done)))} s`);
    for (const r of results) console.log(`  ${r.node}: ${r.markers}`);
    for (const r of results) if (r.ping) console.log(`  ${r.node} -> cluster network: ${r.ping}`);
    for (const r of results) if (r.analyze) console.log(`  --- ${r.node}\n${r.analyze.replace(/^/gm, '    ')}`);
  } finally {
    if (!values.keep) {
      const stopped = await destroyCluster(name);
      console.log(`  stopped ${stopped.length} VM(s), namespace and files removed`);
    }
  }
}

async function main(): Promise<void> {
  const key = utils.generateKeyPairSync('ed25519', { comment: 'bench@flotilla' });
  const auth: LoginKey = { user: 'core', privateKey: key.private };
  console.log(`host: ${fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm)?.length ?? '?'} CPUs, load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  for (const n of sizes) await run(n, auth, key.public.trim());
}

main().catch((err) => {
  console.error(`bench/boot: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
});
