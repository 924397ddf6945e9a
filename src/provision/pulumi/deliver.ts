/**
 * Secret delivery after boot, as Typhoon copies TLS assets: over an SSH connection whose host
 * key is pinned (the node's own, from its first-boot config), run as root a script made by
 * src/cluster/pki.ts `installScript` (contents base64-encoded: nothing in them is run), fed on
 * stdin so no secret appears in a command line. The script creates the ready file last, which
 * starts etcd and fleetd through their path units.
 */
import { createHash } from 'node:crypto';
import { FlotillaError } from '../../errors';
import { PATHS } from '../../config/node-files';
import { installScript } from '../../cluster/pki';
import { connectWhenReady } from '../../ssh';

export interface DeliveryFile {
  path: string;
  contents: string;
  mode: number;
}

export interface DeliveryTarget {
  node: string;
  host: string;
  port: number;
  user: string;
  hostPublicKey: string;
  /** Network namespace the endpoint is reached in (local clusters), if any. */
  netns?: string;
}

/** A digest of the files (paths, modes, contents): what is compared to decide a re-delivery. */
export function filesDigest(files: readonly DeliveryFile[]): string {
  const h = createHash('sha256');
  for (const f of [...files].sort((a, b) => (a.path < b.path ? -1 : 1))) h.update(`${f.path}\0${f.mode}\0${f.contents.length}\0${f.contents}\0`);
  return h.digest('hex');
}

/**
 * Waits (until `deadline`, epoch ms) for the node to answer SSH with its pinned host key, then
 * installs `files` as root and creates `readyFile` (default /etc/flotilla/pki/ready) last.
 */
export async function deliverFiles(target: DeliveryTarget, privateKey: string | Buffer, files: readonly DeliveryFile[], deadline: number, readyFile: string = PATHS.pkiReady): Promise<{ attempts: number }> {
  const script = installScript(files, readyFile);
  const ssh = { node: target.node, host: target.host, port: target.port, user: target.user, hostKey: target.hostPublicKey, privateKey, ...(target.netns ? { netns: target.netns } : {}) };
  const { attempts, connection } = await connectWhenReady(ssh, deadline);
  try {
    // sudo -n: never wait for a password prompt that nobody can answer.
    const res = await connection.exec('sh -s', { sudo: true, stdin: script, timeoutMs: 120_000, label: 'the secrets script' });
    if (res.code !== 0) {
      throw new FlotillaError('external', `node ${target.node}: installing secrets failed (exit ${res.code}): ${res.stderr.trim().split('\n').slice(-3).join(' ')}`);
    }
  } finally {
    await connection.close();
  }
  return { attempts };
}
