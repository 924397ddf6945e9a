/**
 * The list of files the node image ships (src/provision/local/image-files.ts, which the
 * renderer checks Ignition entries against) checked against a real built image: every listed
 * path must exist in the root filesystem the image's disk was made from (its base layer). The
 * image is the one the VM tests boot (ensureImage: cached, or built here with progress).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { ensureImage } from '../../src/provision/image';
import { NODE_IMAGE_FILES } from '../../src/config/image-files';
import { stateDir } from '../../src/cluster/state';

const log = (msg: string): void => void process.stderr.write(`# ${msg}\n`);

/** Listed paths that are neither a file, a symlink nor anything else in `rootfs`. */
function missingIn(rootfs: string, paths: readonly string[]): string[] {
  return paths.filter((p) => {
    try {
      fs.lstatSync(path.join(rootfs, p));
      return false;
    } catch {
      return true;
    }
  });
}

describe('files the node image ships, against a real image', { timeout: 30 * 60_000 }, () => {
  it('every listed path exists in the built image, and none of them is a directory', async () => {
    const image = await ensureImage({}, (p) => p.phase !== 'cached' && log(`image: ${p.step} ${p.phase}${p.seconds !== undefined ? ` ${p.seconds}s` : ''}`));
    const rootfs = path.join(stateDir(), 'cache', 'base', image.baseId, 'rootfs');
    assert.ok(fs.existsSync(path.join(rootfs, 'etc', 'os-release')), `base layer of image ${image.id.slice(0, 12)} at ${rootfs}`);
    const list = NODE_IMAGE_FILES;
    assert.deepEqual(missingIn(rootfs, list), [], `listed in image-files.ts but not in image ${image.id.slice(0, 12)}`);
    // The check can fail: a path the image does not have is reported.
    assert.deepEqual(missingIn(rootfs, ['/etc/motd', '/etc/flotilla-not-shipped']), ['/etc/flotilla-not-shipped']);
    const dirs = list.filter((p) => fs.lstatSync(path.join(rootfs, p)).isDirectory());
    assert.deepEqual(dirs, [], 'listed paths are files or symlinks');
    // For the record: regular files directly in /etc that the list leaves out (not all are likely targets).
    const unlisted = fs.readdirSync(path.join(rootfs, 'etc'), { withFileTypes: true }).filter((e) => !e.isDirectory() && !list.includes(`/etc/${e.name}`)).map((e) => e.name);
    log(`${list.length} listed paths present in image ${image.id.slice(0, 12)}; /etc entries not listed: ${unlisted.length} (${unlisted.slice(0, 12).join(' ')}${unlisted.length > 12 ? ' ...' : ''})`);
  });
});
