/**
 * systemd unit files: parse, query, serialise.
 *
 * Syntax follows systemd.syntax(7): `[Section]` headers, `Key=Value` assignments with
 * whitespace around `=` ignored, `#` and `;` comment lines, lines ending in an odd number
 * of backslashes continued on the next line (the backslash becomes a space, comment lines
 * inside a continuation are skipped), `\n`, `\r\n` and `\r` line ends. Values are kept
 * verbatim; word splitting with quotes and C escapes is a separate step (`splitWords`),
 * because only some settings are word lists.
 *
 * Everything the parser does not interpret (comments, blank lines, exact spacing,
 * continuations) is kept, so that serialising an unchanged file gives back its text.
 * Where systemd only warns (an assignment outside a section, a line without `=`) we
 * refuse: a unit the scheduler cannot understand must not be scheduled.
 */
import { FlotillaError, throwIfProblems, type Problem } from '../errors';

/** The exact source of a parsed element; reused while the element is unchanged. */
export interface SourceText {
  /** The physical lines, joined with the file's line end, without the final line end. */
  text: string;
  /** The key (or section name) and value this text parsed to. */
  key: string;
  value: string;
}

export interface UnitEntry {
  key: string;
  value: string;
  /** 1-based line where the assignment starts. */
  line: number;
  /** Comment and blank lines directly before this entry, verbatim. */
  comments?: string[];
  source?: SourceText;
}

export interface UnitSection {
  name: string;
  /** 1-based line of the `[Section]` header. */
  line: number;
  entries: UnitEntry[];
  /** Comment and blank lines directly before the header, verbatim. */
  comments?: string[];
  source?: SourceText;
}

export interface UnitFile {
  /** Unit name such as `web@.service`; also the file name in error messages unless parsed with another. */
  name: string;
  /** In file order. A section name may appear more than once; systemd merges them in order. */
  sections: UnitSection[];
  /** Comment and blank lines after the last entry, verbatim. */
  trailing?: string[];
  /** Line end used when serialising; defaults to `\n`. */
  eol?: '\n' | '\r\n' | '\r';
  /** Whether the text ended with a line end; defaults to true. */
  finalNewline?: boolean;
  /** Whether the text started with a UTF-8 byte order mark (systemd skips it). */
  bom?: boolean;
}

const WHITESPACE = ' \t\n\r';

function isWhitespace(c: string): boolean {
  return c.length === 1 && WHITESPACE.includes(c);
}

/** Trims systemd's WHITESPACE only; String.prototype.trim would also eat NBSP and BOM. */
function trimWs(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && isWhitespace(s[start]!)) start++;
  while (end > start && isWhitespace(s[end - 1]!)) end--;
  return s.slice(start, end);
}

function isCommentOrBlank(line: string): boolean {
  const t = trimWs(line);
  return t === '' || t[0] === '#' || t[0] === ';';
}

/** True when the line ends with an odd number of backslashes (an even number is escaped backslashes). */
function endsWithContinuation(line: string): boolean {
  let n = 0;
  for (let i = line.length - 1; i >= 0 && line[i] === '\\'; i--) n++;
  return n % 2 === 1;
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\x00-\x08\x0b-\x1f\x7f]/;

