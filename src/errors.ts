/**
 * The one error type Flotilla throws for expected failures. The CLI maps `code`
 * to an exit status in exactly one place (src/cli/exit-codes.ts).
 */
export type FlotillaErrorCode =
  /** Bad command line: unknown flag, missing argument. */
  | 'usage'
  /** Bad input file or value: spec, unit file, cloud-config, Ignition. */
  | 'invalid-input'
  /** A real validator (cloud-init schema, ignition-validate) rejected generated or given output. */
  | 'validation-failed'
  /** A named thing does not exist: file, cluster, unit, machine. */
  | 'not-found'
  /** A named thing exists already or conflicts with current state. */
  | 'conflict'
  /** Output exceeds a platform limit (e.g. EC2 user-data 16 KiB). */
  | 'too-large'
  /** A required host tool is missing (run scripts/setup-host.sh). */
  | 'missing-tool'
  /** An external system failed: etcd, ssh, qemu, libvirt. */
  | 'external'
  /** A deadline passed. */
  | 'timeout'
  /** A bug in Flotilla. */
  | 'internal';

/** One located problem: where (file, line, field path) and what. */
export interface Problem {
  /** Field path such as `nodes[2].name`, or '' for the whole document. */
  path: string;
  message: string;
  file?: string;
  line?: number;
  column?: number;
  /** The problem is the key itself (unknown field), so locate the key rather than its value. */
  atKey?: boolean;
}

const BRAND = Symbol.for('flotilla.FlotillaError');

export class FlotillaError extends Error {
  readonly [BRAND] = true;
  override readonly name = 'FlotillaError';

  constructor(
    readonly code: FlotillaErrorCode,
    message: string,
    /** Every located problem, when the error stands for several (validation reports all at once). */
    readonly problems: readonly Problem[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Works across duplicate module copies, unlike instanceof. */
  static is(value: unknown): value is FlotillaError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** `file:line:column: path: message`, leaving out the parts that are unknown. */
export function formatProblem(p: Problem): string {
  let where = '';
  if (p.file) where += p.file;
  if (p.line !== undefined) where += `${where ? ':' : 'line '}${p.line}${p.column !== undefined ? `:${p.column}` : ''}`;
  const field = p.path ? `${p.path}: ` : '';
  return `${where ? `${where}: ` : ''}${field}${p.message}`;
}

/** Throws `invalid-input` listing every problem, if there are any. */
export function throwIfProblems(problems: readonly Problem[], what: string): void {
  if (problems.length === 0) return;
  const lines = problems.map((p) => `  ${formatProblem(p)}`).join('\n');
  throw new FlotillaError(
    'invalid-input',
    `${what}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n${lines}`,
    problems,
  );
}
