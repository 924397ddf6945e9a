/**
 * Shared pieces for the property-based tests (test/**\/*.property.test.ts): the seed and run
 * settings, hostile strings, random mutations of valid documents, and the checks every
 * property makes (only FlotillaError escapes, every problem names its place, no prototype
 * pollution).
 *
 * Reproducing a failure: fast-check prints the seed and counterexample path; run the same
 * file with FLOTILLA_PROPERTY_SEED=<seed> to replay every property in it from that seed.
 * FLOTILLA_PROPERTY_RUNS=<factor> multiplies every run count (e.g. 10 for a long soak).
 */
import * as assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import fc from 'fast-check';
import { FlotillaError, type Problem } from '../../src/errors';
import { splitPath } from '../../src/config/yaml-source';

function seedFromEnv(): number {
  const raw = process.env.FLOTILLA_PROPERTY_SEED;
  if (raw === undefined || raw === '') return (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0;
  const seed = Number(raw);
  if (!Number.isInteger(seed)) throw new Error(`FLOTILLA_PROPERTY_SEED must be an integer, got ${JSON.stringify(raw)}`);
  return seed | 0;
}

function runFactorFromEnv(): number {
  const raw = process.env.FLOTILLA_PROPERTY_RUNS;
  if (raw === undefined || raw === '') return 1;
  const factor = Number(raw);
  if (!(factor > 0)) throw new Error(`FLOTILLA_PROPERTY_RUNS must be a positive number, got ${JSON.stringify(raw)}`);
  return factor;
}

export const PROPERTY_SEED = seedFromEnv();
export const RUN_FACTOR = runFactorFromEnv();

/**
 * Counts the inputs each target was actually tested with, so a file can check that it
 * reached its share of the issue's 10,000 runs per target (filters and fc.pre can eat runs).
 */
export class RunCounter {
  private readonly counts = new Map<string, number>();

  /** Wraps a predicate so that each call is counted under `property`. */
  count<A extends unknown[]>(property: string, predicate: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      this.counts.set(property, (this.counts.get(property) ?? 0) + 1);
      predicate(...args);
    };
  }

  total(): number {
    let sum = 0;
    for (const n of this.counts.values()) sum += n;
    return sum;
  }

  report(): string {
    return [...this.counts].map(([p, n]) => `${p}: ${n}`).join('; ');
  }
}

/**
 * Runs one property with the shared seed and `numRuns` (scaled by FLOTILLA_PROPERTY_RUNS),
 * printing the seed as a test diagnostic so that any run can be replayed.
 */
export function checkProperty<Ts extends [unknown, ...unknown[]]>(
  t: TestContext,
  numRuns: number,
  property: fc.IProperty<Ts>,
): void {
  const runs = Math.max(1, Math.round(numRuns * RUN_FACTOR));
  t.diagnostic(`fast-check seed ${PROPERTY_SEED}, ${runs} runs (replay: FLOTILLA_PROPERTY_SEED=${PROPERTY_SEED})`);
  const cpu = process.cpuUsage();
  // includeErrorInReport: the test runner does not print the failing assertion kept as the cause.
  fc.assert(property, { seed: PROPERTY_SEED, numRuns: runs, includeErrorInReport: true });
  // CPU time rather than wall time: it measures the property, not what else the machine runs.
  const used = process.cpuUsage(cpu);
  t.diagnostic(`cpu ${((used.user + used.system) / 1e6).toFixed(2)} s`);
}

/** The number of runs a file must reach per target, scaled like the runs themselves. */
export function requiredRuns(perTarget = 10_000): number {
  return Math.round(perTarget * RUN_FACTOR);
}

// ---------------------------------------------------------------------------
// Hostile input

/** A line long enough to trip anything that assumes short lines, short enough to stay fast. */
export const LONG_LINE = 'x'.repeat(20_000);

/**
 * Pieces that break naive parsers: NUL and other controls, every line break YAML, JSON or
 * systemd might treat specially (CR, CRLF, NEL, LS, PS), byte order marks, lone surrogates,
 * quoting and comment characters, YAML indicators, prototype keys, and a very long line.
 */
