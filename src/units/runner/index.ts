/** The unit runners and how to pick one for this host. */
import { ProcessRunner, type ProcessRunnerOptions } from './process';
import { detectRunner, SystemdRunner, type DetectRunnerOptions, type SystemdRunnerOptions } from './systemd';
import type { RunnerKind, UnitRunner } from './types';

export * from './types';
export { ProcessRunner, type ProcessRunnerOptions } from './process';
export { SystemdRunner, detectRunner, type SystemdRunnerOptions, type SystemctlExec } from './systemd';

export interface CreateUnitRunnerOptions {
  /** 'auto' (default) uses systemd when it is PID 1, else the process runner. */
  kind?: RunnerKind | 'auto';
  process?: ProcessRunnerOptions;
  systemd?: SystemdRunnerOptions;
  detect?: DetectRunnerOptions;
}

export function createUnitRunner(options: CreateUnitRunnerOptions = {}): UnitRunner {
  const kind = options.kind === undefined || options.kind === 'auto' ? detectRunner(options.detect) : options.kind;
  return kind === 'systemd' ? new SystemdRunner(options.systemd) : new ProcessRunner(options.process);
}
