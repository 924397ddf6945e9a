import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { moduleClosure } from '../../../src/provision/image/modules';

describe('moduleClosure', () => {
  const index = {
    files: new Map([
      ['ext4', 'kernel/fs/ext4/ext4.ko'],
      ['jbd2', 'kernel/fs/jbd2/jbd2.ko'],
      ['mbcache', 'kernel/fs/mbcache.ko'],
      ['crc16', 'kernel/lib/crc16.ko'],
      ['virtio_blk', 'kernel/drivers/block/virtio_blk.ko'],
      ['nls_iso8859_1', 'kernel/fs/nls/nls_iso8859-1.ko'],
    ]),
    deps: new Map([
      ['kernel/fs/ext4/ext4.ko', ['kernel/lib/crc16.ko', 'kernel/fs/mbcache.ko', 'kernel/fs/jbd2/jbd2.ko']],
      ['kernel/fs/jbd2/jbd2.ko', []],
      ['kernel/fs/mbcache.ko', []],
      ['kernel/lib/crc16.ko', []],
      ['kernel/drivers/block/virtio_blk.ko', []],
      ['kernel/fs/nls/nls_iso8859-1.ko', []],
    ]),
    builtin: new Set(['af_packet', 'virtio']),
  };

  it('lists dependencies before the modules that need them, once each', () => {
    const order = moduleClosure(index, ['ext4', 'virtio_blk', 'jbd2']);
    assert.deepEqual(order, ['kernel/lib/crc16.ko', 'kernel/fs/mbcache.ko', 'kernel/fs/jbd2/jbd2.ko', 'kernel/fs/ext4/ext4.ko', 'kernel/drivers/block/virtio_blk.ko']);
  });

  it('accepts built-in modules and dash/underscore spellings, and refuses unknown names', () => {
    assert.deepEqual(moduleClosure(index, ['af_packet', 'nls_iso8859-1']), ['kernel/fs/nls/nls_iso8859-1.ko']);
    assert.throws(() => moduleClosure(index, ['e1000e']), /e1000e is neither a module nor built in/);
  });
});