export const HOSTILE_PIECES: readonly string[] = [
  '\0',
  '\r',
  '\n',
  '\r\n',
  '\u0085',
  '\u2028',
  '\u2029',
  '\ufeff',
  '\ufffe',
  '\uffff',
  '\ud800',
  '\udfff',
  '\x7f',
  '\x1b[31m',
  '\t',
  '\v\f',
  ' ',
  '\\',
  '\\\n',
  '"',
  "'",
  '#',
  ';',
  '[',
  ']',
  '{',
  '}',
  ': ',
  '- ',
  '? ',
  '|',
  '>',
  '&a ',
  '*a',
  '!!binary ',
  '!!js/function ',
  '!<tag:x> ',
  '<<: ',
  '%YAML 1.1\n',
  '---\n',
  '...\n',
  '%',
  '%n',
  '%H',
  '=',
  '@',
  '$private_ipv4',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  '😀',
  '雪',
  LONG_LINE,
];

/** A string built from hostile pieces and random code units. */
export const hostileString: fc.Arbitrary<string> = fc
  .array(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...HOSTILE_PIECES) }, { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) }), {
    maxLength: 10,
  })
  .map((parts) => parts.join(''));

/** Like hostileString but without the 20,000-character line, for places where size multiplies. */
export const shortHostileString: fc.Arbitrary<string> = fc
  .array(fc.oneof(fc.constantFrom(...HOSTILE_PIECES.filter((p) => p !== LONG_LINE)), fc.string({ unit: 'binary', maxLength: 4 })), { maxLength: 6 })
  .map((parts) => parts.join(''));

// ---------------------------------------------------------------------------
// Mutations of valid documents

export type Mutation =
  | { kind: 'insert'; at: number; text: string }
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'duplicate'; at: number; length: number }
  | { kind: 'swap-lines'; at: number; other: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'indent'; at: number; by: string }
  | { kind: 'nest'; at: number; depth: number };

/** Positions are fractions of the current length (in millionths), so a mutation fits any text. */
const position = fc.integer({ min: 0, max: 1_000_000 });

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  // The long line is rare: in a document it multiplies the parsing cost of every run that has it.
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('insert' as const), at: position, text: fc.oneof({ weight: 20, arbitrary: shortHostileString }, { weight: 1, arbitrary: fc.constant(LONG_LINE) }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: position, length: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('duplicate' as const), at: position, length: fc.integer({ min: 1, max: 80 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('swap-lines' as const), at: position, other: position }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: position }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('indent' as const), at: position, by: fc.constantFrom(' ', '  ', '\t', '-') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('nest' as const), at: position, depth: fc.integer({ min: 1, max: 3000 }) }) },
);

function place(at: number, length: number): number {
  return Math.floor((at / 1_000_000) * length);
}

/** Applies one mutation. Code-unit positions, so a mutation may split a surrogate pair: that is hostile input too. */
export function applyMutation(text: string, m: Mutation): string {
  const i = place(m.at, text.length);
  switch (m.kind) {
    case 'insert':
      return text.slice(0, i) + m.text + text.slice(i);
    case 'delete':
      return text.slice(0, i) + text.slice(i + m.length);
    case 'duplicate':
      return text.slice(0, i + m.length) + text.slice(i, i + m.length) + text.slice(i + m.length);
    case 'truncate':
      return text.slice(0, i);
    case 'swap-lines': {
      const lines = text.split('\n');
      const a = place(m.at, lines.length);
      const b = place(m.other, lines.length);
      [lines[a], lines[b]] = [lines[b]!, lines[a]!];
      return lines.join('\n');
    }
    case 'indent': {
      const lines = text.split('\n');
      const a = place(m.at, lines.length);
      lines[a] = m.by + lines[a]!;
      return lines.join('\n');
    }
    case 'nest':
      // Deep flow nesting, the classic way to exhaust a recursive parser's stack.
      return `${text.slice(0, i)}${'['.repeat(m.depth)}${']'.repeat(m.depth)}${text.slice(i)}`;
  }
}

/** A valid document from `base`, then one to four random mutations. */
export function mutated(base: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(base, fc.array(mutationArb, { minLength: 1, maxLength: 4 })).map(([text, ms]) => ms.reduce(applyMutation, text));
}

