/** `flotilla verify`: the implementation, loaded when the command runs (declaration: verify.ts). */
import { writeFileAtomic } from '../../util/fs';
import { loadTestModules } from '../../verify/checks/api';
import { findInventory, registerInventoryProvider } from '../../cluster/inventory';
import { readSavedSpec } from '../../cluster/store';
import { localInventoryProvider } from '../../provision/local/inventory';
import { FORMATS, HumanReporter, formatReport } from '../../verify/report';
import { parseSuites } from '../../verify/suites';
import { runVerify } from '../../verify/verify';
import { choiceOpt, intOpt, stringOpt, type CommandRun } from '../command';
import { EXIT_CHECKS_FAILED, EXIT_OK, exitStatus } from '../exit-codes';

// `--cluster NAME` finds a local cluster's inventory (only verify asks the providers).
registerInventoryProvider('local', localInventoryProvider);

export const run: CommandRun = async (p, io) => {
  const cmd = 'verify';
  const format = choiceOpt(p, 'format', cmd, FORMATS) ?? 'human';
  const suites = p.values.suite !== undefined ? parseSuites(String(p.values.suite)) : undefined;
  const file = stringOpt(p, 'inventory', cmd);
  const cluster = stringOpt(p, 'cluster', cmd);
  const inventory = await findInventory(file ? { file } : cluster ? { cluster } : {});
  const tests = p.values.tests ? loadTestModules(p.values.tests as string[]) : [];
  const out = stringOpt(p, 'out', cmd);
  const live = format === 'human' && !out ? new HumanReporter(io.out, io.isTTY) : undefined;
  const retry = intOpt(p, 'retry-timeout', cmd, 0);
  const timeout = intOpt(p, 'timeout', cmd, 1);
  const failoverTimeout = intOpt(p, 'failover-timeout', cmd, 1);
  const artifacts = stringOpt(p, 'artifacts', cmd);
  // The exact spec the nodes were rendered from (TCG raises and format included), when up saved it.
  const spec = cluster ? readSavedSpec(cluster) : undefined;
  const { report } = await runVerify({
    inventory,
    ...(spec ? { spec } : {}),
    ...(suites ? { suites } : {}),
    ...(p.values.checks ? { checksFiles: p.values.checks as string[] } : {}),
    ...(tests.length ? { tests } : {}),
    ...(p.values.tag ? { tags: p.values.tag as string[] } : {}),
    ...(retry !== undefined ? { retryTimeoutMs: retry } : {}),
    ...(timeout !== undefined ? { timeoutMs: timeout } : {}),
    ...(failoverTimeout !== undefined ? { failoverTimeoutMs: failoverTimeout } : {}),
    ...(artifacts ? { artifacts } : {}),
    onPlan: (checks) => live?.plan(checks.length),
    ...(live ? { onResult: (r) => live.result(r) } : {}),
  });
  if (live) live.summary(report);
  else {
    const text = formatReport(report, format);
    if (out) writeFileAtomic(out, text);
    else io.out(text);
  }
  if (out) io.err(`flotilla verify: ${report.summary.pass}/${report.summary.total} passed${report.ok ? '' : `, ${report.summary.fail} failed, ${report.summary.error} errors`}; ${format} report in ${out}\n`);
  // No node reached: the cluster's machinery failed, not a check.
  if (report.connections.length > 0 && report.connections.every((c) => !c.ok)) return exitStatus('external');
  return report.ok ? EXIT_OK : EXIT_CHECKS_FAILED;
};
