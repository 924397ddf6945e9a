/** SSH key checks (authorized keys in the spec) and host-key generation for pinning. */
import { utils } from 'ssh2';

const KEY_TYPES = [
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
];

/** Returns why `line` is not a usable OpenSSH public key, or undefined when it is. */
export function checkAuthorizedKey(line: string): string | undefined {
  const text = line.trim();
  if (/PRIVATE KEY/.test(text)) return 'this is a private key; give the public key (the .pub file)';
  if (/[\r\n]/.test(text)) return 'must be a single line';
  const [type, blob] = text.split(/\s+/);
  if (!type || !blob) return 'must look like "ssh-ed25519 AAAA... comment"';
  if (!KEY_TYPES.includes(type)) return `unsupported key type ${JSON.stringify(type.slice(0, 40))} (expected one of ${KEY_TYPES.join(', ')})`;
  // sk-* keys are not parsed by ssh2; check that the blob names the same type.
  if (type.startsWith('sk-')) {
    const buf = Buffer.from(blob, 'base64');
    const len = buf.length >= 4 ? buf.readUInt32BE(0) : -1;
    return len > 0 && buf.subarray(4, 4 + len).toString() === type ? undefined : 'malformed public key data';
  }
  const parsed = utils.parseKey(`${type} ${blob}`);
  if (parsed instanceof Error) return `malformed public key data (${parsed.message})`;
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key.type !== type) return `key data is a ${key?.type ?? 'unknown'} key, not ${type}`;
  return undefined;
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

/** The public-key blob of an OpenSSH public key line, for comparing with what a server presents. */
export function publicKeyBlob(publicKey: string): Buffer {
  const parsed = utils.parseKey(publicKey);
  if (parsed instanceof Error) throw parsed;
  const key = Array.isArray(parsed) ? parsed[0]! : parsed;
  return key.getPublicSSH();
}
