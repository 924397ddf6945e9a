import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { FlotillaError } from '../errors';

/** Writes a file so that readers see either the old content or the new, never a part. */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    fs.writeFileSync(tmp, data, { mode });
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new FlotillaError('external', `cannot write ${file}: ${(err as Error).message}`, [], { cause: err });
  }
}

export interface OutputFile {
  path: string;
  data: string | Uint8Array;
  mode?: number;
}

/**
 * Writes a set of files, each atomically. Callers build every file in memory first,
 * so a rendering error leaves nothing behind; this only does I/O.
 */
export function writeFilesAtomic(files: readonly OutputFile[]): void {
  for (const f of files) writeFileAtomic(f.path, f.data, f.mode);
}

export function readTextFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new FlotillaError('not-found', `${file}: no such file`);
    throw new FlotillaError('invalid-input', `${file}: cannot read: ${e.message}`, [], { cause: err });
  }
}
