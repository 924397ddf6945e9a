/**
 * Reading a legacy cloud-config from its YAML syntax tree (not from plain JS data), so that
 * every problem carries the line it comes from and scalars keep the text they were written as.
 */
import { isAlias, isMap, isScalar, isSeq, parseDocument, YAMLParseError, type Document, type Node, type Pair } from 'yaml';
import type { Problem } from '../../errors';
import { excessiveNesting, positionsIn } from '../yaml-source';

/** A place in the source: field path plus line and column (1-based) when known. */
export interface Where {
  path: string;
  line?: number;
  column?: number;
}

/** One `key: value` of a mapping, with its key as written and both positions. */
export interface Field {
  /** The key as written, e.g. `advertise-client-urls`. */
  key: string;
  /** Path of the value, e.g. `coreos.etcd2.advertise-client-urls`. */
  path: string;
  /** Where the key is written: the place to point at for "unknown key" and "not translated". */
  keyAt: Where;
  /** Where the value is written (the key's place when the value is empty). */
  at: Where;
  /** The value with aliases resolved; null for an empty value. */
  value: Node | null;
}

/** coreos-cloudinit read `advertise-client-urls` and `advertise_client_urls` alike. */
export function normalizeKey(key: string): string {
  return key.replaceAll('-', '_');
}

/** An absent value, `key:` with nothing after it, or an explicit null (`~`, `null`). */
export function isEmpty(node: Node | null): boolean {
  return node === null || (isScalar(node) && (node.value === null || node.value === undefined));
}

export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return parent ? `${parent}.${key}` : key;
}

/**
 * The parsed document plus everything found wrong with it so far. Readers take a node and the
 * path it sits at, record problems here, and return undefined when a value is unusable.
 */
export class LegacySource {
  readonly errors: Problem[] = [];
  readonly warnings: Problem[] = [];
  readonly doc: Document;
  private readonly position: (offset: number) => { line: number; column: number };

  constructor(
    readonly text: string,
    readonly file: string,
  ) {
    // Positions are counted here: the yaml package's LineCounter can miss a line end while recovering from errors.
    this.position = positionsIn(text);
    // Too deep to parse the same way every time: an empty document with that one syntax error.
    const deep = excessiveNesting(text);
    // YAML 1.1 because coreos-cloudinit used go-yaml v1: `enable: yes` is a boolean there.
    this.doc = parseDocument(deep ? '' : text, { version: '1.1', uniqueKeys: true, prettyErrors: false });
    if (deep) this.doc.errors.push(new YAMLParseError([deep.offset, deep.offset + 1], 'RESOURCE_EXHAUSTION', deep.message));
    const lines = text.split('\n');
    for (const e of this.doc.errors) {
      const at = this.position(e.pos[0]);
      this.errors.push({
        path: '',
        message: `YAML syntax error: ${e.code === 'MULTIPLE_DOCS' ? 'the file holds more than one YAML document' : firstSentence(e.message)}${templateHint(lines[at.line - 1] ?? '')}`,
        file,
        ...at,
      });
    }
    for (const w of this.doc.warnings) {
      this.warnings.push({ path: '', message: `YAML: ${firstSentence(w.message)}`, file, ...this.position(w.pos[0]) });
    }
  }

  where(path: string, node: Node | null | undefined, fallback?: Where): Where {
    const offset = node?.range?.[0];
    if (offset === undefined) return fallback ? { ...fallback, path } : { path };
    return { path, ...this.position(offset) };
  }

  error(at: Where, message: string): void {
    this.errors.push(this.problem(at, message));
  }

  warn(at: Where, message: string): void {
    this.warnings.push(this.problem(at, message));
  }

  problem(at: Where, message: string): Problem {
    return { path: at.path, message, file: this.file, ...(at.line !== undefined ? { line: at.line, column: at.column } : {}) };
  }

  /** Follows `*alias` to the anchored node. */
  deref(node: unknown): Node | null {
    if (node === null || node === undefined) return null;
    if (isAlias(node)) return (node.resolve(this.doc) as Node | undefined) ?? null;
    return node as Node;
  }