/** Random bytes, read as UTF-8 (with replacement characters) or as Latin-1 (every byte a character). */
export const randomBytesAsText: fc.Arbitrary<string> = fc
  .tuple(fc.uint8Array({ maxLength: 400 }), fc.boolean())
  .map(([bytes, utf8]) => Buffer.from(bytes).toString(utf8 ? 'utf8' : 'latin1'));

// ---------------------------------------------------------------------------
// Checks

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: FlotillaError };

/** Runs `fn`; a FlotillaError is an outcome, anything else thrown fails the property. */
export function outcome<T>(fn: () => T): Outcome<T> {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    if (FlotillaError.is(err)) return { ok: false, error: err };
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    throw new assert.AssertionError({ message: `threw something other than FlotillaError: ${detail}` });
  }
}

/** The outcome without the parts that legitimately differ between calls (object identity). */
export function outcomeSummary<T>(o: Outcome<T>, value: (v: T) => unknown = (v) => v): unknown {
  return o.ok ? { ok: true, value: value(o.value) } : { ok: false, code: o.error.code, message: o.error.message, problems: o.error.problems };
}

/**
 * Lines as a position counter sees them: `breaks` decides what ends a line (the yaml
 * package counts only LF; systemd also CR and CRLF).
 */
export function linesOf(text: string, breaks: 'lf' | 'any'): string[] {
  return text.split(breaks === 'lf' ? '\n' : /\r\n|\n|\r/);
}

/**
 * A problem's line (and column, when given) lies inside the document: 1 <= line <= lines,
 * 1 <= column <= length of that line + 1 (one past the end points at a missing value).
 */
export function assertInBounds(p: Problem, lines: readonly string[], what: string): void {
  const where = `${what}: ${JSON.stringify(p)}`;
  assert.ok(p.line !== undefined, `no line in ${where}`);
  assert.ok(Number.isInteger(p.line) && p.line >= 1 && p.line <= lines.length, `line out of 1..${lines.length} in ${where}`);
  if (p.column !== undefined) {
    const length = lines[p.line - 1]!.length;
    assert.ok(Number.isInteger(p.column) && p.column >= 1 && p.column <= length + 1, `column out of 1..${length + 1} in ${where}`);
  }
}

/** Follows a problem path (`nodes[2].metadata."a b"`) through plain data; undefined when a step is missing. */
export function resolvePath(data: unknown, path: string): { found: boolean; value: unknown } {
  let node: unknown = data;
  for (const seg of splitPath(path)) {
    if (typeof seg === 'number') {
      if (!Array.isArray(node) || seg >= node.length) return { found: false, value: undefined };
      node = node[seg];
    } else {
      if (typeof node !== 'object' || node === null || Array.isArray(node) || !Object.prototype.hasOwnProperty.call(node, seg)) {
        return { found: false, value: undefined };
      }
      node = (node as Record<string, unknown>)[seg];
    }
  }
  return { found: true, value: node };
}

/** The path without its last segment: `nodes[2].name` -> `nodes[2]`, `name` -> ''. */
export function parentPath(path: string): string {
  const m = /^(.*?)(?:\.(?:"(?:[^"\\]|\\.)*"|[^.[\]"]+)|\[\d+\])$/.exec(path);
  return m ? m[1]! : '';
}

const OBJECT_PROTO_KEYS = Object.getOwnPropertyNames(Object.prototype).sort().join(',');
const ARRAY_PROTO_KEYS = Object.getOwnPropertyNames(Array.prototype).sort().join(',');

/** Nothing was added to Object.prototype or Array.prototype, and a fresh object has no inherited enumerable keys. */
export function assertNoPrototypePollution(): void {
  assert.equal(Object.getOwnPropertyNames(Object.prototype).sort().join(','), OBJECT_PROTO_KEYS, 'Object.prototype was changed');
  assert.equal(Object.getOwnPropertyNames(Array.prototype).sort().join(','), ARRAY_PROTO_KEYS, 'Array.prototype was changed');
  const inherited: string[] = [];
  for (const k in {}) inherited.push(k);
  assert.deepEqual(inherited, [], 'a fresh object has inherited enumerable keys');
}

// ---------------------------------------------------------------------------
// Valid systemd unit files

