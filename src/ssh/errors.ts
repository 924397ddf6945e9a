/** SSH failures: one error type whose `kind` says what went wrong, and the pinned-key refusal. */
import { FlotillaError, type FlotillaErrorCode } from '../errors';

export type SshFailure = 'refused' | 'timeout' | 'auth' | 'host-key' | 'closed' | 'unreachable' | 'other';

/** A connection or command failure; `kind` says which (tests and retries branch on it). */
export class SshError extends FlotillaError {
  constructor(
    readonly kind: SshFailure,
    code: FlotillaErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, [], options);
  }
}

/** The server presented a key other than the pinned one. Never retried. */
export class HostKeyMismatchError extends SshError {
  constructor(
    readonly where: string,
    readonly presentedFingerprint: string,
    readonly expectedFingerprint: string,
    presentedType: string,
    expectedType: string,
  ) {
    super(
      'host-key',
      'external',
      `${where}: host key mismatch: the server presented ${presentedType} ${presentedFingerprint}, but the inventory pins ${expectedType} ${expectedFingerprint}; refusing to connect (a different machine answers, or the node was re-created with a new key: re-render and update the inventory)`,
    );
  }
}
