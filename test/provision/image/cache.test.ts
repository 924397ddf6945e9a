/**
 * The image cache on disk: listing, removal, and pruning that never removes an image a disk
 * overlay is backed by. Uses real (tiny) qcow2 files made by qemu-img in a temporary state dir.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FlotillaError } from '../../../src/errors';
import { getImage, listImages, pruneCache, removeImage } from '../../../src/provision/image';

const id = (c: string): string => c.repeat(64);

describe('image cache', () => {
  let state: string;
  let saved: string | undefined;

  function makeBase(baseId: string, createdAt: string): void {
    const dir = path.join(state, 'cache', 'base', baseId);
    fs.mkdirSync(path.join(dir, 'rootfs'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'vmlinux'), 'kernel');
    fs.writeFileSync(path.join(dir, 'base.json'), JSON.stringify({ id: baseId, createdAt }));
  }

  function makeImage(imageId: string, baseId: string, createdAt: string): void {
    const dir = path.join(state, 'images', imageId);
    fs.mkdirSync(dir, { recursive: true });
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(dir, 'disk.qcow2'), '1M']);
    fs.writeFileSync(path.join(dir, 'image.json'), JSON.stringify({ id: imageId, baseId, createdAt }));
  }

  before(() => {
    saved = process.env.FLOTILLA_STATE_DIR;
    state = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-cache-'));
    process.env.FLOTILLA_STATE_DIR = state;
    makeBase(id('1'), '2026-01-01T00:00:00Z');
    makeBase(id('2'), '2026-01-02T00:00:00Z');
    makeImage(id('a'), id('1'), '2026-01-01T01:00:00Z');
    makeImage(id('b'), id('1'), '2026-01-01T02:00:00Z');
    makeImage(id('c'), id('2'), '2026-01-02T01:00:00Z');
    makeImage(id('d'), id('2'), '2026-01-02T02:00:00Z');
    // A half-built image (no image.json) is never listed.
    fs.mkdirSync(path.join(state, 'images', id('e')), { recursive: true });
  });

  after(() => {
    if (saved === undefined) delete process.env.FLOTILLA_STATE_DIR;
    else process.env.FLOTILLA_STATE_DIR = saved;
    fs.rmSync(state, { recursive: true, force: true });
  });

  it('lists complete images, newest first, with paths inside the state directory', () => {
    const ids = listImages().map((i) => i.id);
    assert.deepEqual(ids, [id('d'), id('c'), id('b'), id('a')]);
    assert.equal(getImage(id('a'))?.disk, path.join(state, 'images', id('a'), 'disk.qcow2'));
    assert.equal(getImage(id('e')), undefined);
  });

  it('keeps images that overlays are backed by when pruning', () => {
    const overlay = path.join(state, 'clusters', 'x', 'n1', 'disk.qcow2');
    fs.mkdirSync(path.dirname(overlay), { recursive: true });
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', path.join(state, 'images', id('a'), 'disk.qcow2'), overlay]);
    const r = pruneCache({ keepImages: 1 });
    assert.deepEqual(r.inUse, [id('a')]);
    assert.deepEqual(r.removedImages.sort(), [id('b'), id('c')]);
    assert.deepEqual(r.removedBases, []);
    assert.deepEqual(listImages().map((i) => i.id), [id('d'), id('a')]);

    fs.rmSync(path.join(state, 'clusters'), { recursive: true });
    const r2 = pruneCache({ keepImages: 1 });
    assert.deepEqual(r2.removedImages, [id('a')]);
    assert.deepEqual(r2.removedBases, [id('1')]);
    assert.deepEqual(fs.readdirSync(path.join(state, 'cache', 'base')), [id('2')]);
  });

  it('removes one image by id, and refuses what is not an id', () => {
    assert.equal(removeImage(id('d')), true);
    assert.equal(removeImage(id('d')), false);
    assert.deepEqual(listImages(), []);
    assert.throws(() => removeImage('../../etc'), (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input');
  });
});
