import { FlotillaError, type FlotillaErrorCode } from '../errors';

/** The one place where error codes become exit statuses. */
const EXIT: Record<FlotillaErrorCode, number> = {
  usage: 2,
  'invalid-input': 2,
  'validation-failed': 2,
  'too-large': 2,
  'not-found': 3,
  conflict: 4,
  'missing-tool': 5,
  external: 6,
  timeout: 7,
  internal: 70,
};

/** A command did what it was asked. */
export const EXIT_OK = 0;
/** Checks ran and some failed (verify, smoke) or an invariant broke (chaos): a finding about the cluster, not an error. */
export const EXIT_CHECKS_FAILED = 1;
/** A child command (`flotilla ssh`'s ssh) ended without an exit status: killed by a signal. */
export const EXIT_NO_STATUS = 1;
/** A remote command ended without an exit status, reported as OpenSSH's ssh does (`units ssh NODE -- CMD`). */
export const EXIT_REMOTE_NO_STATUS = 255;

export function exitCodeFor(err: unknown): number {
  return FlotillaError.is(err) ? EXIT[err.code] : EXIT.internal;
}

/**
 * The status for an error code, for a command that reports a failure without throwing:
 * e.g. `validate` prints every invalid file, then returns exitStatus('invalid-input').
 */
export function exitStatus(code: FlotillaErrorCode): number {
  return EXIT[code];
}
