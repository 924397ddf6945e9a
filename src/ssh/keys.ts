/**
 * SSH keys: the one parser of OpenSSH public key lines (what pinning compares with what a
 * server presents), fingerprints as `ssh-keygen -lf` prints them, and ed25519 key generation.
 */
import { createHash } from 'node:crypto';
import { utils } from 'ssh2';
import { FlotillaError } from '../errors';

export interface ParsedPublicKey {
  /** The key type ssh2 read from the blob (`ssh-ed25519`, `ssh-rsa`, ...). */
  type: string;
  /** The key blob: what an SSH server presents in its key exchange. */
  blob: Buffer;
}

/**
 * Parses one OpenSSH public key line (`ssh-ed25519 AAAA... comment`). Returns why it is not
 * one instead of throwing, so that spec validation can report it beside other problems.
 */
export function parsePublicKey(line: string): ParsedPublicKey | { error: string } {
  const parsed = utils.parseKey(line.trim());
  if (parsed instanceof Error) return { error: parsed.message };
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key) return { error: 'no key in the text' };
  if (key.isPrivateKey()) return { error: 'a private key was given where the public key belongs' };
  return { type: key.type, blob: key.getPublicSSH() };
}

/** The key blob of an OpenSSH public key line; a FlotillaError when it is not one. */
export function publicKeyBlob(publicKey: string): Buffer {
  const parsed = parsePublicKey(publicKey);
  if ('error' in parsed) throw new FlotillaError('invalid-input', `not an OpenSSH public key: ${parsed.error}`);
  return parsed.blob;
}

/** OpenSSH's fingerprint of a key blob: `SHA256:` and unpadded base64 (as `ssh-keygen -lf` prints). */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type named inside a blob (`ssh-ed25519`, ...). */
export function blobType(blob: Buffer): string {
  const len = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  return len > 0 && len < 64 ? blob.subarray(4, 4 + len).toString('latin1') : 'unknown';
}

export interface HostKeyPair {
  type: 'ed25519';
  /** OpenSSH private key (PEM-like "OPENSSH PRIVATE KEY" block). */
  privateKey: string;
  /** `ssh-ed25519 AAAA... comment` */
  publicKey: string;
}

/** A fresh ed25519 host key; its public half is what verification pins. */
export function generateHostKey(comment: string): HostKeyPair {
  return generateKeyPair(comment);
}

/**
 * An ed25519 key pair in OpenSSH formats. ssh2's generator emits a malformed public key
 * about once in 200 keys (a leading zero byte of the key is dropped), so every pair is
 * parsed back before it is used, and a bad one is simply generated again.
 */
export function generateKeyPair(comment = ''): HostKeyPair {
  for (;;) {
    const k = utils.generateKeyPairSync('ed25519', comment ? { comment } : {});
    const pub = utils.parseKey(k.public.trim());
    const priv = utils.parseKey(k.private);
    if (pub instanceof Error || priv instanceof Error) continue;
    const a = Array.isArray(pub) ? pub[0] : pub;
    const b = Array.isArray(priv) ? priv[0] : priv;
    if (!a || !b || !a.getPublicSSH().equals(b.getPublicSSH())) continue;
    return { type: 'ed25519', privateKey: k.private.endsWith('\n') ? k.private : `${k.private}\n`, publicKey: k.public.trim() };
  }
}
