/**
 * YAML parsing that keeps source positions, so a problem found on the parsed data
 * (by field path such as `nodes[2].name`) can be reported with its file and line.
 */
import { isMap, isScalar, isSeq, Lexer, parseDocument, Parser, visit, type Document, type Node as YamlNode } from 'yaml';
import { FlotillaError, type Problem } from '../errors';

export interface YamlSource {
  file: string;
  data: unknown;
  /** Adds file/line/column to problems whose path can be found in the document. */
  locate(problems: readonly Problem[]): Problem[];
}

/** Splits `a.b[2]."c.d"` into ['a', 'b', 2, 'c.d']. */
export function splitPath(p: string): Array<string | number> {
  const out: Array<string | number> = [];
  const re = /\[(\d+)\]|"((?:[^"\\]|\\.)*)"|([^.[\]"]+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(p))) {
    if (m[1] !== undefined) out.push(Number(m[1]));
    else if (m[2] !== undefined) out.push(JSON.parse(`"${m[2]}"`) as string);
    else out.push(m[3]!);
  }
  return out;
}

/** The range of the deepest node on `segments` that exists; a key's own position when the path ends at a key. */
function rangeOf(doc: Document, segments: Array<string | number>, atKey: boolean): [number, number] | undefined {
  let node: unknown = doc.contents;
  let best: [number, number] | undefined = (node as YamlNode | null)?.range ? [(node as YamlNode).range![0], (node as YamlNode).range![1]] : undefined;
  for (const seg of segments) {
    if (isMap(node)) {
      const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(seg));
      if (!pair) return best;
      const key = pair.key as YamlNode;
      if (key.range) best = [key.range[0], key.range[1]];
      node = pair.value;
      // Report type errors at the value; unknown-key errors stay at the key.
      if (!atKey && seg === segments[segments.length - 1] && (node as YamlNode | null)?.range && !isMap(node) && !isSeq(node)) {
        const r = (node as YamlNode).range!;
        best = [r[0], r[1]];
      }
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
      const r = (node as YamlNode | null)?.range;
      if (!r) return best;
      best = [r[0], r[1]];
    } else {
      return best;
    }
  }
  return best;
}

/**
 * Far deeper than any spec or cloud-config, and far shallower than where the yaml package's
 * recursive composer runs out of stack. Past that point its error depends on how much stack
 * the caller had left, so the same text gave different problems from one call to the next.
 */
export const MAX_YAML_NESTING = 100;

/**
 * 1-based line and column of each offset in `text`, lines ending at LF as in the yaml
 * package. Its own LineCounter misses the line end after a block scalar while recovering
 * from a syntax error, and then puts later errors past the end of the line before.
 */
export function positionsIn(text: string): (offset: number) => { line: number; column: number } {
  const starts = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return (offset) => {
    const at = Math.max(0, Math.min(offset, text.length));
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= at) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: at - starts[lo]! + 1 };
  };
}

/** Where `text` first nests collections more than MAX_YAML_NESTING deep, found without recursion. */
export function excessiveNesting(text: string): { offset: number; message: string } | undefined {
  const parser = new Parser();
  for (const lexeme of new Lexer().lex(text)) {
    for (const _token of parser.next(lexeme)) {
      // only the parser's stack of open collections matters here
    }
    // The bottom of the stack is the document itself.
    if (parser.stack.length - 1 > MAX_YAML_NESTING) return { offset: parser.offset, message: `collections nested more than ${MAX_YAML_NESTING} deep` };
  }
  return undefined;
}

/** The first alias that names no anchor before it, else the first alias: what toJS() fails on. */
function aliasOffset(doc: Document): number | undefined {
  let first: number | undefined;
  let unresolved: number | undefined;
  visit(doc, {
    Alias(_key, node) {
      first ??= node.range?.[0];
      if (unresolved === undefined && node.resolve(doc) === undefined) unresolved = node.range?.[0];
    },
  });
  return unresolved ?? first;
}

/**
 * Parses YAML text. Syntax errors (and duplicate keys) throw FlotillaError('invalid-input')
 * with file, line and column for each.
 */
export function parseYamlSource(text: string, file: string): YamlSource {
  const position = positionsIn(text);
  const deep = excessiveNesting(text);
  if (deep) {
    const { line, column } = position(deep.offset);
    throw new FlotillaError('invalid-input', `${file}: YAML syntax error\n  ${file}:${line}:${column}: ${deep.message}`, [{ path: '', message: deep.message, file, line, column }]);
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, strict: true });
  const syntax: Problem[] = [...doc.errors, ...doc.warnings.filter((w) => w.code !== 'TAG_RESOLVE_FAILED')].map((e) => ({
    path: '',
    message: e.message.split('\n')[0]!,
    file,
    ...position(e.pos[0]),
  }));
  if (doc.errors.length > 0) {
    throw new FlotillaError('invalid-input', `${file}: YAML syntax error\n${syntax.map((p) => `  ${p.file}:${p.line}:${p.column}: ${p.message}`).join('\n')}`, syntax);
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // An alias without an anchor, or too many aliases: point at the alias.
    const at = aliasOffset(doc);
    const where = at === undefined ? {} : position(at);
    throw new FlotillaError('invalid-input', `${file}: ${(err as Error).message}`, [{ path: '', message: (err as Error).message, file, ...where }]);
  }
  return {
    file,
    data,
    locate(problems) {
      return problems.map((p) => {
        const r = rangeOf(doc, splitPath(p.path), p.atKey === true);
        return r ? { ...p, file, ...position(r[0]) } : { ...p, file };
      });
    },
  };
}
