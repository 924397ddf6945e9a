/**
 * The converter's warnings for a person: identical warnings become one line listing their
 * places, what is not carried over at all comes first, and a count ends the list. Callers that
 * need every occurrence (`--json`) use the warnings themselves.
 */
import { formatProblem, type Problem } from '../../errors';

export type WarningKind = 'dropped' | 'changed';

/** 'dropped': the output lacks something the input had; 'changed': it is there, but behaves differently. */
export function warningKind(message: string): WarningKind {
  return /^not translated|\bignored\b|does nothing|never had an effect|is gone after a reboot|cannot be kept|takes effect only once/.test(message) ? 'dropped' : 'changed';
}

export interface WarningGroup {
  kind: WarningKind;
  message: string;
  places: Problem[];
}

/** Warnings with the same message, in order of first appearance; dropped before changed. */
export function groupWarnings(warnings: readonly Problem[]): WarningGroup[] {
  const groups = new Map<string, WarningGroup>();
  for (const w of warnings) {
    let g = groups.get(w.message);
    if (!g) groups.set(w.message, (g = { kind: warningKind(w.message), message: w.message, places: [] }));
    g.places.push(w);
  }
  const all = [...groups.values()];
  return [...all.filter((g) => g.kind === 'dropped'), ...all.filter((g) => g.kind === 'changed')];
}

/** One line per group (`file:units[0,2,5].command (lines 12, 30, 41): …`), then the count line. */
export function summarizeWarnings(warnings: readonly Problem[]): string[] {
  if (warnings.length === 0) return [];
  const groups = groupWarnings(warnings);
  const lines = groups.map((g) => (g.places.length === 1 ? formatProblem(g.places[0]!) : formatGroup(g)));
  const dropped = groups.filter((g) => g.kind === 'dropped').reduce((n, g) => n + g.places.length, 0);
  const count = `${warnings.length} warning${warnings.length === 1 ? '' : 's'}${groups.length < warnings.length ? ` (${groups.length} distinct)` : ''}: ${dropped} not carried over, ${warnings.length - dropped} carried over differently`;
  return [...lines, count];
}

function formatGroup(g: WarningGroup): string {
  const file = g.places[0]!.file;
  const lines = [...new Set(g.places.flatMap((p) => (p.line !== undefined ? [p.line] : [])))];
  const lineText = lines.length === 0 ? '' : ` (line${lines.length === 1 ? '' : 's'} ${listed(lines.map(String), 12)})`;
  return `${file ? `${file}:` : ''}${placesOf(g.places.map((p) => p.path))}${lineText}: ${g.message}`;
}

/** `units[0,2,5].command` when the paths differ in one index only; else the paths listed. */
function placesOf(paths: readonly string[]): string {
  const unique = [...new Set(paths)];
  if (unique.length === 1) return unique[0]!;
  const shapes = unique.map((p) => p.replace(/\[\d+\]/g, '[]'));
  if (shapes.every((s) => s === shapes[0])) {
    const indices = unique.map((p) => [...p.matchAll(/\[(\d+)\]/g)].map((m) => m[1]!));
    const differing = indices[0]!.map((_, i) => new Set(indices.map((ix) => ix[i])).size > 1);
    if (differing.filter(Boolean).length === 1) {
      const at = differing.indexOf(true);
      let n = -1;
      return shapes[0]!.replace(/\[\]/g, () => {
        n++;
        return n === at ? `[${listed([...new Set(indices.map((ix) => ix[at]!))], 20, ',')}]` : `[${indices[0]![n]}]`;
      });
    }
  }
  return listed(unique.map((p) => p || '(document)'), 6);
}

function listed(items: readonly string[], max: number, sep = ', '): string {
  return items.length <= max ? items.join(sep) : `${items.slice(0, max).join(sep)}${sep}… (${items.length - max} more)`;
}
