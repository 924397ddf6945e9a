import { writeFileAtomic } from '../../util/fs';
import { loadTestModules } from '../../verify/checks/api';
import { findInventory, registerInventoryProvider } from '../../verify/inventory';
import { localInventoryProvider } from '../../provision/local/inventory';
import { FORMATS, HumanReporter, formatReport } from '../../verify/report';
import { parseSuites } from '../../verify/suites';
import { runVerify } from '../../verify/verify';
import { choiceOpt, intOpt, stringOpt, type CommandSpec } from '../command';
import { EXIT_CHECKS_FAILED, EXIT_OK, exitStatus } from '../exit-codes';

registerInventoryProvider('local', localInventoryProvider);

export const verifyCommand: CommandSpec = {
  name: 'verify',
  summary: 'Check that a cluster really works, over pinned SSH connections (suites, custom checks, TAP/JUnit/JSON)',
  options: {
    inventory: { type: 'string', short: 'i', description: 'inventory file: nodes, SSH endpoints, pinned host keys, etcd (env FLOTILLA_INVENTORY)', valueName: 'FILE' },
    cluster: { type: 'string', short: 'c', description: 'a local cluster by name (instead of --inventory)', valueName: 'NAME' },
    suite: { type: 'string', short: 's', description: 'suites to run, comma-separated: node,etcd,fleet,discovery,failover (default: all but failover)', valueName: 'LIST' },
    checks: { type: 'string', multiple: true, description: 'YAML resource checks (file, service, port, command, http, etcd-key); repeatable', valueName: 'FILE' },
    tests: { type: 'string', multiple: true, description: 'TypeScript test module (registerTest / exported tests); repeatable', valueName: 'FILE' },
    tag: { type: 'string', multiple: true, description: 'only TypeScript tests with this tag; repeatable', valueName: 'TAG' },
    format: { type: 'string', short: 'f', description: 'report format: human, tap, junit, json (default human)', valueName: 'FORMAT' },
    out: { type: 'string', short: 'o', description: 'write the report to FILE (atomically) instead of stdout', valueName: 'FILE' },
    artifacts: { type: 'string', description: 'write report files and journals of failed units to DIR', valueName: 'DIR' },
    'retry-timeout': { type: 'string', description: 'retry failing checks until this many ms have passed (goss --retry-timeout)', valueName: 'MS' },
    timeout: { type: 'string', description: 'deadline per check in ms (default 30000)', valueName: 'MS' },
    'failover-timeout': { type: 'string', description: 'how long failover waits for units to move, ms (default 60000)', valueName: 'MS' },
  },
  details: [
    'Exit status: 0 when every check passed (skips are "not applicable"), 1 when any failed or errored,',
    '2 for bad input (inventory or checks, with file:line), 6 when no node could be reached.',
    'With --checks/--tests and no --suite, only the custom checks run.',
  ].join('\n'),
  async run(p, io) {
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
    const { report } = await runVerify({
      inventory,
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
  },
};
