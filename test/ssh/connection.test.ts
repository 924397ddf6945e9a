/**
 * The verification connection layer against a real OpenSSH sshd on 127.0.0.1:
 * pinning, failures (refused, handshake timeout, auth, host key), command deadlines,
 * exit codes and signals, large outputs, many concurrent commands on one connection,
 * proxy transports (socat, and a real network namespace) and TCP tunnels.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { startSshd, type Sshd } from '../fixtures/sshd';
import { freePort } from '../fixtures/ports';
import { ManagedProcess, makeTempDir, removeTempDir, run, sleep } from '../fixtures/proc';
import { HostKeyMismatchError, NodeConnection, SshError, SshPool, fingerprint, publicKeyBlob, type SshTarget } from '../../src/ssh';

let sshd: Sshd;
let scratch: string;
before(async () => {
  sshd = await startSshd();
  scratch = makeTempDir('flotilla-verify-ssh');
});
after(async () => {
  await sshd?.stop();
  if (scratch) removeTempDir(scratch);
});

function target(over: Partial<SshTarget> = {}): SshTarget {
  return { node: 'n1', host: sshd.host, port: sshd.port, user: sshd.user, hostKey: sshd.hostKeyPublic, privateKey: sshd.clientPrivateKey, privateKeyFile: sshd.clientPrivateKeyFile, ...over };
}

async function withConn<T>(t: SshTarget, fn: (c: NodeConnection) => Promise<T>, opts = {}): Promise<T> {
  const c = new NodeConnection(t, opts);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

async function keygen(name: string): Promise<{ priv: string; pub: string; file: string }> {
  const file = path.join(scratch, name);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
  return { priv: fs.readFileSync(file, 'utf8'), pub: fs.readFileSync(`${file}.pub`, 'utf8').trim(), file };
}

/** ssh-keygen's own fingerprint of a public key file: the reference for ours. */
async function sshKeygenFingerprint(pubLine: string): Promise<string> {
  const f = path.join(scratch, `fp-${Date.now()}-${Math.random()}.pub`);
  fs.writeFileSync(f, `${pubLine}\n`);
  const out = (await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', f])).stdout;
  return out.split(/\s+/)[1]!;
}

function acceptedLogins(): number {
  return (fs.readFileSync(sshd.logFile, 'utf8').match(/Accepted publickey/g) ?? []).length;
}

test('pinned host key: connects and runs commands; fingerprints match ssh-keygen', async () => {
  await withConn(target(), async (c) => {
    const r = await c.exec('echo hello; echo oops >&2');
    assert.equal(r.code, 0);
    assert.equal(r.signal, null);
    assert.equal(r.stdout, 'hello\n');
    assert.equal(r.stderr, 'oops\n');
    assert.ok(r.ms >= 0 && r.ms < 5000);
    assert.equal(await c.mustExec('cat', { stdin: 'in\nput' }), 'in\nput');
  });
  assert.equal(fingerprint(publicKeyBlob(sshd.hostKeyPublic)), await sshKeygenFingerprint(sshd.hostKeyPublic));
});

test('wrong pinned key: refused before login, naming node, address and both fingerprints', async () => {
  const other = await keygen('other_host');
  const before = acceptedLogins();
  const err = await withConn(target({ hostKey: other.pub }), (c) => c.connect()).then(
    () => assert.fail('connected with the wrong key'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof HostKeyMismatchError, String(err));
  const presented = await sshKeygenFingerprint(sshd.hostKeyPublic);
  const expected = await sshKeygenFingerprint(other.pub);
  assert.equal(err.presentedFingerprint, presented);
  assert.equal(err.expectedFingerprint, expected);
  assert.match(err.message, new RegExp(`node n1 at 127\\.0\\.0\\.1:${sshd.port}`));
  assert.ok(err.message.includes(presented) && err.message.includes(expected), err.message);
  assert.equal(err.code, 'external');
  await sleep(100);
  assert.equal(acceptedLogins(), before, 'no login happened');
});

test('connection refused, handshake timeout and authentication failure are told apart', async () => {
  const closedPort = await freePort();
  const refused = await withConn(target({ port: closedPort }), (c) => c.connect()).catch((e: unknown) => e);
  assert.ok(refused instanceof SshError && refused.kind === 'refused', String(refused));
  assert.match(refused.message, new RegExp(`node n1 at 127\\.0\\.0\\.1:${closedPort}: connection refused`));

  // A server that accepts TCP and never speaks SSH.
  const silent = net.createServer((s) => s.on('error', () => undefined).resume());
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const silentPort = (silent.address() as net.AddressInfo).port;
  try {
    const t0 = Date.now();
    const timeout = await withConn(target({ port: silentPort }), (c) => c.connect(), { readyTimeoutMs: 700 }).catch((e: unknown) => e);
    assert.ok(timeout instanceof SshError && timeout.kind === 'timeout', String(timeout));
    assert.equal(timeout.code, 'timeout');
    assert.match(timeout.message, /no SSH session within 700 ms/);
    assert.ok(Date.now() - t0 < 3000, `gave up in ${Date.now() - t0} ms`);
  } finally {
    await new Promise((r) => silent.close(r));
  }

  const stranger = await keygen('stranger_client');
  const auth = await withConn(target({ privateKey: stranger.priv, privateKeyFile: stranger.file }), (c) => c.connect()).catch((e: unknown) => e);
  assert.ok(auth instanceof SshError && auth.kind === 'auth', String(auth));
  assert.match(auth.message, new RegExp(`authentication failed for user ${sshd.user} with key ${stranger.file.replace(/[.]/g, '\\.')}`));
});

test('exit codes, signals, stdin, and a command past its deadline is killed without hurting the connection', async () => {
  await withConn(target(), async (c) => {
    assert.equal((await c.exec('exit 3')).code, 3);
    const killed = await c.exec('kill -TERM $$');
    assert.equal(killed.code, null);
    assert.equal(killed.signal, 'TERM');
    await assert.rejects(c.mustExec('echo bad >&2; exit 4'), /exited 4: bad/);

    // A command that forks (a shell running sleep and then more) so that killing only the
    // login shell would leave the sleep behind; sshd also refuses `signal` requests for root.
    const marker = `sleep 7.${process.pid}`;
    const t0 = Date.now();
    const err = await c.exec(`sh -c '${marker}; echo after' & wait`, { timeoutMs: 400 }).catch((e: unknown) => e);
    const took = Date.now() - t0;
    assert.ok(err instanceof SshError && err.kind === 'timeout', String(err));
    // Named by its program, never by its text (a command line may hold a secret).
    assert.match(err.message, /`sh …` timed out after 400 ms/);
    assert.doesNotMatch(err.message, /sleep 7/);
    assert.ok(took < 1500, `deadline honoured (${took} ms)`);
    // The connection still works, and the whole remote process tree is gone.
    assert.equal((await c.exec('echo still')).stdout, 'still\n');
    let alive = '';
    for (let i = 0; i < 40; i++) {
      alive = (await c.exec(`pgrep -f '^${marker.replace(/[.]/g, '[.]')}$' || true`)).stdout.trim();
      if (!alive) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(alive, '', `the timed-out command's process tree was killed (pids left: ${alive})`);
    // Stderr is the command's own: the process-group marker line is not part of it.
    const both = await c.exec('echo e1 >&2; echo o1; echo e2 >&2');
    assert.deepEqual([both.stdout, both.stderr], ['o1\n', 'e1\ne2\n']);

    // An outer abort (a check's deadline) ends a command too.
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('check deadline')), 200);
    await assert.rejects(c.exec('sleep 5', { signal: ac.signal }), /`sleep …` aborted after \d+ ms \(check deadline\)/);
    // A caller's label stands for the command in every error, and no secret in it is shown.
    const secret = `token-${process.pid}`;
    const labelled = await c.exec(`sleep 5 # ${secret}`, { timeoutMs: 200, label: 'the token check' }).catch((e: unknown) => e);
    assert.ok(labelled instanceof SshError);
    assert.match(labelled.message, /the token check timed out after 200 ms/);
    assert.ok(!labelled.message.includes(secret));
    const failed: unknown = await c.mustExec(`echo ${secret} >/dev/null; echo no >&2; exit 3`).catch((e: unknown) => e);
    assert.ok(failed instanceof Error);
    assert.match(failed.message, /`echo …` exited 3: no/);
    assert.ok(!failed.message.includes(secret));
  });
});

test('large outputs: 5 MB on stdout and 2 MB on stderr at once, byte-exact; a cap truncates', async () => {
  await withConn(target(), async (c) => {
    const both = await c.exec('head -c 5000000 /dev/zero | tr "\\0" a; head -c 2000000 /dev/zero | tr "\\0" b >&2', { timeoutMs: 30_000 });
    assert.equal(both.code, 0);
    assert.equal(both.stdout.length, 5_000_000);
    assert.ok(/^a+$/.test(both.stdout));
    assert.equal(both.stderr.length, 2_000_000);
    assert.ok(/^b+$/.test(both.stderr));
    assert.equal(both.truncated, false);
    // Interleaved lines survive intact and in order.
    const seq = await c.exec('seq 1 700000', { timeoutMs: 30_000 });
    const lines = seq.stdout.split('\n');
    assert.equal(lines.length, 700001);
    assert.equal(lines[0], '1');
    assert.equal(lines[699999], '700000');
    assert.equal(Buffer.byteLength(seq.stdout), Number((await c.mustExec('seq 1 700000 | wc -c')).trim()));
    const capped = await c.exec('head -c 300000 /dev/zero | tr "\\0" c', { maxOutputBytes: 100_000 });
    assert.equal(capped.truncated, true);
    assert.ok(capped.stdout.length <= 100_000);
    assert.equal(capped.code, 0);
  });
});

test('50 concurrent commands share one connection (queued for channels) and all succeed', async () => {
  const before = acceptedLogins();
  await withConn(target(), async (c) => {
    // Each command reports when its body ran (remote clock), to measure the overlap.
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => c.exec(`date +%s%N; sleep 0.3; echo ${i}; date +%s%N`)));
    const spans = results.map((r, i) => {
      assert.equal(r.code, 0, r.stderr);
      const [from, n, to] = r.stdout.trim().split('\n');
      assert.equal(n, String(i));
      return [Number(BigInt(from!) / 1000n), Number(BigInt(to!) / 1000n)] as const;
    });
    const overlap = Math.max(...spans.map(([t]) => spans.filter(([a, b]) => a <= t && t < b).length));
    assert.ok(overlap >= 2, `commands ran concurrently (max overlap ${overlap})`);
    assert.ok(overlap <= 8, `never more than maxChannels at once (max overlap ${overlap})`);
    assert.equal(c.handshakes, 1);
  }, { maxChannels: 8 });
  await sleep(200);
  assert.equal(acceptedLogins() - before, 1, 'exactly one SSH login for 50 commands');
});

