/**
 * A writer for the cpio "newc" format, the one the Linux kernel unpacks as an initramfs.
 * Pure: entries in, bytes out. Used to build the node image's small initrd without
 * depending on a host cpio binary.
 */

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Uint8Array | string; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio: field out of range: ${n}`);
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function header(ino: number, mode: number, nlink: number, size: number, rdevMajor: number, rdevMinor: number, nameSize: number): string {
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
  return `070701${[ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, nameSize, 0].map(hex8).join('')}`;
}

/** Serialises entries (parents before children) into a newc archive ending with TRAILER!!!. */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer): void => {
    parts.push(b);
    offset += b.length;
  };
  const seen = new Set<string>();
  let ino = 1;
  const emit = (name: string, mode: number, nlink: number, data: Buffer, rmaj = 0, rmin = 0): void => {
    const nameBytes = Buffer.from(`${name}\0`, 'utf8');
    push(Buffer.from(header(ino++, mode, nlink, data.length, rmaj, rmin, nameBytes.length), 'ascii'));
    push(nameBytes);
    push(Buffer.alloc(pad4(offset)));
    push(data);
    push(Buffer.alloc(pad4(offset)));
  };
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    if (!name || name.split('/').some((c) => c === '..' || c === '.' || c === '')) throw new Error(`cpio: bad path ${JSON.stringify(e.path)}`);
    if (seen.has(name)) throw new Error(`cpio: duplicate path ${name}`);
    seen.add(name);
    const parent = name.includes('/') ? name.slice(0, name.lastIndexOf('/')) : '';
    if (parent && !seen.has(parent)) throw new Error(`cpio: ${name} comes before its directory ${parent}`);
    switch (e.type) {
      case 'dir':
        emit(name, S_IFDIR | (e.mode ?? 0o755), 2, Buffer.alloc(0));
        break;
      case 'file':
        emit(name, S_IFREG | (e.mode ?? 0o644), 1, typeof e.data === 'string' ? Buffer.from(e.data, 'utf8') : Buffer.from(e.data));
        break;
      case 'symlink':
        emit(name, S_IFLNK | 0o777, 1, Buffer.from(e.target, 'utf8'));
        break;
      case 'chardev':
        emit(name, S_IFCHR | (e.mode ?? 0o600), 1, Buffer.alloc(0), e.major, e.minor);
        break;
    }
  }
  emit('TRAILER!!!', 0, 1, Buffer.alloc(0));
  return Buffer.concat(parts);
}
