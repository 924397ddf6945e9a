import { randomInt } from 'node:crypto';
import { FlotillaError } from '../../errors';
import { LocalChaosCluster } from '../../chaos/local';
import { FAULT_SUMMARY, parseFaultKinds, planFaults } from '../../chaos/plan';
import { checkSeed } from '../../chaos/prng';
import { formatChaosReport } from '../../chaos/report';
import { runChaos, timingsFor } from '../../chaos/runner';
import { downLocal, readRecord, upLocal, type ClusterRecord } from '../../provision/local/up';
import { choiceOpt, intOpt, stringOpt, type CommandSpec } from '../command';
import { EXIT_CHECKS_FAILED, EXIT_OK } from '../exit-codes';
import { CONFIG_FORMATS } from '../../config/spec';
import { localSpecFromFlags } from './cluster';

export const chaosCommand: CommandSpec = {
  name: 'chaos',
  summary: 'Inject faults into a local cluster in a seeded random order and check the scheduling invariants after each',
  options: {
    cluster: { type: 'string', short: 'c', description: 'an existing local cluster (otherwise one is brought up first)', valueName: 'NAME' },
    spec: { type: 'string', description: 'spec for the cluster brought up (default: --nodes N generic nodes)', valueName: 'FILE' },
    nodes: { type: 'string', description: 'number of nodes without a spec (default 3)', valueName: 'N' },
    name: { type: 'string', description: "name of the cluster brought up (default: the spec's, or 'chaos')", valueName: 'NAME' },
    format: { type: 'string', description: `first-boot format of the cluster brought up: ${CONFIG_FORMATS.join(' | ')}`, valueName: 'FORMAT' },
    faults: { type: 'string', short: 'k', description: 'number of faults (default 5: one of each kind)', valueName: 'K' },
    seed: { type: 'string', short: 's', description: 'PRNG seed for order and targets (default: random, printed)', valueName: 'S' },
    kinds: { type: 'string', description: `fault kinds to draw from, comma-separated (default all: ${Object.keys(FAULT_SUMMARY).join(',')})`, valueName: 'LIST' },
    json: { type: 'boolean', description: 'print the report as JSON' },
    keep: { type: 'boolean', description: 'leave a cluster this command brought up running' },
    verbose: { type: 'boolean', short: 'v', description: 'print every violation seen while waiting' },
  },
  details: [
    'Faults: ' + Object.entries(FAULT_SUMMARY).map(([k, v]) => `${k}: ${v}`).join('; ') + '.',
    'Exit status: 0 when every invariant held (or recovered within its deadline) after every fault, 1 when one broke',
    'or the cluster did not recover; other codes for errors (2 usage, 3 no such cluster, 6 a node or etcd failed).',
  ].join('\n'),
  async run(p, io) {
    const cmd = 'chaos';
    if (p.positionals.length) throw new FlotillaError('usage', `flotilla chaos: unexpected argument "${p.positionals[0]}"`);
    const clusterName = stringOpt(p, 'cluster', cmd);
    if (clusterName && (p.values.spec !== undefined || p.values.nodes !== undefined || p.values.name !== undefined || p.values.format !== undefined)) {
      throw new FlotillaError('usage', 'flotilla chaos: --cluster runs against an existing cluster; --spec, --nodes, --name and --format are for bringing one up');
    }
    const count = intOpt(p, 'faults', cmd, 1, 1000) ?? 5;
    const seedText = stringOpt(p, 'seed', cmd);
    if (seedText !== undefined && !/^\d+$/.test(seedText)) throw new FlotillaError('usage', `flotilla chaos: --seed must be a whole number (got "${seedText}")`);
    const seed = seedText !== undefined ? checkSeed(Number(seedText)) : randomInt(0, 2 ** 32 - 1);
    const kinds = p.values.kinds !== undefined ? parseFaultKinds(String(p.values.kinds)) : undefined;
    const plan = planFaults(seed, count, kinds);
    const log = (m: string) => io.err(`chaos: ${m}\n`);

    let record: ClusterRecord;
    let created: string | undefined;
    if (clusterName) {
      const r = readRecord(clusterName);
      if (!r) throw new FlotillaError('not-found', `no local cluster named ${clusterName} (flotilla ls lists them)`);
      record = r;
    } else {
      const spec = localSpecFromFlags(p, cmd, 'chaos');
      const format = choiceOpt(p, 'format', cmd, CONFIG_FORMATS);
      log(`bringing up cluster ${spec.name} (${spec.nodes.length} nodes)`);
      const up = await upLocal({ spec, ...(format ? { format } : {}), progress: (e) => e.state === 'done' && log(`up: ${e.phase} done in ${e.seconds!.toFixed(1)} s`) });
      record = up.record;
      if (!up.already) created = spec.name;
    }
    log(`seed ${seed}; plan: ${plan.map((f) => f.kind).join(', ')}`);
    let control: LocalChaosCluster | undefined;
    try {
      control = await LocalChaosCluster.open(record, `${seed}-${Date.now().toString(36)}`);
      const report = await runChaos({ cluster: record.name, seed, plan, control, observer: control, timings: timingsFor(control.ttlSeconds), log, verbose: p.values.verbose === true });
      io.out(p.values.json ? `${JSON.stringify(report, null, 2)}\n` : formatChaosReport(report));
      return report.ok ? EXIT_OK : EXIT_CHECKS_FAILED;
    } finally {
      await control?.close();
      if (created && !p.values.keep) {
        log(`taking cluster ${created} down`);
        await downLocal(created);
      } else if (created) log(`cluster ${created} left up (--keep); flotilla down --name ${created} when done`);
    }
  },
};
