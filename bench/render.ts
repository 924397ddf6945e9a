/**
 * Renders and checks (Flotilla's own checks, not the external validators) first-boot
 * configs for a 1,000-node cluster in both formats. Goal: <= 2 s per format on a 2-core machine.
 * Run: npx tsx bench/render.ts [nodes]
 */
import { performance } from 'node:perf_hooks';
import { utils } from 'ssh2';
import { loadSpecObject } from '../src/config/load';
import { renderCluster } from '../src/config/render';
import { ensureSecrets } from '../src/config/secrets';
import { placeUserData } from '../src/config/userdata';

const count = Number(process.argv[2] ?? 1000);
const key = utils.generateKeyPairSync('ed25519', { comment: 'bench' }).public;

function ms(t0: number): string {
  return `${(performance.now() - t0).toFixed(0)} ms`;
}

const t0 = performance.now();
const spec = loadSpecObject({
  name: 'bench',
  network: { cidr: '10.64.0.0/20' },
  nodes: Array.from({ length: count }, (_, i) => ({ name: `node${i + 1}`, metadata: { rack: `r${i % 40}`, zone: `z${i % 3}` } })),
  ssh: { authorizedKeys: [key] },
  units: [{ name: 'hello.service', contents: '[Service]\nExecStart=/bin/sh -c "sleep infinity"\n' }],
});
console.log(`spec validation (${count} nodes): ${ms(t0)}`);

const t1 = performance.now();
const secrets = ensureSecrets(spec);
console.log(`host keys generated (${count}): ${ms(t1)}`);

// Cold first (what one CLI invocation sees), then warm (a long-running process, e.g. Pulumi).
for (const format of ['cloud-config', 'ignition', 'cloud-config'] as const) {
  const t = performance.now();
  const rendered = renderCluster(spec, secrets, { format });
  const bytes = rendered.reduce((n, r) => n + placeUserData(spec, r).userData.length, 0);
  const took = performance.now() - t;
  console.log(`render + own checks, ${format}, ${rendered.length} nodes: ${took.toFixed(0)} ms (${(took / rendered.length).toFixed(2)} ms/node, ${(bytes / rendered.length / 1024).toFixed(1)} KiB/node)`);
}
console.log(`total (validation, keys, both formats): ${ms(t0)}`);
