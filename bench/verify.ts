/**
 * Verification transport benchmark: 30 checks x 3 nodes, two ways, same run, same sshd.
 *
 * - pooled: Flotilla's way: one pinned ssh2 connection per node, opened in parallel, every
 *   check a command on it (channels queued per connection).
 * - per-check ssh: the Testinfra/goss-over-ssh way: one `/usr/bin/ssh` process (new TCP
 *   connection, key exchange, authentication) per check.
 *
 * The three "nodes" are three users of one sshd fixture, created for the run with /bin/sh
 * as their shell (so neither side pays for a heavy login rc file) and removed afterwards.
 * Both ways run the same 90 commands with the same concurrency (6 in flight per node).
 *
 *   npx tsx bench/verify.ts            (as root: it creates and removes the users)
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startSshd } from '../test/fixtures/sshd';
import { run } from '../test/fixtures/proc';
import { NodeConnection } from '../src/ssh';

const NODES = 3;
const CHECKS = 30;
const PER_NODE_CONCURRENCY = 6;

/** Typical check commands: files, services, small command output. */
const COMMANDS = Array.from({ length: CHECKS }, (_, i) =>
  [`stat -c '%a %n' /etc/hostname`, 'hostname', `test -e /etc/os-release && echo present-${i}`, 'cat /proc/loadavg', `echo check-${i}`][i % 5]!,
);

async function limit<T>(items: readonly T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: the benchmark creates three temporary users');
  const users = Array.from({ length: NODES }, (_, i) => `flotbench${i + 1}`);
  const home = path.join(os.tmpdir(), `flotilla-bench-home-${process.pid}`);
  // OpenSSH's default MaxStartups (10:30:100) drops handshakes beyond 10 at once; the
  // per-check side opens 18 at a time, so it gets room to run rather than fail.
  const sshd = await startSshd({ extraConfig: ['MaxStartups 200'] });
  try {
    // sshd reads authorized_keys as the logging-in user: let the bench users reach it (public data only).
    fs.chmodSync(sshd.dir, 0o755);
    fs.chmodSync(path.join(sshd.dir, 'authorized_keys'), 0o644);
    for (const u of users) execFileSync('useradd', ['--no-create-home', '--home-dir', home, '--shell', '/bin/sh', '--password', '*', u]); // '*': no password, not locked (sshd refuses locked accounts)
    const rounds: Array<{ pooled: number; perCheck: number }> = [];
    for (let round = 0; round < 3; round++) {
      // Pooled: connect all nodes in parallel, then every check over its node's connection.
      const t0 = performance.now();
      const conns = users.map((u, i) => new NodeConnection({ node: `n${i + 1}`, host: sshd.host, port: sshd.port, user: u, hostKey: sshd.hostKeyPublic, privateKey: sshd.clientPrivateKey }, { maxChannels: PER_NODE_CONCURRENCY }));
      await Promise.all(conns.map((c) => c.connect()));
      let failures = 0;
      await Promise.all(conns.map((c) => limit(COMMANDS, PER_NODE_CONCURRENCY, async (cmd) => {
        if ((await c.exec(cmd)).code !== 0) failures++;
      })));
      const pooled = performance.now() - t0;
      await Promise.all(conns.map((c) => c.close()));
      if (failures) throw new Error(`${failures} pooled checks failed`);

      // One ssh process per check, pinned the same way (known_hosts of the fixture).
      const t1 = performance.now();
      await Promise.all(users.map((u) => limit(COMMANDS, PER_NODE_CONCURRENCY, async (cmd) => {
        const args = sshd.sshArgs().map((a) => (a === `${sshd.user}@127.0.0.1` ? `${u}@127.0.0.1` : a));
        await run('/usr/bin/ssh', [...args, '--', cmd], { timeoutMs: 30_000 });
      })));
      const perCheck = performance.now() - t1;
      rounds.push({ pooled, perCheck });
      console.log(`round ${round + 1}: pooled ${pooled.toFixed(0)} ms, ssh per check ${perCheck.toFixed(0)} ms, ratio ${(perCheck / pooled).toFixed(1)}x`);
    }
    const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const p = med(rounds.map((r) => r.pooled));
    const s = med(rounds.map((r) => r.perCheck));
    console.log(`\n${CHECKS} checks x ${NODES} nodes (${CHECKS * NODES} commands, ${PER_NODE_CONCURRENCY} in flight per node), median of ${rounds.length} rounds:`);
    console.log(`  pooled ssh2 connections: ${p.toFixed(0)} ms`);
    console.log(`  one ssh process per check: ${s.toFixed(0)} ms`);
    console.log(`  ratio: ${(s / p).toFixed(1)}x (goal >= 5x)`);
  } catch (err) {
    console.error(`--- sshd log ---\n${sshd.logTail(15)}`);
    throw err;
  } finally {
    await sshd.stop(); // first: userdel refuses users with live sessions
    for (const u of users) {
      try {
        execFileSync('userdel', [u], { stdio: 'ignore' });
      } catch {
        /* not created */
      }
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
