import { lazyCommand } from '../command';

/** The implementation, loaded when the command runs. */
const impl = () => require('./verify.run') as typeof import('./verify.run');

export const verifyCommand = lazyCommand(
  {
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
  },
  () => impl().run,
);