  /**
   * The fields of a mapping, keyed by normalised name (`-` read as `_`). Keys not in `known`
   * are reported as warnings (coreos-cloudinit ignored them too) and left out.
   */
  mapping(node: Node | null, path: string, at: Where, known: readonly string[] | 'any'): Map<string, Field> | undefined {
    if (isEmpty(node)) return new Map();
    if (!isMap(node)) {
      this.error(at, `expected a mapping (key: value lines), found ${describe(node)}`);
      return undefined;
    }
    const fields = new Map<string, Field>();
    for (const pair of node.items as Array<Pair<unknown, unknown>>) {
      const keyNode = this.deref(pair.key);
      if (!isScalar(keyNode) || keyNode.value === null || typeof keyNode.value === 'object') {
        // The key as written (an alias may lead nowhere), else the mapping: an empty key has no place of its own.
        this.error(this.where(path, isAlias(pair.key) ? pair.key : keyNode, at), 'mapping keys must be plain strings');
        continue;
      }
      const key = String(keyNode.value);
      const fieldPath = childPath(path, key);
      const keyAt = this.where(fieldPath, keyNode);
      if (key === '<<') {
        this.error(keyAt, 'YAML merge keys (<<) are not supported here; write the keys out');
        continue;
      }
      const name = normalizeKey(key);
      if (known !== 'any' && !known.includes(name)) {
        this.warn(keyAt, `unknown key \`${key}\`: coreos-cloudinit ignored it, so it is not translated`);
        continue;
      }
      const earlier = fields.get(name);
      if (earlier) {
        this.error(keyAt, `\`${key}\` is the same setting as \`${earlier.key}\` (line ${earlier.keyAt.line ?? '?'}); give it once`);
        continue;
      }
      const value = this.deref(pair.value);
      fields.set(name, { key, path: fieldPath, keyAt, at: this.where(fieldPath, value, keyAt), value });
    }
    return fields;
  }

  /** Every field of a mapping value, whatever its keys. */
  settings(field: Field): Map<string, Field> | undefined {
    return this.mapping(field.value, field.path, field.at, 'any');
  }

  /** Items of a sequence, each with its path and place; undefined (and an error) for a non-sequence. */
  sequence(field: Field): Array<{ node: Node | null; path: string; at: Where }> | undefined {
    const node = field.value;
    if (isEmpty(node)) return [];
    if (!isSeq(node)) {
      this.error(field.at, `expected a list, found ${this.describeNonText(node)}`);
      return undefined;
    }
    return node.items.map((item, i) => {
      const itemNode = this.deref(item);
      const path = childPath(field.path, i);
      return { node: itemNode, path, at: this.where(path, itemNode, field.at) };
    });
  }

  /**
   * A text value. Plain scalars that YAML 1.1 reads as numbers or booleans keep the text they
   * were written as (`permissions: 0644`, `reboot-strategy: off`), as go-yaml did for string fields.
   */
  string(field: Field | undefined): string | undefined {
    if (!field || field.value === null) return undefined;
    return this.scalarText(field.value, field.at);
  }

  scalarText(node: Node, at: Where): string | undefined {
    if (!isScalar(node)) {
      this.error(at, `expected text, found ${this.describeNonText(node)}`);
      return undefined;
    }
    const v = node.value;
    if (v === null || v === undefined) return undefined;
    if (typeof v === 'string') {
      // A `\ud800` escape gives half a character: no file, host name or data URL can hold it.
      if (LONE_SURROGATE.test(v)) {
        this.error(at, 'contains a lone UTF-16 surrogate (an escape such as \\ud800 without its pair), which is not text');
        return undefined;
      }
      return v;
    }
    if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return node.source ?? String(v);
    this.error(at, `expected text, found ${describe(node)}`);
    return undefined;
  }

  /**
   * A mapping or list where text belongs, naming the usual cause: `{{token}}` left by a
   * template engine, which YAML reads as a mapping.
   */
  describeNonText(node: Node | null): string {
    const written = node?.range ? this.text.slice(node.range[0], node.range[1]).trim() : '';
    if (/^\{\{[^{}]*\}\}$/.test(written)) {
      return `a mapping: ${written} looks like an unrendered template placeholder (YAML reads {{…}} as a mapping); render the template first, or quote the value`;
    }
    return describe(node);
  }