export interface UnitModel {
  sections: Array<{ name: string; entries: Array<{ key: string; value: string }> }>;
}

export interface UnitText {
  text: string;
  model: UnitModel;
}

const unitKeyArb = fc.oneof(
  fc.constantFrom('Description', 'ExecStart', 'ExecStartPre', 'Environment', 'After', 'WantedBy', 'Restart', 'MachineMetadata', 'Conflicts'),
  fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,12}$/),
);
const unitSectionArb = fc.oneof(fc.constantFrom('Unit', 'Service', 'Install', 'X-Fleet', 'Timer'), fc.stringMatching(/^[A-Za-z][A-Za-z0-9 _-]{0,10}[A-Za-z0-9]$/));
/** One logical line that parses back to itself: no surrounding whitespace, no odd trailing backslashes. */
const unitValueArb = fc
  .string({ unit: fc.constantFrom('a', 'Z', '0', ' ', '"', "'", '\\', '=', '#', ';', '[', ']', '%', '$', '/', 'é', '\t', '\u2028', '\ufeff', '😀'), maxLength: 24 })
  .map((v) => v.replace(/^[ \t]+|[ \t]+$/g, ''))
  .filter((v) => !/(^|[^\\])(\\\\)*\\$/.test(v));
const unitCommentArb = fc.constantFrom('', '# note', '; note', '  ', '#', '  # indented', '# [Fake] k=v');
const unitSpaceArb = fc.constantFrom('', ' ', '\t');

/**
 * A valid unit file and what it means. Covers what the parser must keep for an exact round
 * trip: comments and blank lines, spacing around `=`, continuation lines, LF, CRLF or CR line
 * ends, a byte order mark, and a missing final line end.
 */
export function unitFileText(
  opts: { eols?: ReadonlyArray<'\n' | '\r\n' | '\r'>; bom?: boolean; maxSections?: number; maxEntries?: number } = {},
): fc.Arbitrary<UnitText> {
  const eols = opts.eols ?? ['\n', '\r\n', '\r'];
  const entryArb = fc.record({
    key: unitKeyArb,
    value: unitValueArb,
    pad: fc.tuple(unitSpaceArb, unitSpaceArb, unitSpaceArb),
    comments: fc.array(unitCommentArb, { maxLength: 2 }),
    split: fc.nat({ max: 30 }),
  });
  return fc
    .record({
      sections: fc.array(
        fc.record({ name: unitSectionArb, comments: fc.array(unitCommentArb, { maxLength: 2 }), entries: fc.array(entryArb, { maxLength: opts.maxEntries ?? 6 }) }),
        { maxLength: opts.maxSections ?? 5 },
      ),
      trailing: fc.array(unitCommentArb, { maxLength: 2 }),
      eol: fc.constantFrom(...eols),
      bom: opts.bom === false ? fc.constant(false) : fc.boolean(),
      finalNewline: fc.boolean(),
    })
    .map(({ sections, trailing, eol, bom, finalNewline }) => {
      const lines: string[] = [];
      const model: UnitModel = { sections: [] };
      for (const s of sections) {
        lines.push(...s.comments, `[${s.name}]`);
        const entries: Array<{ key: string; value: string }> = [];
        for (const e of s.entries) {
          lines.push(...e.comments);
          const [a, b, c] = e.pad;
          const splitAt = e.value.indexOf(' ', e.split);
          const rest = e.value.slice(splitAt + 1);
          // "x y" written as "x\" + line end + "y" reads back as "x y"; a rest that reads as a
          // comment would be skipped, and a backslash before the split would escape it.
          if (splitAt > 0 && rest !== '' && !/^[ \t]*[#;]/.test(rest) && !/\\$/.test(e.value.slice(0, splitAt))) {
            lines.push(`${a}${e.key}${b}=${c}${e.value.slice(0, splitAt)}\\`, rest);
          } else {
            lines.push(`${a}${e.key}${b}=${c}${e.value}`);
          }
          entries.push({ key: e.key, value: e.value });
        }
        model.sections.push({ name: s.name, entries });
      }
      lines.push(...trailing);
      let text = lines.join(eol);
      if (lines.length > 0 && finalNewline) text += eol;
      return { text: (bom ? '\ufeff' : '') + text, model };
    });
}
