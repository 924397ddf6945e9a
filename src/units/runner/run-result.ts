/**
 * How a run of a service ends, judged as systemd judges it (systemd.service(5),
 * systemd.exec(5)): the Result of a run, the exit of one command and how messages
 * describe it, which exits of the main process count as clean, and the
 * $SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS that ExecStop= and ExecStopPost= see.
 */
import type { ServiceConfig } from './service-config';

/** systemd's Result of a run. */
export type ServiceResult = 'success' | 'exit-code' | 'signal' | 'timeout' | 'start-limit-hit' | 'resources';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the command could not be executed at all. */
  error?: Error;
}

/** systemd's exit status for a failed exec (EXIT_EXEC). */
export const EXIT_EXEC = 203;
const CLEAN_DAEMON_SIGNALS: readonly string[] = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGPIPE'];

export function describeExit(info: ExitInfo): string {
  if (info.error) return `could not be executed (${info.error.message})`;
  if (info.signal) return `was killed by ${info.signal}`;
  return `exited with status ${info.code}`;
}

/**
 * The Result of an exit of the main process: status 0, SuccessExitStatus= and (unless
 * `command`, a Type=oneshot ExecStart=) the signals a daemon stops on count as success.
 */
export function mainResult(cfg: ServiceConfig, info: ExitInfo, command: boolean): ServiceResult {
  if (info.error) return 'exit-code';
  if (info.code !== null) return info.code === 0 || cfg.successExitCodes.includes(info.code) ? 'success' : 'exit-code';
  const sig = info.signal!;
  if (cfg.successSignals.includes(sig) || (!command && CLEAN_DAEMON_SIGNALS.includes(sig))) return 'success';
  return 'signal';
}

/** $SERVICE_RESULT, $EXIT_CODE, $EXIT_STATUS for ExecStop= and ExecStopPost=, as systemd sets them. */
export function resultEnvironment(result: ServiceResult, mainExit: ExitInfo | undefined): Record<string, string> {
  const env: Record<string, string> = { SERVICE_RESULT: result };
  if (mainExit) {
    env.EXIT_CODE = mainExit.signal ? 'killed' : 'exited';
    env.EXIT_STATUS = mainExit.signal ? mainExit.signal.replace(/^SIG/, '') : String(mainExit.error ? EXIT_EXEC : mainExit.code);
  }
  return env;
}