  /**
   * Values that must be plain text, numbers or booleans (the settings of a section read only to
   * report it): anything else is an error at its place, as it is where values are translated.
   */
  scalarsOnly(fields: ReadonlyMap<string, Field>): void {
    for (const f of fields.values()) {
      if (f.value !== null && !isScalar(f.value)) this.error(f.at, `expected text, found ${this.describeNonText(f.value)}`);
    }
  }

  /** Text, or the bytes of a `!!binary` scalar. */
  stringOrBytes(field: Field | undefined): string | Buffer | undefined {
    if (field && isScalar(field.value) && field.value.value instanceof Uint8Array) return Buffer.from(field.value.value);
    return this.string(field);
  }

  boolean(field: Field | undefined): boolean | undefined {
    if (!field || field.value === null) return undefined;
    const node = field.value;
    if (isScalar(node) && node.value === null) return undefined;
    if (isScalar(node) && typeof node.value === 'boolean') return node.value;
    this.error(field.at, `expected true or false, found ${this.describeNonText(node)}`);
    return undefined;
  }

  number(field: Field | undefined, integer: boolean): number | undefined {
    if (!field || field.value === null) return undefined;
    const node = field.value;
    if (isScalar(node) && node.value === null) return undefined;
    if (isScalar(node) && typeof node.value === 'number' && (!integer || Number.isInteger(node.value))) return node.value;
    this.error(field.at, `expected ${integer ? 'an integer' : 'a number'}, found ${this.describeNonText(node)}`);
    return undefined;
  }

  strings(field: Field | undefined): string[] | undefined {
    if (!field) return undefined;
    const items = this.sequence(field);
    if (!items) return undefined;
    const out: string[] = [];
    for (const item of items) {
      if (item.node === null) {
        this.error(item.at, 'empty list item');
        continue;
      }
      const s = this.scalarText(item.node, item.at);
      if (s !== undefined) out.push(s);
    }
    return out;
  }

  /** Calls `visit` with every text scalar in the document and its path. */
  eachText(visit: (text: string, at: Where) => void): void {
    const walk = (node: unknown, path: string): void => {
      if (isAlias(node)) return; // the anchored node is visited where it is defined
      if (isScalar(node)) {
        if (typeof node.value === 'string') visit(node.value, this.where(path, node));
      } else if (isMap(node)) {
        for (const pair of node.items as Array<Pair<unknown, unknown>>) {
          const key = isScalar(pair.key) ? String(pair.key.value) : '?';
          walk(pair.value, childPath(path, key));
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, i) => walk(item, childPath(path, i)));
      }
    };
    walk(this.doc.contents, '');
  }
}

const PLACEHOLDER = /\$\{[^}\n]*\}|\{\{[^}\n]*\}\}|\{%[^%\n]*%\}|^\$[A-Za-z_]\w*$/;

/**
 * `; X looks like an unrendered template placeholder…` when `text` holds one (Terraform's
 * `${var}`, Jinja/Handlebars `{{x}}`, `{% … %}`, or a value that is just `$name`), else ''.
 */
export function templateHint(text: string): string {
  const m = PLACEHOLDER.exec(text.trim());
  return m ? `; \`${m[0]}\` looks like an unrendered template placeholder: render the template (Terraform, Heat, Jinja…) first` : '';
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** The parser's message without the position and source excerpt it appends (we report those separately). */
function firstSentence(message: string): string {
  return message.split(/ at line \d+, column \d+/)[0]!.split('\n')[0]!.trim();
}

export function describe(node: Node | null): string {
  if (node === null) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'null';
    if (typeof v === 'boolean') return `boolean ${node.source ?? String(v)}`;
    if (typeof v === 'number') return `number ${node.source ?? String(v)}`;
    if (v instanceof Uint8Array) return 'binary data';
    return `text ${JSON.stringify(String(v).length > 40 ? `${String(v).slice(0, 40)}…` : String(v))}`;
  }
  return 'an unsupported YAML node';
}
