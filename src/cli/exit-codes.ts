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

export function exitCodeFor(err: unknown): number {
  return FlotillaError.is(err) ? EXIT[err.code] : EXIT.internal;
}
