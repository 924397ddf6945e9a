import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cpioNewc } from '../../../src/provision/image/cpio';

/** An independent reader for the newc format, to check what the writer produced. */
function readNewc(buf: Buffer): Array<{ name: string; mode: number; data: Buffer; rdev: [number, number] }> {
  const out: Array<{ name: string; mode: number; data: Buffer; rdev: [number, number] }> = [];
  let off = 0;
  const field = (i: number): number => parseInt(buf.toString('ascii', off + 6 + i * 8, off + 14 + i * 8), 16);
  for (;;) {
    assert.equal(buf.toString('ascii', off, off + 6), '070701', `magic at ${off}`);
    const mode = field(1);
    const size = field(6);
    const rdev: [number, number] = [field(9), field(10)];
    const nameSize = field(11);
    const nameStart = off + 110;
    const name = buf.toString('utf8', nameStart, nameStart + nameSize - 1);
    assert.equal(buf[nameStart + nameSize - 1], 0);
    let dataStart = nameStart + nameSize;
    dataStart += (4 - (dataStart % 4)) % 4;
    const data = buf.subarray(dataStart, dataStart + size);
    off = dataStart + size;
    off += (4 - (off % 4)) % 4;
    if (name === 'TRAILER!!!') break;
    out.push({ name, mode, data, rdev });
  }
  assert.equal(off, buf.length);
  return out;
}

describe('cpioNewc', () => {
  it('writes directories, files, symlinks and device nodes the way the kernel reads them', () => {
    const archive = cpioNewc([
      { type: 'dir', path: 'bin' },
      { type: 'file', path: 'bin/busybox', data: Buffer.from([0, 1, 2, 3, 4]), mode: 0o755 },
      { type: 'symlink', path: 'bin/sh', target: 'busybox' },
      { type: 'dir', path: 'dev' },
      { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
      { type: 'file', path: 'init', data: '#!/bin/sh\n', mode: 0o755 },
    ]);
    const entries = readNewc(archive);
    assert.deepEqual(
      entries.map((e) => [e.name, e.mode.toString(8)]),
      [['bin', '40755'], ['bin/busybox', '100755'], ['bin/sh', '120777'], ['dev', '40755'], ['dev/console', '20600'], ['init', '100755']],
    );
    assert.deepEqual([...entries[1]!.data], [0, 1, 2, 3, 4]);
    assert.equal(entries[2]!.data.toString(), 'busybox');
    assert.deepEqual(entries[4]!.rdev, [5, 1]);
    assert.equal(entries[5]!.data.toString(), '#!/bin/sh\n');
  });

  it('refuses paths that would escape or come before their directory', () => {
    assert.throws(() => cpioNewc([{ type: 'file', path: '../etc/passwd', data: 'x' }]), /bad path/);
    assert.throws(() => cpioNewc([{ type: 'file', path: 'a/b', data: 'x' }]), /before its directory/);
    assert.throws(() => cpioNewc([{ type: 'dir', path: 'a' }, { type: 'dir', path: 'a' }]), /duplicate/);
  });
});
