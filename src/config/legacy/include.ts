/**
 * `.include PATH` in unit content. systemd of the CoreOS era read the named file in place of
 * the line (deprecated later; systemd 256 no longer reads it), and Ignition rejects the line.
 * The translation keeps what systemd did: a unit that includes its own packaged file (the
 * usual `docker.service` override) becomes a drop-in over that file; a file this config itself
 * writes is inlined. Anything else cannot be expressed and is refused, saying why.
 */
import type { LegacyConfig } from './model';
import type { LegacySource } from './source';
import { unitKind, unitPath } from './systemd';

/** The drop-in a self-including unit becomes. */
export const INCLUDE_DROPIN_NAME = '10-coreos-include.conf';

/** Where the packaged copy of a unit may live (the paths `.include` named in practice). */
const PACKAGED_UNIT_DIRS = ['/usr/lib/systemd/system', '/lib/systemd/system', '/usr/lib64/systemd/system', '/etc/systemd/system'];

const INCLUDE_LINE = /^[ \t]*\.include[ \t]+(\S.*?)[ \t]*$/;

/** Whether a line of unit text is an `.include` directive. */
export function isIncludeLine(line: string): boolean {
  return INCLUDE_LINE.test(line.replace(/\r$/, ''));
}

export function resolveIncludes(src: LegacySource, config: LegacyConfig): void {
  // What this config writes, by path: what an `.include` of that path read on the machine.
  const written = new Map<string, string>();
  for (const f of config.writeFiles) written.set(f.path, f.bytes.toString('utf8'));
  for (const unit of config.units) if (unit.content && !unit.runtime) written.set(unitPath(unit.name, unitKind(unit.name)!, false), unit.content.value);

  for (const unit of config.units) {
    if (!unit.content) continue;
    const lines = unit.content.value.split('\n');
    const includes = lines.flatMap((l, i) => (isIncludeLine(l) ? [{ index: i, target: INCLUDE_LINE.exec(l.replace(/\r$/, ''))![1]! }] : []));
    if (includes.length === 0) continue;
    const contentAt = unit.content.at;
    const lineAt = (index: number) => ({ ...contentAt, ...(contentAt.line !== undefined ? { line: contentAt.line + 1 + index, column: 1 } : {}) });
    const selfPackaged = includes.length === 1 && isPackagedCopyOf(includes[0]!.target, unit.name);
    if (selfPackaged && !written.has(includes[0]!.target)) {
      const inc = includes[0]!;
      if (hasSettings(lines.slice(0, inc.index))) {
        src.error(lineAt(inc.index), `\`.include ${inc.target}\`: settings before the line would have to come after the packaged unit in a drop-in, which changes their meaning; move them below the \`.include\``);
        continue;
      }
      const rest = lines.slice(inc.index + 1).join('\n');
      unit.dropIns.unshift({ name: INCLUDE_DROPIN_NAME, content: ensureSection(rest, lines.slice(0, inc.index)), at: lineAt(inc.index) });
      delete unit.content;
      src.warn(lineAt(inc.index), `\`.include ${inc.target}\` (no longer read by systemd, refused by Ignition): written as drop-in ${unit.name}.d/${INCLUDE_DROPIN_NAME} over the packaged ${unit.name}, which is what systemd made of it`);
      continue;
    }
    let ok = true;
    const out: string[] = [];
    for (const [i, line] of lines.entries()) {
      if (!isIncludeLine(line)) {
        out.push(line);
        continue;
      }
      const target = INCLUDE_LINE.exec(line.replace(/\r$/, ''))![1]!;
      const text = written.get(target);
      if (text === undefined) {
        ok = false;
        src.error(
          lineAt(i),
          `\`.include ${target}\` cannot be translated: this config does not write ${target}, and ${unit.name} is not the unit it names, so neither inlining nor a drop-in over it can express it; put the included settings into the content`,
        );
        continue;
      }
      if (text.split('\n').some(isIncludeLine)) {
        ok = false;
        src.error(lineAt(i), `\`.include ${target}\`: that file includes another file in turn; inline it by hand`);
        continue;
      }
      out.push(...text.replace(/\n$/, '').split('\n'));
      src.warn(lineAt(i), `\`.include ${target}\` (no longer read by systemd, refused by Ignition): inlined from this config's own ${target}`);
    }
    if (ok) unit.content = { ...unit.content, value: out.join('\n') };
  }
}

function isPackagedCopyOf(target: string, unitName: string): boolean {
  const slash = target.lastIndexOf('/');
  return target.slice(slash + 1) === unitName && PACKAGED_UNIT_DIRS.includes(target.slice(0, slash));
}

function hasSettings(lines: readonly string[]): boolean {
  return lines.some((l) => {
    const t = l.trim();
    return t !== '' && !t.startsWith('#') && !t.startsWith(';') && !t.startsWith('[');
  });
}

/** A drop-in must open with a section: settings right after `.include` belonged to the last section opened before it. */
function ensureSection(rest: string, before: readonly string[]): string {
  const first = rest.split('\n').find((l) => l.trim() !== '' && !l.trim().startsWith('#') && !l.trim().startsWith(';'));
  if (first === undefined || first.trim().startsWith('[')) return rest;
  const header = [...before].reverse().find((l) => l.trim().startsWith('['));
  return `${header ? header.trim() : '[Service]'}\n${rest}`;
}

