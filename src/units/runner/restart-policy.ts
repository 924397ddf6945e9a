/**
 * Whether the process runner starts a unit again (systemd.service(5), systemd.unit(5)):
 * Restart= weighed against the Result of the run that ended, and the start limit,
 * StartLimitBurst= starts within StartLimitIntervalSec=.
 */
import type { ServiceResult } from './run-result';
import type { ServiceConfig } from './service-config';

/** Whether Restart= restarts after a run that ended with `result` (systemd.service(5) table). */
export function restartAllowed(policy: ServiceConfig['restart'], result: ServiceResult): boolean {
  switch (policy) {
    case 'no':
    case 'on-watchdog':
      return false;
    case 'always':
      return result !== 'start-limit-hit';
    case 'on-success':
      return result === 'success';
    case 'on-failure':
      return result !== 'success' && result !== 'start-limit-hit';
    case 'on-abnormal':
      return result === 'signal' || result === 'timeout';
    case 'on-abort':
      return result === 'signal';
  }
}

/** One unit's recent starts, counted against its start limit. */
export class StartLimit {
  private startTimes: number[] = [];

  /** Forgets the recorded starts, as reset-failed does. */
  reset(): void {
    this.startTimes = [];
  }

  /** Records a start now; false (recording nothing) when the limit is reached. */
  take(cfg: ServiceConfig): boolean {
    if (cfg.startLimitIntervalMs === 0 || cfg.startLimitBurst === 0) return true;
    const now = Date.now();
    this.startTimes = this.startTimes.filter((t) => now - t < cfg.startLimitIntervalMs);
    if (this.startTimes.length >= cfg.startLimitBurst) return false;
    this.startTimes.push(now);
    return true;
  }
}
