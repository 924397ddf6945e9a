/**
 * `write_files` under /run. coreos-cloudinit ran at every boot, so a file it wrote into /run
 * (emptied at each boot) was always there. cloud-init writes files on the first boot only, and
 * Ignition writes the root file system before the booted system mounts its own /run. The
 * translation keeps a persistent copy and has systemd-tmpfiles copy it into /run at every boot;
 * unit files under /run/systemd are read before tmpfiles runs, so those move to /etc/systemd.
 */
import type { LegacyFile } from './model';

/** Where the persistent copies of /run files live. */
export const RUN_COPY_ROOT = '/etc/flotilla/run';
/** The tmpfiles.d file that copies them into /run at every boot. */
export const RUN_TMPFILES_PATH = '/etc/tmpfiles.d/flotilla-run.conf';

export type RunPlacement =
  | { kind: 'persistent' }
  /** A unit or drop-in under /run/systemd: its lasting place under /etc/systemd. */
  | { kind: 'unit'; etcPath: string }
  /** Any other file: kept at `copyPath`, copied to `runPath` at every boot. */
  | { kind: 'run'; runPath: string; copyPath: string }
  /** Under /run, but no tmpfiles.d line can copy it there. */
  | { kind: 'unexpressible'; why: string };

/** Where a written file lands, for files under /run (and /var/run, its link). */
export function runPlacement(path: string): RunPlacement {
  const m = /^\/(?:var\/)?run(\/.*)$/.exec(path);
  if (!m) return { kind: 'persistent' };
  const rest = m[1]!;
  if (/^\/systemd\/(system|network)\//.test(rest)) return { kind: 'unit', etcPath: `/etc${rest}` };
  // A tmpfiles.d line cannot carry a line break, and its last field loses edge blanks.
  if (/[\x00-\x1f\x7f]|\s$/.test(rest)) return { kind: 'unexpressible', why: 'its path holds a control character or ends in a blank, which a tmpfiles.d line cannot carry' };
  return { kind: 'run', runPath: `/run${rest}`, copyPath: `${RUN_COPY_ROOT}${rest}` };
}

/**
 * tmpfiles.d(5) lines: `C` copies the persistent file into /run when it is missing there (at
 * every boot, since /run starts empty). The path field is quoted; the source is the rest of the
 * line, taken as written. `%` starts a specifier in both, so it is doubled.
 */
export function runTmpfiles(files: ReadonlyArray<{ runPath: string; copyPath: string }>): string {
  const quote = (p: string): string => `"${p.replace(/[\\"]/g, (c) => `\\${c}`).replace(/%/g, '%%')}"`;
  const lines = files.map((f) => `C ${quote(f.runPath)} - - - - ${f.copyPath.replace(/%/g, '%%')}`);
  return `# Written by flotilla convert: files the CoreOS cloud-config wrote into /run at every boot.\n${lines.join('\n')}\n`;
}

/** The /run files of a config with their persistent copies, in file order. */
export function runCopies(files: readonly LegacyFile[]): Array<{ file: LegacyFile; runPath: string; copyPath: string }> {
  const out: Array<{ file: LegacyFile; runPath: string; copyPath: string }> = [];
  for (const file of files) {
    const p = runPlacement(file.path);
    if (p.kind === 'run') out.push({ file, runPath: p.runPath, copyPath: p.copyPath });
  }
  return out;
}
