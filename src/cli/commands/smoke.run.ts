/** `flotilla smoke`: the implementation, loaded when the command runs (declaration: smoke.ts). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inventoryFromRecord } from '../../provision/local/inventory';
import { downLocal, upLocal, type ClusterRecord } from '../../provision/local/up';
import { writeFileAtomic } from '../../util/fs';
import { Artifacts } from '../../verify/artifacts';
import { FORMATS, formatReport } from '../../verify/report';
import type { NodeBootTimes } from '../../verify/report/timeline';
import { runVerify } from '../../verify/verify';
import { choiceOpt, stringOpt, type CommandRun } from '../command';
import { EXIT_CHECKS_FAILED, EXIT_OK } from '../exit-codes';
import { localSpecFromFlags } from './cluster.run';

/** The record's per-node milestones (seconds) as the timeline picture wants them (ms). */
export function bootTimes(record: ClusterRecord): NodeBootTimes[] {
  return record.nodes.map((n) => {
    const t = record.timeline[n.name] ?? {};
    const ms = (s: number | undefined) => (s === undefined ? undefined : Math.round(s * 1000));
    const marks: NodeBootTimes['marks'] = {};
    const set = (k: keyof NodeBootTimes['marks'], v: number | undefined) => v !== undefined && (marks[k] = v);
    set('launch', ms(t.launch));
    set('kernel', ms(t.kernel));
    set('ssh', ms(t.ssh));
    set('firstBoot', ms(t['first-boot']));
    set('etcdHealthy', ms(t.etcd));
    set('agentRegistered', ms(t.agents));
    return { node: n.name, marks };
  });
}

export const run: CommandRun = async (p, io) => {
  const format = choiceOpt(p, 'format', 'smoke', FORMATS) ?? 'junit';
  const artifactsDir = path.resolve(stringOpt(p, 'artifacts', 'smoke') ?? 'flotilla-artifacts');
  const spec = localSpecFromFlags(p, 'smoke', 'smoke');
  const artifacts = new Artifacts(artifactsDir);
  let record: ClusterRecord | undefined;
  let ok = false;
  try {
    try {
      ({ record } = await upLocal({ spec, progress: (e) => e.state === 'done' && io.err(`smoke: ${e.phase} done in ${e.seconds!.toFixed(1)} s\n`) }));
    } catch (err) {
      io.err(`smoke: up failed: ${(err as Error).message}\n`);
      throw err;
    }
    io.err('smoke: verifying\n');
    // Deadlines follow the inventory's pace: emulated (TCG) nodes get EMULATED_TIME_SCALE times the defaults.
    const { report } = await runVerify({ inventory: inventoryFromRecord(record), spec, artifacts });
    const text = formatReport(report, format);
    const out = stringOpt(p, 'out', 'smoke');
    if (out) writeFileAtomic(out, text);
    io.out(text);
    io.err(`smoke: ${report.summary.pass}/${report.summary.total} checks passed\n`);
    ok = report.ok;
    return ok ? EXIT_OK : EXIT_CHECKS_FAILED;
  } finally {
    if (record) {
      for (const node of record.nodes) {
        artifacts.copyConsoleLog(node.name, node.consoleLog);
        for (const f of ['rendered.user-data', 'rendered.network-config', 'rendered.ign']) {
          const file = path.join(path.dirname(node.consoleLog), f);
          if (fs.existsSync(file)) artifacts.writeRenderedConfig(node.name, f.replace(/^rendered\./, ''), fs.readFileSync(file));
        }
      }
      artifacts.writeTimelines(bootTimes(record), { title: `cluster ${record.name}` });
      artifacts.writeIndex({ cluster: record.name, phases: record.phases, timeline: record.timeline, cpuSeconds: record.cpuSeconds });
    }
    const leave = p.values['leave-up'] === true || (!ok && p.values.keep === true);
    if (!leave) await downLocal(spec.name);
    else io.err(`smoke: cluster ${spec.name} left up (${p.values['leave-up'] ? '--leave-up' : '--keep'}); flotilla down --name ${spec.name} when done\n`);
    io.err(`smoke: artifacts in ${artifactsDir}\n`);
  }
};
