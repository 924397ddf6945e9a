/** `flotilla chaos`: the implementation, loaded when the command runs (declaration: chaos.ts). */
import { randomInt } from 'node:crypto';
import { FlotillaError } from '../../errors';
import { LocalChaosCluster } from '../../chaos/local';
import { parseFaultKinds, planFaults } from '../../chaos/plan';
import { checkSeed } from '../../chaos/prng';
import { formatChaosReport } from '../../chaos/report';
import { runChaos, timingsFor } from '../../chaos/runner';
import { downLocal, upLocal } from '../../provision/local/up';
import { readRecord, type ClusterRecord } from '../../cluster/store';
import { choiceOpt, intOpt, stringOpt, type CommandRun } from '../command';
import { CONFIG_FORMATS } from '../../config/spec';
import { EXIT_CHECKS_FAILED, EXIT_OK } from '../exit-codes';
import { localSpecFromFlags } from './cluster.run';

export const run: CommandRun = async (p, io) => {
  const cmd = 'chaos';
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
};
