/**
 * Platform user-data limits. EC2 caps user-data at 16,384 bytes. cloud-init gunzips
 * compressed user-data by itself; Ignition does not (coreos/ignition#1096), so an
 * oversized Ignition config becomes a stub whose `ignition.config.replace` fetches the
 * full config from a URL, verified by its sha512.
 */
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { FlotillaError } from '../errors';
import { IGNITION_VERSION, type IgnitionConfig } from './ignition-types';
import type { RenderedNode } from './render';
import type { ResolvedSpec } from './spec';

export const EC2_USER_DATA_LIMIT = 16_384;

export interface PlacedUserData {
  node: string;
  /** Exactly what goes into the platform's user-data field. */
  userData: Buffer;
  /** Size of the rendered document before any compression or stubbing. */
  renderedBytes: number;
  encoding: 'plain' | 'gzip' | 'ignition-stub';
  /** For an Ignition stub: the full config to upload to `url`. */
  upload?: { url: string; contents: string; sha512: string };
}

export function ignitionStub(url: string, fullConfig: string): { stub: string; sha512: string } {
  const sha512 = createHash('sha512').update(fullConfig).digest('hex');
  const stub: IgnitionConfig = { ignition: { version: IGNITION_VERSION, config: { replace: { source: url, verification: { hash: `sha512-${sha512}` } } } } };
  return { stub: `${JSON.stringify(stub)}\n`, sha512 };
}

/** Fits one rendered node into the platform's user-data, or fails naming the node and the sizes. */
export function placeUserData(spec: ResolvedSpec, r: RenderedNode): PlacedUserData {
  const raw = Buffer.from(r.userData, 'utf8');
  const base = { node: r.node, renderedBytes: raw.length };
  if (spec.platform !== 'aws' || raw.length <= EC2_USER_DATA_LIMIT) return { ...base, userData: raw, encoding: 'plain' };
  if (r.format === 'cloud-config') {
    const gz = gzipSync(raw, { level: 9 });
    if (gz.length <= EC2_USER_DATA_LIMIT) return { ...base, userData: gz, encoding: 'gzip' };
    throw new FlotillaError(
      'too-large',
      `node ${r.node}: cloud-config is ${raw.length} bytes (${gz.length} gzip-compressed), over EC2's ${EC2_USER_DATA_LIMIT}-byte user-data limit; move large files out of the spec (snippets, preloaded units) or use format: ignition with aws.largeConfigUrl`,
    );
  }
  if (!spec.aws.largeConfigUrl) {
    throw new FlotillaError(
      'too-large',
      `node ${r.node}: Ignition config is ${raw.length} bytes, over EC2's ${EC2_USER_DATA_LIMIT}-byte user-data limit, and Ignition cannot read compressed user-data; set aws.largeConfigUrl (s3:// or https:// prefix) so Flotilla uploads the config and boots the node from a stub`,
    );
  }
  const url = `${spec.aws.largeConfigUrl}${r.node}.ign`;
  const { stub, sha512 } = ignitionStub(url, r.userData);
  return { ...base, userData: Buffer.from(stub), encoding: 'ignition-stub', upload: { url, contents: r.userData, sha512 } };
}
