/**
 * src/ssh/wait.ts against a real sshd: a booting node's port that accepts but does not speak
 * SSH yet (as QEMU's user-mode forward does), a readiness command that fails until the node is
 * ready, a wrong host key (final at once) and a deadline.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { startSshd, type Sshd } from '../fixtures/sshd';
import { makeTempDir, removeTempDir } from '../fixtures/proc';
import { connectWhenReady, generateKeyPair, HostKeyMismatchError, waitForSsh, type SshTarget } from '../../src/ssh';

let sshd: Sshd;
let scratch: string;
before(async () => {
  sshd = await startSshd();
  scratch = makeTempDir('flotilla-ssh-wait');
});
after(async () => {
  await sshd?.stop();
  if (scratch) removeTempDir(scratch);
});

function target(over: Partial<SshTarget> = {}): SshTarget {
  return { node: 'n1', host: sshd.host, port: sshd.port, user: sshd.user, hostKey: sshd.hostKeyPublic, privateKey: sshd.clientPrivateKey, ...over };
}

/** A forward that holds its first `silent` connections open without a byte, then relays to sshd. */
async function startForward(silent: number): Promise<{ port: number; accepted: () => number; close: () => Promise<void> }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    if (++accepted <= silent) return;
    const up = net.connect(sshd.port, sshd.host);
    up.on('error', () => sock.destroy());
    sock.pipe(up).pipe(sock);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    close: () => new Promise((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

test('a port that accepts but does not speak SSH yet is retried after the handshake deadline; the open connection is returned', async () => {
  const fwd = await startForward(2);
  try {
    const seen: string[] = [];
    const t0 = Date.now();
    const { attempts, connection } = await connectWhenReady(target({ port: fwd.port }), Date.now() + 30_000, { handshakeTimeoutMs: 300, intervalMs: 50, onAttempt: (_, e) => seen.push(e) });
    try {
      assert.equal(attempts, 3);
      assert.equal(seen.length, 2);
      for (const e of seen) assert.match(e, /no SSH key exchange within 300 ms/);
      assert.ok(Date.now() - t0 < 10_000, 'each silent attempt gave up at its handshake deadline');
      assert.equal((await connection.exec('echo ready')).stdout, 'ready\n');
      assert.equal(connection.handshakes, 1, 'the connection that answered is the one returned');
    } finally {
      await connection.close();
    }
  } finally {
    await fwd.close();
  }
});

test('the readiness command decides: it is retried until it succeeds', async () => {
  const flag = path.join(scratch, 'ready');
  setTimeout(() => fs.writeFileSync(flag, ''), 700);
  const { attempts } = await waitForSsh(target(), Date.now() + 30_000, { command: `test -e ${flag}`, intervalMs: 200 });
  assert.ok(attempts >= 2, `attempts ${attempts}`);
});

test('a host key other than the pinned one fails at once; a deadline ends the wait naming the node and the last error', async () => {
  const t0 = Date.now();
  await assert.rejects(waitForSsh(target({ hostKey: generateKeyPair('other').publicKey }), Date.now() + 60_000), HostKeyMismatchError);
  assert.ok(Date.now() - t0 < 10_000, 'not retried until the deadline');

  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  await assert.rejects(waitForSsh(target({ port }), Date.now() + 1500, { intervalMs: 100 }), (err: Error) => {
    assert.match(err.message, /ssh to node n1 at 127\.0\.0\.1:\d+: not ready by the deadline after \d+ attempts; last error: .*connection refused/);
    return true;
  });
});
