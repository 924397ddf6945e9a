/**
 * Where Flotilla keeps its state on this host: `/var/lib/flotilla` unless FLOTILLA_STATE_DIR
 * says otherwise.
 *
 *   <state>/images/<hash>/        one built node image (src/provision/image/)
 *   <state>/images/.build-*       an image being built (renamed into place when complete)
 *   <state>/cache/debs/           downloaded .debs, reused by the next image build
 *   <state>/clusters/<name>/      per-cluster runtime files: overlays, seeds, logs, pidfiles
 *   /run/flotilla/accel.json      accelerator probe result, valid for this boot of the host
 */
import * as path from 'node:path';

export const DEFAULT_STATE_DIR = '/var/lib/flotilla';

export function stateDir(): string {
  const fromEnv = process.env.FLOTILLA_STATE_DIR;
  return path.resolve(fromEnv && fromEnv.length > 0 ? fromEnv : DEFAULT_STATE_DIR);
}

export function imagesDir(): string {
  return path.join(stateDir(), 'images');
}

export function debCacheDir(): string {
  return path.join(stateDir(), 'cache', 'debs');
}

export function clustersDir(): string {
  return path.join(stateDir(), 'clusters');
}

/** Runtime (tmpfs) directory: cleared when the host reboots. */
export function runDir(): string {
  return process.env.FLOTILLA_RUN_DIR || '/run/flotilla';
}
