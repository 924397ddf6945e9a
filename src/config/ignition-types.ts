/**
 * Ignition config spec 3.3.0: the newest stable version that Debian 12's
 * `ignition-validate` (Ignition 2.14) accepts; 3.4.0 is only accepted as
 * `3.4.0-experimental` and 3.5.0 is rejected (checked, see docs/config.md).
 * Only the parts Flotilla writes are typed.
 */
export const IGNITION_VERSION = '3.3.0';

export interface IgnitionResource {
  source?: string;
  compression?: 'gzip' | null;
  verification?: { hash?: string };
}

export interface IgnitionFile {
  path: string;
  mode?: number;
  overwrite?: boolean;
  contents?: IgnitionResource;
  append?: IgnitionResource[];
  user?: { id?: number; name?: string };
  group?: { id?: number; name?: string };
}

export interface IgnitionDirectory {
  path: string;
  mode?: number;
  overwrite?: boolean;
  user?: { id?: number; name?: string };
  group?: { id?: number; name?: string };
}

export interface IgnitionLink {
  path: string;
  target: string;
  hard?: boolean;
  overwrite?: boolean;
}

export interface IgnitionUnit {
  name: string;
  enabled?: boolean;
  mask?: boolean;
  contents?: string;
  dropins?: Array<{ name: string; contents?: string }>;
}

export interface IgnitionUser {
  name: string;
  passwordHash?: string;
  sshAuthorizedKeys?: string[];
  uid?: number;
  gecos?: string;
  homeDir?: string;
  noCreateHome?: boolean;
  primaryGroup?: string;
  groups?: string[];
  shell?: string;
  system?: boolean;
}

export interface IgnitionConfig {
  ignition: {
    version: string;
    config?: { replace?: IgnitionResource; merge?: IgnitionResource[] };
  };
  storage?: { files?: IgnitionFile[]; directories?: IgnitionDirectory[]; links?: IgnitionLink[] };
  systemd?: { units?: IgnitionUnit[] };
  passwd?: { users?: IgnitionUser[]; groups?: Array<{ name: string; gid?: number; system?: boolean }> };
  kernelArguments?: { shouldExist?: string[]; shouldNotExist?: string[] };
}

/**
 * An RFC 2397 data URL for file contents. Plain text stays readable (percent-encoded)
 * when that is not much larger than base64; otherwise base64.
 */
export function dataUrl(contents: string | Uint8Array): string {
  const buf = typeof contents === 'string' ? Buffer.from(contents, 'utf8') : Buffer.from(contents);
  const b64 = `data:;base64,${buf.toString('base64')}`;
  if (typeof contents === 'string') {
    const pct = `data:,${encodeURIComponent(contents)}`;
    if (pct.length <= b64.length) return pct;
  }
  return b64;
}

/** Decodes a data URL written by dataUrl (or any RFC 2397 URL); undefined for other schemes. */
export function decodeDataUrl(url: string): Buffer | undefined {
  const m = /^data:([^,]*),(.*)$/s.exec(url);
  if (!m) return undefined;
  const meta = m[1]!;
  const body = m[2]!;
  return meta.endsWith(';base64') ? Buffer.from(body, 'base64') : Buffer.from(decodeURIComponent(body), 'utf8');
}
