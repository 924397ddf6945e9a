/** src/ssh/openssh.ts with the real OpenSSH client against a real sshd: the pinned key is the only one trusted. */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startSshd, type Sshd } from '../fixtures/sshd';
import { makeTempDir, removeTempDir } from '../fixtures/proc';
import { generateKeyPair, knownHostsText, opensshArgv, type OpensshTarget } from '../../src/ssh';

let sshd: Sshd;
let scratch: string;
before(async () => {
  sshd = await startSshd();
  scratch = makeTempDir('flotilla-openssh');
});
after(async () => {
  await sshd?.stop();
  if (scratch) removeTempDir(scratch);
});

function pinned(hostKey: string): OpensshTarget {
  const knownHostsFile = path.join(scratch, `known_hosts-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(knownHostsFile, knownHostsText([{ host: sshd.host, port: sshd.port, hostKey }]));
  return { host: sshd.host, port: sshd.port, user: sshd.user, keyFile: sshd.clientPrivateKeyFile, knownHostsFile };
}

function ssh(argv: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', input: '', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('known_hosts pins the key at [host]:port, as ssh-keygen reads it', () => {
  const t = pinned(sshd.hostKeyPublic);
  const r = spawnSync('ssh-keygen', ['-F', `[${sshd.host}]:${sshd.port}`, '-f', t.knownHostsFile], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.includes(sshd.hostKeyPublic.split(' ')[1]!));
  assert.throws(() => knownHostsText([{ host: 'h', port: 22, hostKey: 'not a key' }]), /not an OpenSSH public key/);
});

test('the argv runs a command with the pinned key, words that start with "-" included; any other key is refused', () => {
  const ok = ssh(opensshArgv(pinned(sshd.hostKeyPublic), ['echo', '-n', 'pinned']));
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout, 'pinned');
  const status = ssh(opensshArgv(pinned(sshd.hostKeyPublic), ['exit', '7']));
  assert.equal(status.status, 7, 'the remote status is ssh\'s');

  const wrong = ssh(opensshArgv(pinned(generateKeyPair('other').publicKey), ['true']));
  assert.equal(wrong.status, 255);
  assert.match(wrong.stderr, /Host key verification failed/);
});

test('bad names never reach an argv', () => {
  const t = pinned(sshd.hostKeyPublic);
  assert.throws(() => opensshArgv({ ...t, netns: 'x; rm -rf /' }), /bad network namespace name/);
  assert.throws(() => opensshArgv({ ...t, user: '-oProxyCommand=x' }), /bad SSH destination/);
  assert.deepEqual(opensshArgv({ ...t, netns: 'flotilla-demo' }).slice(0, 5), ['ip', 'netns', 'exec', 'flotilla-demo', 'ssh']);
  assert.ok(opensshArgv(t).includes('-t'), 'a login shell gets a terminal');
});