test('pool: nodes connect in parallel; a failing node is kept as its error, others work', async () => {
  const closedPort = await freePort();
  const pool = new SshPool([target({ node: 'a' }), target({ node: 'b' }), target({ node: 'dead', port: closedPort })]);
  try {
    const { failed } = await pool.connectAll();
    assert.deepEqual([...failed.keys()], ['dead']);
    assert.equal((await pool.get('a').exec('echo a')).stdout, 'a\n');
    assert.throws(() => pool.get('dead'), /node dead at 127\.0\.0\.1:\d+: connection refused/);
    assert.throws(() => pool.get('nope'), /no node named nope/);
  } finally {
    await pool.closeAll();
  }
});

test('proxy transport (socat) and sudo pass-through as root', async () => {
  await withConn(target({ proxyCommand: ['socat', 'STDIO', `TCP:127.0.0.1:${sshd.port}`] }), async (c) => {
    assert.equal((await c.exec('echo via')).stdout, 'via\n');
    if (sshd.user === 'root') assert.equal((await c.exec('id -u', { sudo: true })).stdout, '0\n');
  });
  const closedPort = await freePort();
  const err = await withConn(target({ proxyCommand: ['socat', 'STDIO', `TCP:127.0.0.1:${closedPort}`] }), (c) => c.connect()).catch((e: unknown) => e);
  assert.ok(err instanceof SshError && err.kind === 'refused', String(err));
});

