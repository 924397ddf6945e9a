/**
 * Snippet merging. Maps merge key by key; a snippet's scalar replaces the base value;
 * lists append, except lists of entries with an identity (files by path, units and users
 * by name), where a snippet entry merges over the base entry with the same identity,
 * as Ignition's own config merging does.
 */
import { FlotillaError } from '../errors';

/** Which list entries have an identity, by the list's key. */
const IDENTITY: Record<string, string> = {
  write_files: 'path',
  files: 'path',
  directories: 'path',
  links: 'path',
  units: 'name',
  dropins: 'name',
  users: 'name',
  groups: 'name',
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function mergeConfig(base: unknown, snippet: unknown, key = '', source = 'snippet'): unknown {
  if (isPlainObject(base) && isPlainObject(snippet)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(snippet)) {
      if (k === '__proto__' || k === 'constructor' || k === 'prototype') {
        throw new FlotillaError('invalid-input', `${source}: reserved key "${k}" is not allowed`, [{ path: k, message: 'reserved key', file: source }]);
      }
      out[k] = k in base ? mergeConfig(base[k], v, k, source) : v;
    }
    return out;
  }
  if (Array.isArray(base) && Array.isArray(snippet)) {
    const id = IDENTITY[key];
    if (!id) return [...base, ...snippet];
    const out = [...base];
    for (const entry of snippet) {
      const ident = isPlainObject(entry) ? entry[id] : undefined;
      const at = ident === undefined ? -1 : out.findIndex((e) => isPlainObject(e) && e[id] === ident);
      if (at >= 0) out[at] = mergeConfig(out[at], entry, '', source);
      else out.push(entry);
    }
    return out;
  }
  return snippet;
}