function sectionNameProblem(name: string): string | undefined {
  if (name === '') return 'empty section name';
  if (/[[\]"'\\]/.test(name) || CONTROL_CHARS.test(name)) return `bad characters in section header [${name}]`;
  return undefined;
}

interface PhysicalLine {
  text: string;
  /** The line end that followed it ('' at end of input). */
  eol: string;
  /** A decoding problem found on this line (invalid UTF-8). */
  problem?: string;
}

function splitPhysicalLines(text: string): PhysicalLine[] {
  const lines: PhysicalLine[] = [];
  const re = /\r\n|\n|\r/g;
  let last = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    lines.push({ text: text.slice(last, m.index), eol: m[0] });
    last = m.index + m[0].length;
  }
  if (last < text.length) lines.push({ text: text.slice(last), eol: '' });
  return lines;
}

/** Decodes bytes line by line so that invalid UTF-8 is reported with the line it is on. */
function decodeLines(bytes: Uint8Array): PhysicalLine[] {
  const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  try {
    return splitPhysicalLines(strict.decode(bytes));
  } catch {
    // Fall through: find the bad lines. CR and LF never occur inside a multi-byte sequence.
  }
  const lines: PhysicalLine[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    const b = bytes[i];
    if (i < bytes.length && b !== 0x0a && b !== 0x0d) continue;
    let eol = '';
    let next = i;
    if (i < bytes.length) {
      if (b === 0x0d && bytes[i + 1] === 0x0a) {
        eol = '\r\n';
        next = i + 2;
      } else {
        eol = b === 0x0a ? '\n' : '\r';
        next = i + 1;
      }
    } else if (start === bytes.length) break;
    const chunk = bytes.subarray(start, i);
    try {
      lines.push({ text: strict.decode(chunk), eol });
    } catch {
      lines.push({ text: new TextDecoder('utf-8').decode(chunk), eol, problem: 'invalid UTF-8' });
    }
    start = next;
    i = next - 1;
  }
  return lines;
}

export interface ParseUnitFileOptions {
  /** Name to use in error messages, such as a path; defaults to the unit name. */
  file?: string;
}

/**
 * Parses a unit file. Throws FlotillaError('invalid-input') listing every problem with
 * its `file:line`: a line outside any section, a malformed section header, a line
 * without `=`, an empty key, a NUL byte, invalid UTF-8.
 */
export function parseUnitFile(input: string | Uint8Array, name: string, options: ParseUnitFileOptions = {}): UnitFile {
  const file = options.file ?? name;
  const physical = typeof input === 'string' ? splitPhysicalLines(input) : decodeLines(input);
  const problems: Problem[] = [];
  const unit: UnitFile = { name, sections: [] };

  if (physical.length > 0 && physical[0]!.text.startsWith('\ufeff')) {
    unit.bom = true;
    physical[0]!.text = physical[0]!.text.slice(1);
  }
  const firstEol = physical.find((l) => l.eol !== '')?.eol;
  const eol = (firstEol ?? '\n') as '\n' | '\r\n' | '\r';
  if (eol !== '\n') unit.eol = eol;
  if (physical.length > 0 && physical[physical.length - 1]!.eol === '') unit.finalNewline = false;

  let pendingComments: string[] = [];
  let current: UnitSection | undefined;

  const problem = (line: number, message: string): void => {
    problems.push({ path: '', file, line, message });
  };

  for (let i = 0; i < physical.length; i++) {
    const first = physical[i]!;
    const lineNo = i + 1;
    if (first.problem) {
      problem(lineNo, first.problem);
      continue;
    }
    if (isCommentOrBlank(first.text)) {
      pendingComments.push(first.text);
      continue;
    }

    // Join continuation lines into one logical line, keeping the raw text.
    const raw: string[] = [first.text];
    let continued = endsWithContinuation(first.text);
    let logical = continued ? `${first.text.slice(0, -1)} ` : first.text;
    let badLine: number | undefined;
    while (continued && i + 1 < physical.length) {
      const next = physical[++i]!;
      raw.push(next.text);
      if (next.problem) badLine ??= i + 1;
      // systemd skips comment lines inside a continuation; a blank line ends it.
      if (trimWs(next.text) !== '' && isCommentOrBlank(next.text)) continue;
      continued = endsWithContinuation(next.text);
      logical += continued ? `${next.text.slice(0, -1)} ` : next.text;
    }
    if (badLine !== undefined) {
      problem(badLine, 'invalid UTF-8');
      continue;
    }
    if (logical.includes('\0')) {
      problem(lineNo, 'contains a NUL byte');
      continue;
    }

    const stripped = trimWs(logical);
    const text = raw.join(eol);
    if (stripped.startsWith('[')) {
      if (!stripped.endsWith(']') || stripped.length < 2) {
        problem(lineNo, `malformed section header ${JSON.stringify(stripped)}: expected [Name]`);
        continue;
      }
      const sectionName = stripped.slice(1, -1);
      const bad = sectionNameProblem(sectionName);
      if (bad) {
        problem(lineNo, bad);
        continue;
      }
      current = { name: sectionName, line: lineNo, entries: [], source: { text, key: sectionName, value: '' } };
      if (pendingComments.length > 0) current.comments = pendingComments;
      pendingComments = [];
      unit.sections.push(current);
      continue;
    }

    const eq = stripped.indexOf('=');
    if (eq < 0) {
      problem(lineNo, `expected KEY=VALUE or [Section], got ${JSON.stringify(truncate(stripped))}`);
      continue;
    }
    const key = trimWs(stripped.slice(0, eq));
    const value = trimWs(stripped.slice(eq + 1));
    if (key === '') {
      problem(lineNo, 'empty key before "="');
      continue;
    }
    if (!current) {
      problem(lineNo, `assignment ${key}= outside any section (add a [Section] header above it)`);
      continue;
    }
    const entry: UnitEntry = { key, value, line: lineNo, source: { text, key, value } };
    if (pendingComments.length > 0) entry.comments = pendingComments;
    pendingComments = [];
    current.entries.push(entry);
  }
  if (pendingComments.length > 0) unit.trailing = pendingComments;

  throwIfProblems(problems, `unit file ${file}`);
  return unit;
}

function truncate(s: string, max = 60): string {
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

function keyProblem(key: string): string | undefined {
  if (key === '') return 'empty key';
  if (key !== trimWs(key)) return `key ${JSON.stringify(key)} has leading or trailing whitespace`;
  if (key.includes('=')) return `key ${JSON.stringify(key)} contains "="`;
  if (/[\n\r\0]/.test(key)) return `key ${JSON.stringify(key)} contains a line break or NUL`;
  if (key[0] === '#' || key[0] === ';' || key[0] === '[') return `key ${JSON.stringify(key)} would read as a comment or section header`;
  return undefined;
}

function valueProblem(value: string): string | undefined {
  if (/[\n\r\0]/.test(value)) return 'contains a line break or NUL (a unit file value is one logical line)';
  if (value !== trimWs(value)) return 'has leading or trailing whitespace, which systemd strips';
  if (endsWithContinuation(value)) return 'ends with a backslash, which would continue the line';
  return undefined;
}

/**
 * Serialises a unit file. Elements unchanged since parsing keep their exact text;
 * new or changed ones are written as `[Name]` and `Key=Value`. Throws
 * FlotillaError('invalid-input') for keys or values a unit file cannot represent.
 */
export function serializeUnitFile(unit: UnitFile): string {
  const eol = unit.eol ?? '\n';
  const out: string[] = [];
  const problems: Problem[] = [];
  for (const section of unit.sections) {
    if (section.comments) out.push(...section.comments);
    const bad = sectionNameProblem(section.name);
    if (bad) problems.push({ path: `[${section.name}]`, file: unit.name, message: bad });
    out.push(section.source && section.source.key === section.name ? section.source.text : `[${section.name}]`);
    for (const entry of section.entries) {
      if (entry.comments) out.push(...entry.comments);
      const src = entry.source;
      if (src && src.key === entry.key && src.value === entry.value) {
        out.push(src.text);
        continue;
      }
      const where = `[${section.name}] ${entry.key}`;
      const kp = keyProblem(entry.key);
      if (kp) problems.push({ path: where, file: unit.name, message: kp });
      const vp = valueProblem(entry.value);
      if (vp) problems.push({ path: where, file: unit.name, message: `value ${JSON.stringify(truncate(entry.value))} ${vp}` });
      out.push(`${entry.key}=${entry.value}`);
    }
  }
  if (unit.trailing) out.push(...unit.trailing);
  throwIfProblems(problems, `cannot serialise unit file ${unit.name}`);
  if (out.length === 0) return unit.bom ? '\ufeff' : '';
  return `${unit.bom ? '\ufeff' : ''}${out.join(eol)}${unit.finalNewline === false ? '' : eol}`;
}

/** All sections with this name, in file order (systemd merges repeated sections). */
export function sectionsNamed(unit: UnitFile, section: string): UnitSection[] {
  return unit.sections.filter((s) => s.name === section);
}

/** Every assignment of `key` in `section`, in file order, including empty ones. */
export function getEntries(unit: UnitFile, section: string, key: string): UnitEntry[] {
  const found: UnitEntry[] = [];
  for (const s of unit.sections) {
    if (s.name !== section) continue;
    for (const e of s.entries) if (e.key === key) found.push(e);
  }
  return found;
}

/** The effective value of a single-valued setting: the last assignment wins, as in systemd. */
export function get(unit: UnitFile, section: string, key: string): string | undefined {
  const entries = getEntries(unit, section, key);
  return entries.length === 0 ? undefined : entries[entries.length - 1]!.value;
}

/** Every value of `key` in `section`, in file order, verbatim (empty assignments included). */
export function getAll(unit: UnitFile, section: string, key: string): string[] {
  return getEntries(unit, section, key).map((e) => e.value);
}

/**
 * The entries of a list setting as systemd sees them: an empty assignment resets the
 * list, so only the non-empty assignments after the last empty one count.
 */
export function getList(unit: UnitFile, section: string, key: string): UnitEntry[] {
  const entries = getEntries(unit, section, key);
  let from = 0;
  entries.forEach((e, i) => {
    if (e.value === '') from = i + 1;
  });
  return entries.slice(from);
}

/** A copy of the unit under another name (the text is unchanged). */
export function renameUnit(unit: UnitFile, name: string): UnitFile {
  return { ...unit, name };
}

// ---------------------------------------------------------------------------
// Word splitting

const SIMPLE_ESCAPES: Record<string, string> = {
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  s: ' ',
  '\\': '\\',
  '"': '"',
  "'": "'",
  // systemd accepts escaped separators and `\;` (a literal semicolon in command lines).
  ' ': ' ',
  '\t': '\t',
  ';': ';',
};

/** Decodes the escape starting after the backslash at `value[i]`; returns the text and how many chars it used. */
function unescapeAt(value: string, i: number): { text: string; used: number } {
  const c = value[i];
  if (c === undefined) throw new Error('trailing backslash');
  const simple = SIMPLE_ESCAPES[c];
  if (simple !== undefined) return { text: simple, used: 1 };
  const hex = (digits: number): { text: string; used: number } => {
    const h = value.slice(i + 1, i + 1 + digits);
    if (h.length !== digits || !/^[0-9a-fA-F]+$/.test(h)) throw new Error(`bad escape \\${c}${h}: expected ${digits} hex digits`);
    const cp = parseInt(h, 16);
    if (cp === 0) throw new Error('escape produces a NUL character');
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new Error(`escape \\${c}${h} is not a valid code point`);
    return { text: String.fromCodePoint(cp), used: 1 + digits };
  };
  if (c === 'x') return hex(2);
  if (c === 'u') return hex(4);
  if (c === 'U') return hex(8);
  if (c >= '0' && c <= '7') {
    const o = value.slice(i, i + 3);
    if (!/^[0-7]{3}$/.test(o)) throw new Error(`bad escape \\${o}: expected 3 octal digits`);
    const cp = parseInt(o, 8);
    if (cp === 0) throw new Error('escape produces a NUL character');
    if (cp > 0xff) throw new Error(`bad escape \\${o}: octal escapes stop at \\377`);
    return { text: String.fromCodePoint(cp), used: 3 };
  }
  throw new Error(`unknown escape \\${c}`);
}

/**
 * Splits a setting value into words the way systemd does for word-list settings
 * (ExecStart=, Environment=, ...): words are separated by unquoted whitespace;
 * `"..."` and `'...'` quote (the quotes are removed and may start anywhere in a word);
 * C escapes (`\n`, `\t`, `\xNN`, `\NNN`, `\uNNNN`, `\s`, `\"`, `\\`, ...) are decoded
 * inside and outside quotes. Throws FlotillaError('invalid-input') on an unbalanced
 * quote, a trailing backslash or an unknown escape, which systemd also rejects.
 */
export function splitWords(value: string): string[] {
  const words: string[] = [];
  let i = 0;
  const n = value.length;
  try {
    while (i < n) {
      while (i < n && isWhitespace(value[i]!)) i++;
      if (i >= n) break;
      let word = '';
      let quote: string | undefined;
      for (; i < n; i++) {
        const c = value[i]!;
        if (quote === undefined && isWhitespace(c)) break;
        if (c === '\\') {
          const { text, used } = unescapeAt(value, i + 1);
          word += text;
          i += used;
        } else if (quote !== undefined) {
          if (c === quote) quote = undefined;
          else word += c;
        } else if (c === '"' || c === "'") {
          quote = c;
        } else {
          word += c;
        }
      }
      if (quote !== undefined) throw new Error(`unbalanced ${quote === '"' ? 'double' : 'single'} quote`);
      words.push(word);
    }
  } catch (err) {
    throw new FlotillaError('invalid-input', `${(err as Error).message} in ${JSON.stringify(truncate(value))}`);
  }
  return words;
}

/** The inverse of splitWords for one word: quotes it only when needed. */
export function quoteWord(word: string): string {
  if (word !== '' && !/[\s"'\\]/.test(word) && !CONTROL_CHARS.test(word)) return word;
  let out = '"';
  for (const ch of word) {
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (CONTROL_CHARS.test(ch)) out += `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

// ---------------------------------------------------------------------------
// Unit names

/** Unit types a unit file can define (scope units exist only at runtime). */
export const UNIT_TYPES = [
  'service',
  'socket',
  'device',
  'mount',
  'automount',
  'swap',
  'target',
  'path',
  'timer',
  'slice',
] as const;
export type UnitType = (typeof UNIT_TYPES)[number];

export interface UnitNameInfo {
  /** The full name, e.g. `web@1.service` (%n). */
  name: string;
  /** The name without the type suffix, e.g. `web@1` (%N). */
  stem: string;
  /** The part before `@`, or the whole stem (%p). */
  prefix: string;
  /** The part between `@` and the suffix; '' for plain units and templates (%i). */
  instance: string;
  /** The template this name comes from (`web@.service`), for templates and instances. */
  template?: string;
  kind: 'plain' | 'template' | 'instance';
  type: UnitType;
}

/** systemd's UNIT_NAME_MAX (256, including the terminating NUL). */
const UNIT_NAME_MAX = 255;
const PREFIX_CHARS = /^[A-Za-z0-9:_.\\-]+$/;
const INSTANCE_CHARS = /^[A-Za-z0-9:_.\\@-]+$/;

/** Why `name` is not a valid unit name, or undefined when it is. */
export function unitNameProblem(name: string): string | undefined {
  try {
    unitNameInfo(name);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Parses and validates a unit name (systemd.unit(5) rules): `prefix.type`,
 * `prefix@.type` (template) or `prefix@instance.type` (instance); letters, digits and
 * `:-_.\` (plus `@` in instances); at most 255 characters. Throws
 * FlotillaError('invalid-input').
 */
export function unitNameInfo(name: string): UnitNameInfo {
  const fail = (why: string): never => {
    throw new FlotillaError('invalid-input', `invalid unit name ${JSON.stringify(truncate(name))}: ${why}`);
  };
  if (name.length === 0) fail('empty');
  if (name.length > UNIT_NAME_MAX) fail(`longer than ${UNIT_NAME_MAX} characters`);
  const dot = name.lastIndexOf('.');
  if (dot < 0) fail(`no type suffix (one of .${UNIT_TYPES.join(' .')})`);
  const type = name.slice(dot + 1);
  if (!(UNIT_TYPES as readonly string[]).includes(type)) fail(`unknown type .${type} (expected one of .${UNIT_TYPES.join(' .')})`);
  const stem = name.slice(0, dot);
  const at = stem.indexOf('@');
  const prefix = at < 0 ? stem : stem.slice(0, at);
  if (prefix === '') fail('empty name before the suffix or "@"');
  if (!PREFIX_CHARS.test(prefix)) fail(`${JSON.stringify(prefix)} may contain only letters, digits and ":-_.\\"`);
  if (at < 0) return { name, stem, prefix, instance: '', kind: 'plain', type: type as UnitType };
  const instance = stem.slice(at + 1);
  const template = `${prefix}@.${type}`;
  if (instance === '') return { name, stem, prefix, instance, template, kind: 'template', type: type as UnitType };
  if (!INSTANCE_CHARS.test(instance)) fail(`instance ${JSON.stringify(instance)} may contain only letters, digits and ":-_.\\@"`);
  return { name, stem, prefix, instance, template, kind: 'instance', type: type as UnitType };
}