test('netns: a node reachable only inside a network namespace', { skip: process.getuid?.() !== 0 ? 'needs root for ip netns' : false }, async () => {
  const ns = `flotilla-vt-${process.pid}`;
  await run('ip', ['netns', 'add', ns]);
  let inner: ManagedProcess | undefined;
  try {
    await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    // A second sshd with the fixture's config, inside the namespace (same port, other stack).
    inner = new ManagedProcess('ip', ['netns', 'exec', ns, '/usr/sbin/sshd', '-D', '-e', '-f', path.join(sshd.dir, 'sshd_config'), '-o', `PidFile=${path.join(scratch, 'inner.pid')}`], path.join(scratch, 'inner-sshd.log'));
    let out = '';
    for (let i = 0; i < 50 && !out; i++) {
      await sleep(100);
      out = await withConn(target({ netns: ns, node: 'inside' }), (c) => c.mustExec('ip -o link show | wc -l'), { readyTimeoutMs: 2000 }).catch(() => '');
    }
    assert.equal(out.trim(), '1', 'the command ran inside the namespace (only lo)');
    // The same address:port with a different pinned key is still refused through the namespace.
    const other = await keygen('other_ns_host');
    const err = await withConn(target({ netns: ns, node: 'inside', hostKey: other.pub }), (c) => c.connect()).catch((e: unknown) => e);
    assert.ok(err instanceof HostKeyMismatchError, String(err));
    assert.match(err.message, new RegExp(`in netns ${ns}`));
  } finally {
    await inner?.stop(2000);
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
});

test('tunnel and connectTcp: TCP from the node to a port it can reach', async () => {
  const server = net.createServer((s) => s.end('hello from the service\n'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    await withConn(target(), async (c) => {
      const t = await c.tunnel('127.0.0.1', port);
      try {
        const got = await new Promise<string>((resolve, reject) => {
          const s = net.connect(t.port, '127.0.0.1');
          let d = '';
          s.setEncoding('utf8').on('data', (x: string) => (d += x)).on('end', () => resolve(d)).on('error', reject);
        });
        assert.equal(got, 'hello from the service\n');
      } finally {
        await t.close();
      }
      const closedPort = await freePort();
      await assert.rejects(c.connectTcp('127.0.0.1', closedPort), /cannot connect to 127\.0\.0\.1:\d+ from the node/);
    });
  } finally {
    await new Promise((r) => server.close(r));
  }
});
