/** `flotilla smoke`: the implementation, loaded when the command runs (declaration: smoke.ts). */
import * as path from 'node:path';
import { writeFileAtomic } from '../../util/fs';
import { FORMATS } from '../../verify/report';
import { runSmoke } from '../../verify/smoke';
import { choiceOpt, stringOpt, type CommandRun } from '../command';
import { EXIT_CHECKS_FAILED, EXIT_OK } from '../exit-codes';
import { localSpecFromFlags } from './cluster.run';
import { BOOT_MODES } from './constants';

export const run: CommandRun = async (p, io) => {
  const format = choiceOpt(p, 'format', 'smoke', FORMATS) ?? 'junit';
  const artifactsDir = path.resolve(stringOpt(p, 'artifacts', 'smoke') ?? 'flotilla-artifacts');
  const spec = localSpecFromFlags(p, 'smoke', 'smoke');
  const boot = choiceOpt(p, 'boot', 'smoke', BOOT_MODES);
  const leave = p.values['leave-up'] === true ? 'always' : p.values.keep === true ? 'on-failure' : undefined;
  let leftUp = leave !== undefined; // if up fails, --keep and --leave-up both leave what it started
  try {
    const r = await runSmoke({
      spec,
      artifactsDir,
      format,
      ...(boot ? { boot } : {}),
      ...(leave ? { leave } : {}),
      log: (line) => io.err(`smoke: ${line}\n`),
      onUpEvent: (e) => e.state === 'done' && io.err(`smoke: ${e.phase} done in ${e.seconds!.toFixed(1)} s\n`),
    });
    leftUp = r.leftUp;
    const out = stringOpt(p, 'out', 'smoke');
    if (out) writeFileAtomic(out, r.text);
    io.out(r.text);
    io.err(`smoke: ${r.report.summary.pass}/${r.report.summary.total} checks passed\n`);
    return r.ok ? EXIT_OK : EXIT_CHECKS_FAILED;
  } finally {
    if (leftUp) io.err(`smoke: cluster ${spec.name} left up (${p.values['leave-up'] ? '--leave-up' : '--keep'}); flotilla down --name ${spec.name} when done\n`);
    io.err(`smoke: artifacts in ${artifactsDir}\n`);
  }
};
