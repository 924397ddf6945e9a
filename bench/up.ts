/**
 * `flotilla up` of 3 nodes with its phase timeline and, in the same run, one bare VM's
 * boot-to-SSH time (same image, same accelerator), so the two can be compared on one
 * noisy machine. Goal (issue 4): all checks green <= 60 s from launch under TCG.
 * Run: npx tsx bench/up.ts [--spec FILE]
 */
import { parseArgs } from 'node:util';
import { utils } from 'ssh2';
import { loadSpecFile, loadSpecObject } from '../src/config/load';
import { renderCluster } from '../src/config/render';
import { ensureSecrets } from '../src/config/secrets';
import { probeAccelerator } from '../src/provision/local/accel';
import { destroyCluster, startCluster, waitNodeSsh } from '../src/provision/local/cluster';
import { ensureImage } from '../src/provision/image';
import { downLocal, upLocal } from '../src/provision/local/up';
import { PHASES } from '../src/cluster/store';

const { values } = parseArgs({ options: { spec: { type: 'string', default: 'examples/three-node.yaml' } } });

async function bareVm(): Promise<number> {
  const k = utils.generateKeyPairSync('ed25519');
  const spec = loadSpecObject({ name: 'bench-bare', nodes: [{ name: 'node1' }], ssh: { authorizedKeys: [k.public] } });
  const rendered = renderCluster(spec, ensureSecrets(spec));
  const image = await ensureImage();
  const accel = await probeAccelerator(image);
  await destroyCluster(spec.name);
  const cluster = await startCluster({ spec, rendered, image, accel: accel.accel });
  try {
    return await waitNodeSsh(cluster, cluster.nodes[0]!, { user: spec.ssh.user, privateKey: k.private }, 10 * 60_000);
  } finally {
    await destroyCluster(spec.name);
  }
}

(async () => {
  const spec = { ...loadSpecFile(values.spec!), name: 'bench-up' };
  await downLocal(spec.name);
  const t0 = Date.now();
  const { record } = await upLocal({ spec, progress: (e) => e.state === 'done' && console.log(`  ${e.phase.padEnd(10)} ${e.seconds!.toFixed(1).padStart(6)} s${e.detail ? `  ${e.detail}` : ''}`) });
  const total = (Date.now() - t0) / 1000;
  await downLocal(spec.name);
  console.log(`\nup of ${record.nodes.length} nodes: all green ${total.toFixed(1)} s after the command started (goal: <= 60 s from launch under TCG)`);
  const phases = PHASES.filter((p) => p !== 'image' && p !== 'render');
  console.log(`seconds after launch: ${['node', ...phases, 'cpu-s'].join('\t')}`);
  for (const n of record.nodes) console.log(`  ${[n.name, ...phases.map((p) => record.timeline[n.name]?.[p]?.toFixed(1) ?? '-'), record.cpuSeconds[n.name]?.toFixed(1) ?? '-'].join('\t')}`);
  const bare = await bareVm();
  console.log(`\nbare VM (same image, alone): SSH after ${bare.toFixed(1)} s`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
