/** src/ssh/keys.ts: the one public-key parser, fingerprints as ssh-keygen prints them, generated pairs that parse back. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { utils } from 'ssh2';
import { blobType, fingerprint, generateKeyPair, parsePublicKey, publicKeyBlob } from '../../src/ssh';

test('generated key pairs always parse back (ssh2 alone emits a malformed ed25519 key about once in 200)', () => {
  for (let i = 0; i < 1000; i++) {
    const k = generateKeyPair(`k${i}`);
    assert.ok(!(utils.parseKey(k.publicKey) instanceof Error), k.publicKey);
    assert.ok(!(utils.parseKey(k.privateKey) instanceof Error));
  }
});

test('public keys: blob, type and fingerprint agree with ssh-keygen; a private key or junk is refused with why', () => {
  const k = generateKeyPair('fp');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-keys-'));
  try {
    fs.writeFileSync(path.join(dir, 'k.pub'), `${k.publicKey}\n`);
    const expected = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', path.join(dir, 'k.pub')], { encoding: 'utf8' }).split(/\s+/)[1];
    const blob = publicKeyBlob(k.publicKey);
    assert.equal(fingerprint(blob), expected);
    assert.equal(blobType(blob), 'ssh-ed25519');
    assert.deepEqual(parsePublicKey(`  ${k.publicKey}  `), { type: 'ssh-ed25519', blob });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.deepEqual(parsePublicKey(k.privateKey), { error: 'a private key was given where the public key belongs' });
  assert.ok('error' in parsePublicKey('ssh-ed25519 AAAA'));
  assert.throws(() => publicKeyBlob('nonsense'), /not an OpenSSH public key/);
});
