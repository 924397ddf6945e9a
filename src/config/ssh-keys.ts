/** The spec's authorized keys: which OpenSSH public key lines a node may be given. */
import { parsePublicKey } from '../ssh/keys';

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
  const parsed = parsePublicKey(`${type} ${blob}`);
  if ('error' in parsed) return `malformed public key data (${parsed.error})`;
  if (parsed.type !== type) return `key data is a ${parsed.type} key, not ${type}`;
  return undefined;
}
