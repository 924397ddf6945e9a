/**
 * YAML parsing that keeps source positions, so a problem found on the parsed data
 * (by field path such as `nodes[2].name`) can be reported with its file and line.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
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
 * Parses YAML text. Syntax errors (and duplicate keys) throw FlotillaError('invalid-input')
 * with file, line and column for each.
 */
export function parseYamlSource(text: string, file: string): YamlSource {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true, strict: true });
  const syntax: Problem[] = [...doc.errors, ...doc.warnings.filter((w) => w.code !== 'TAG_RESOLVE_FAILED')].map((e) => ({
    path: '',
    message: e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''),
    file,
    line: e.linePos?.[0].line,
    column: e.linePos?.[0].col,
  }));
  if (doc.errors.length > 0) {
    throw new FlotillaError('invalid-input', `${file}: YAML syntax error\n${syntax.map((p) => `  ${p.file}:${p.line}:${p.column}: ${p.message}`).join('\n')}`, syntax);
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new FlotillaError('invalid-input', `${file}: ${(err as Error).message}`, [{ path: '', message: (err as Error).message, file }]);
  }
  return {
    file,
    data,
    locate(problems) {
      return problems.map((p) => {
        const r = rangeOf(doc, splitPath(p.path), p.atKey === true);
        if (!r) return { ...p, file };
        const pos = lineCounter.linePos(r[0]);
        return { ...p, file, line: pos.line, column: pos.col };
      });
    },
  };
}
