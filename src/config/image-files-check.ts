/**
 * Ignition entries that cannot work on the node image: Ignition refuses to replace a file that
 * exists unless the entry says `"overwrite": true` (first boot stops with "A file exists there
 * already and overwrite is false"), and nothing can be created below a path that is a file.
 * cloud-config's write_files always overwrite, so only Ignition configs are checked. The list of
 * what the image ships: image-files.ts (checked against the recipe and a real image by tests).
 */
import type { Problem } from '../errors';
import { NODE_IMAGE_FILES } from './image-files';
import type { ResolvedSpec } from './spec';

/** The storage lists whose entries land on a path (all three have `overwrite`). */
export const STORAGE_KINDS = ['files', 'directories', 'links'] as const;
export type StorageKind = (typeof STORAGE_KINDS)[number];

/** Where a merged storage entry came from: the snippet that last wrote it, or the rendered template. */
export interface EntryOrigin {
  /** Index in spec.snippets and the spec field that holds it (`snippets[0].contents` or `snippets[0].file`). */
  snippet?: { index: number; field: string; source: string };
  /** The entry's index in that snippet's (or the template's) list. */
  entry: number;
}

export type Origins = Map<string, EntryOrigin>;

export const originKey = (kind: StorageKind, p: string): string => `${kind}\0${p}`;

export interface ImageFileConflict {
  kind: StorageKind;
  /** Index in the merged config's list. */
  index: number;
  path: string;
  /** `exists`: the image has a file at `path`; `below-file`: `parent` is a file in the image. */
  reason: 'exists' | 'below-file';
  parent?: string;
  /** What the entry says about overwrite (undefined: nothing, Ignition's default false). */
  overwrite: unknown;
  origin: EntryOrigin | undefined;
}

/** The node image's files, or none on platforms that boot other images (aws: a stock AMI). */
export function defaultImageFiles(spec: Pick<ResolvedSpec, 'platform'>): readonly string[] {
  return spec.platform === 'local' || spec.platform === 'libvirt' ? NODE_IMAGE_FILES : [];
}

function ancestors(p: string): string[] {
  const out: string[] = [];
  let at = p.replace(/\/+$/, '');
  for (;;) {
    const i = at.lastIndexOf('/');
    if (i <= 0) return out;
    at = at.slice(0, i);
    out.push(at);
  }
}

/** Every storage entry of a merged Ignition config that the image's files make fail at first boot. */
export function imageFileConflicts(config: unknown, imageFiles: readonly string[], origins: Origins = new Map()): ImageFileConflict[] {
  if (imageFiles.length === 0 || typeof config !== 'object' || config === null) return [];
  const shipped = new Set(imageFiles);
  const storage = (config as Record<string, unknown>).storage as Record<string, unknown> | undefined;
  if (typeof storage !== 'object' || storage === null) return [];
  const list = (kind: StorageKind): Array<Record<string, unknown>> => {
    const l = storage[kind];
    return Array.isArray(l) ? l.filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null) : [];
  };
  // A directory entry that replaces a shipped file (overwrite: true) makes the paths below it possible.
  const replacedByDirectory = new Set(list('directories').filter((d) => d.overwrite === true && typeof d.path === 'string').map((d) => d.path as string));
  const out: ImageFileConflict[] = [];
  for (const kind of STORAGE_KINDS) {
    const entries = storage[kind];
    if (!Array.isArray(entries)) continue;
    entries.forEach((e, index) => {
      const p = (e as Record<string, unknown> | null)?.path;
      if (typeof p !== 'string') return;
      const overwrite = (e as Record<string, unknown>).overwrite;
      const origin = origins.get(originKey(kind, p));
      const parent = ancestors(p).find((a) => shipped.has(a) && !replacedByDirectory.has(a));
      if (parent !== undefined) out.push({ kind, index, path: p, reason: 'below-file', parent, overwrite, origin });
      else if (shipped.has(p) && overwrite !== true) out.push({ kind, index, path: p, reason: 'exists', overwrite, origin });
    });
  }
  return out;
}

const plural = (nodes: readonly string[]): string => `node${nodes.length === 1 ? '' : 's'} ${nodes.join(', ')}`;

/** What went wrong and what to do, for one conflict seen on `nodes`. */
export function conflictMessage(c: ImageFileConflict, nodes: readonly string[], templatesDir?: string): string {
  const at = c.origin?.snippet
    ? `Ignition snippet${c.origin.snippet.field.endsWith('.file') ? ` ${c.origin.snippet.source}` : ''}, storage.${c.kind}[${c.origin.entry}]`
    : `the rendered Ignition config (${templatesDir ? `ignition.json.hbs from ${templatesDir}` : 'built-in template ignition.json.hbs'}), storage.${c.kind}[${c.index}]`;
  if (c.reason === 'below-file') {
    return `${at} (${plural(nodes)}): ${c.path}: ${c.parent} is a file in the node image, so Ignition cannot create anything below it and first boot stops; choose a path outside ${c.parent}`;
  }
  const says = c.overwrite === undefined ? 'has no "overwrite": true' : `says "overwrite": ${JSON.stringify(c.overwrite)}`;
  return `${at} (${plural(nodes)}): ${c.path} already exists in the node image and the entry ${says}, so Ignition stops first boot ("A file exists there already and overwrite is false"); add "overwrite": true to the entry`;
}

/** Problems for conflicts seen on several nodes: one per (origin, entry), naming every node it hits. */
export function conflictProblems(seen: ReadonlyArray<{ node: string; conflicts: readonly ImageFileConflict[] }>, templatesDir?: string): Problem[] {
  const groups = new Map<string, { c: ImageFileConflict; nodes: string[] }>();
  for (const { node, conflicts } of seen) {
    for (const c of conflicts) {
      const key = [c.origin?.snippet?.index ?? 'template', c.kind, c.origin?.entry ?? c.index, c.path, c.reason].join('\0');
      const g = groups.get(key);
      if (g) g.nodes.push(node);
      else groups.set(key, { c, nodes: [node] });
    }
  }
  return [...groups.values()].map(({ c, nodes }) => ({
    path: c.origin?.snippet?.field ?? '',
    message: conflictMessage(c, nodes, templatesDir),
  }));
}
