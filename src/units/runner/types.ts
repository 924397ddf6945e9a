/**
 * What an agent needs from whatever actually runs its units: systemd on a real host,
 * or plain processes where systemd is not PID 1 (tests, containers).
 */

/** systemd's ActiveState ('reloading' and 'maintenance' never occur here). */
export type ActiveState = 'active' | 'inactive' | 'activating' | 'deactivating' | 'failed';

/** systemd's LoadState: whether the unit's definition could be read. */
export type LoadState = 'loaded' | 'not-found' | 'bad-setting' | 'error';

export interface UnitStatus {
  name: string;
  load: LoadState;
  active: ActiveState;
  /**
   * systemd's SubState for services: dead, start-pre, start, start-post, running,
   * exited, stop, stop-sigterm, stop-sigkill, stop-post, final-sigterm, final-sigkill,
   * failed, auto-restart.
   */
  sub: string;
  /** The main process while there is one (systemd's MainPID). Also its process group ID in the process runner. */
  mainPid?: number;
  /**
   * systemd's Result for the last run: success, exit-code, signal, timeout,
   * start-limit-hit, resources. Absent before the first run.
   */
  result?: string;
}

export type StateListener = (status: UnitStatus) => void;

export type RunnerKind = 'process' | 'systemd';

export interface UnitRunner {
  readonly kind: RunnerKind;
  /**
   * Starts `name` (a `.service` for the process runner; any unit type for systemd)
   * from `unitText`. Resolves once the unit is active (for Type=oneshot: once its
   * commands succeeded); rejects with FlotillaError when the unit text is invalid
   * ('invalid-input'), when the unit is running with a different text ('conflict':
   * stop it first), or when the start attempt fails ('external'); the unit then shows
   * `failed`, or `activating`/`auto-restart` while Restart= retries it.
   * Starting an active unit with the same text does nothing. Starting a failed unit
   * resets its start-limit counter first (like `systemctl reset-failed`).
   */
  start(name: string, unitText: string): Promise<void>;
  /** Stops the unit and waits until all its processes are gone. Unknown or inactive units: nothing to do. */
  stop(name: string): Promise<void>;
  /** Stops the unit and forgets it (the systemd runner deletes its unit file). */
  remove(name: string): Promise<void>;
  /** The current status; `not-found`/`inactive`/`dead` for a unit this runner does not know. */
  state(name: string): Promise<UnitStatus>;
  /** Names of the units this runner was given and has not removed, sorted. */
  list(): string[];
  /** Calls `listener` on every state change of any unit; returns a function that unsubscribes. */
  onStateChange(listener: StateListener): () => void;
  /** Stops every unit this runner started (waiting for their processes) and releases its resources. */
  close(): Promise<void>;
  /**
   * Stops and forgets the units a previous process of this runner left running (its agent was
   * killed); returns their names. Runners whose units die with their agent have none.
   */
  stopLeftovers?(): Promise<string[]>;
}

export function unknownUnitStatus(name: string): UnitStatus {
  return { name, load: 'not-found', active: 'inactive', sub: 'dead' };
}
