/**
 * Reading a node's serial console for first-boot progress and failure (console.ts), on small
 * samples: Ignition's and cloud-init's failure lines, the image's own FLOTILLA-FAILED marker,
 * healthy boots that must not read as failures, incremental reads with a grace period for the
 * marker, and the waits giving up with the failure itself.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { ConsoleWatch, consoleTail, FirstBootFailedError, FirstBootWatch, parseConsole, unlessFailed } from '../../src/provision/console';
import { consoleMarkers } from '../../src/provision/local/cluster';
import { waitForSsh } from '../../src/ssh';

const IGNITION_FAILED =
  'CRITICAL : Ignition failed: failed to create files: failed to create files: error creating file "/etc/motd": A file exists there already and overwrite is false';

/** A healthy Ignition first boot as the console shows it (the shape of a real one: kernel, Ignition's stdout, markers). */
const HEALTHY_IGNITION = [
  '[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)',
  '[    2.101234] EXT4-fs (vda): mounted filesystem with ordered data mode. Quota mode: none.',
  'INFO     : Ignition 2.14.0',
  'INFO     : Stage: files',
  'INFO     : files: createFilesystemsFiles: createFiles: op(1): [started]  writing file "/etc/hostname"',
  'INFO     : files: createFilesystemsFiles: createFiles: op(1): [finished] writing file "/etc/hostname"',
  'INFO     : files: op(2): [started]  processing unit "flotilla-etcd.service"',
  'WARNING  : files: op(3): unit "x.service" is enabled, but has no install section so enable does nothing',
  'INFO     : files: files passed',
  'INFO     : Ignition finished successfully',
  'FLOTILLA-READY first-boot 14.52',
  '[FAILED] Failed to start some-other.service - Something unrelated.',
  'FLOTILLA-READY ssh 21.80',
  '',
].join('\r\n');

const HEALTHY_CLOUD_INIT = [
  'Cloud-init v. 22.4.2 running \'init-local\' at Thu, 04 Dec 2025 01:40:01 +0000. Up 9.21 seconds.',
  'Cloud-init v. 22.4.2 running \'init\' at Thu, 04 Dec 2025 01:40:05 +0000. Up 13.00 seconds.',
  '2025-12-04 01:40:06,123 - schema.py[WARNING]: Invalid cloud-config provided: Please run \'sudo cloud-init schema --system\' to see the schema errors.',
  'ci-info: ++++++++++++++++++++++++++++++++++++++Net device info+++++++++++++++++++++++++++++++++++++++',
  'Cloud-init v. 22.4.2 running \'modules:final\' at Thu, 04 Dec 2025 01:40:20 +0000. Up 28.10 seconds.',
  'Cloud-init v. 22.4.2 finished at Thu, 04 Dec 2025 01:40:22 +0000. Datasource DataSourceNoCloud [seed=/dev/vdb][dsmode=net].  Up 30.01 seconds',
  'FLOTILLA-READY first-boot 30.05',
  'FLOTILLA-READY ssh 31.00',
  '',
].join('\n');

describe('parseConsole', () => {
  it('finds Ignition\'s failure line, with the whole error, wherever the console puts it', () => {
    for (const prefix of ['', '[   32.412345] ignition-firstboot[301]: ', '\x1b[0;1;31m']) {
      const text = `${HEALTHY_IGNITION.split('INFO     : files: files passed')[0]}${prefix}${IGNITION_FAILED}\r\nFLOTILLA-FAILED first-boot ignition 32.51 flotilla-ignition.service exit-code 1\r\n`;
      const r = parseConsole(text);
      assert.equal(r.failure?.stage, 'ignition');
      assert.equal(r.failure?.markerOnly, false);
      assert.ok(r.failure!.line.endsWith(IGNITION_FAILED), r.failure!.line);
      assert.doesNotMatch(r.failure!.line, /[\x00-\x1f]/);
      assert.equal(r.failure?.lineNumber, 9);
      assert.deepEqual(r.markers, {});
    }
  });

  it('finds cloud-init\'s failure lines (a module raised; a user script failed)', () => {
    const module = "2025-12-04 01:40:07,001 - util.py[WARNING]: Running module write-files (<module 'cloudinit.config.cc_write_files' from '/usr/lib/python3/dist-packages/cloudinit/config/cc_write_files.py'>) failed";
    const r = parseConsole(`${HEALTHY_CLOUD_INIT.split('ci-info')[0]}${module}\nFLOTILLA-FAILED first-boot cloud-init 14.90 cloud-init.service exit-code 1\n`);
    assert.deepEqual({ stage: r.failure?.stage, line: r.failure?.line, markerOnly: r.failure?.markerOnly }, { stage: 'cloud-init', line: module, markerOnly: false });
    const scripts = '[   40.01] cloud-init[412]: 2025-12-04 01:40:31,500 - cc_scripts_user.py[WARNING]: Failed to run module scripts-user (scripts in /var/lib/cloud/instance/scripts)';
    const r2 = parseConsole(`${HEALTHY_CLOUD_INIT.replace('FLOTILLA-READY first-boot 30.05\n', `${scripts}\n`)}`);
    assert.equal(r2.failure?.stage, 'cloud-init');
    assert.match(r2.failure!.line, /Failed to run module scripts-user/);
    assert.deepEqual(r2.markers, { ssh: 31 });
  });

  it('falls back to the image\'s FLOTILLA-FAILED marker, for failures that print nothing of their own', () => {
    const r = parseConsole('[    5.0] some kernel line\nFLOTILLA-FAILED first-boot cloud-init 12.00 cloud-init-local.service exit-code 1\n');
    assert.deepEqual(r.failure, { stage: 'cloud-init', line: 'FLOTILLA-FAILED first-boot cloud-init 12.00 cloud-init-local.service exit-code 1', lineNumber: 2, markerOnly: true });
    assert.equal(parseConsole('FLOTILLA-FAILED first-boot ignition 31.84 flotilla-ignition.service signal 9\n').failure?.stage, 'ignition');
  });

  it('reads healthy boots as healthy: markers only, no failure (unrelated [FAILED] units, schema warnings, Ignition warnings)', () => {
    assert.deepEqual(parseConsole(HEALTHY_IGNITION), { markers: { 'first-boot': 14.52, ssh: 21.8 } });
    assert.deepEqual(parseConsole(HEALTHY_CLOUD_INIT), { markers: { 'first-boot': 30.05, ssh: 31 } });
    assert.deepEqual(parseConsole(''), { markers: {} });
  });

  it('consoleMarkers (the SSH waits\' ready hint) reads the same parser from a file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-console-'));
    try {
      const f = path.join(dir, 'console.log');
      assert.deepEqual(consoleMarkers(f), {});
      fs.writeFileSync(f, HEALTHY_IGNITION);
      assert.deepEqual(consoleMarkers(f), { 'first-boot': 14.52, ssh: 21.8 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('consoleTail', () => {
  it('leaves out the config Ignition dumps on failure (it holds the private host key) and stops at the failure line', () => {
    // As on a real console: each line has its own kernel timestamp, then journald's identifier.
    const p = (t: number): string => `[   ${(14.5 + t / 100).toFixed(6)}] ignition-firstboot[154]: `;
    const text = [
      `${p(0)}INFO     : files: createFilesystemsFiles: createFiles: op(4): [finished] writing file "/etc/hosts"`,
      `${p(1)}files failed`,
      `${p(2)}Full config:`,
      `${p(3)}{`,
      `${p(4)}  "storage": {`,
      `${p(5)}    "files": [{ "path": "/etc/ssh/ssh_host_ed25519_key", "contents": { "source": "data:,-----BEGIN%20OPENSSH%20PRIVATE%20KEY-----" } }]`,
      `${p(6)}  }`,
      `${p(7)}}`,
      'FLOTILLA-FAILED first-boot ignition 14.60 flotilla-ignition.service exit-code 1',
      `${p(8)}${IGNITION_FAILED}`,
      'FLOTILLA-READY ssh 20.0',
      '',
    ].join('\r\n');
    assert.equal(parseConsole(text).failure?.lineNumber, 10);
    const tail = consoleTail(text, 10);
    assert.equal(tail, [
      `${p(0)}INFO     : files: createFilesystemsFiles: createFiles: op(4): [finished] writing file "/etc/hosts"`,
      `${p(1)}files failed`,
      `${p(2)}Full config: (5 lines of Ignition's config dump left out)`,
      'FLOTILLA-FAILED first-boot ignition 14.60 flotilla-ignition.service exit-code 1',
      `${p(8)}${IGNITION_FAILED}`,
    ].join('\n'));
    assert.doesNotMatch(consoleTail(text), /PRIVATE/);
    assert.equal(consoleTail('a\nb\nc\n', undefined, 2), 'c\n');
  });
});

describe('ConsoleWatch and FirstBootWatch', () => {
  it('reads what was appended; a cause line fails at once, the marker alone after the grace period', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-console-'));
    try {
      const f = path.join(dir, 'console.log');
      const launchedAt = 1_000_000;
      const w = new ConsoleWatch('wrk1', f, launchedAt, 2000);
      assert.equal(w.check(launchedAt + 1000), undefined, 'no console yet');
      fs.writeFileSync(f, HEALTHY_IGNITION.split('INFO     : files: files passed')[0]!);
      assert.equal(w.check(launchedAt + 20_000), undefined);
      fs.appendFileSync(f, 'FLOTILLA-FAILED first-boot ignition 32.51 flotilla-ignition.service exit-code 1\r\n');
      assert.equal(w.check(launchedAt + 32_600), undefined, 'marker alone: waits for the unit\'s own line');
      // Ignition's line reaches the console through journald, after the marker.
      fs.appendFileSync(f, `[   32.6] ignition-firstboot[301]: ${IGNITION_FAILED}\r\n`);
      const err = w.check(launchedAt + 33_000);
      assert.ok(err instanceof FirstBootFailedError);
      assert.ok(FirstBootFailedError.is(err));
      assert.equal(err.code, 'external');
      assert.equal(err.node, 'wrk1');
      assert.equal(err.stage, 'ignition');
      assert.ok(err.line.endsWith(IGNITION_FAILED));
      assert.equal(err.seconds, 33);
      assert.match(err.message, /^node wrk1: first boot failed in ignition \(seen 33\.0 s after launch\): \[ {3}32\.6\] ignition-firstboot\[301\]: CRITICAL : Ignition failed: .*"\/etc\/motd": A file exists there already and overwrite is false\n/);
      assert.match(err.message, new RegExp(`console log: ${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:10\\n--- last lines ---\\n`));
      assert.equal(w.check(), err, 'the same failure from then on');
      const noted = err.withNote('stopped the cluster\'s 1 VM');
      assert.match(noted.message, /overwrite is false\nstopped the cluster's 1 VM\nconsole log: /);

      const w2 = new ConsoleWatch('n2', path.join(dir, 'marker.log'), launchedAt, 2000);
      fs.writeFileSync(path.join(dir, 'marker.log'), 'FLOTILLA-FAILED first-boot cloud-init 12.00 cloud-init.service exit-code 1\n');
      assert.equal(w2.check(launchedAt + 12_100), undefined);
      const e2 = w2.check(launchedAt + 14_200);
      assert.equal(e2?.stage, 'cloud-init');
      assert.match(e2!.line, /^FLOTILLA-FAILED first-boot cloud-init 12\.00 cloud-init\.service exit-code 1$/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a cluster watch reports the first node that failed to every node\'s wait', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-console-'));
    try {
      const nodes = ['ctl1', 'wrk1', 'wrk2'].map((name) => ({ name, consoleLog: path.join(dir, `${name}.log`), launchedAt: 0 }));
      for (const n of nodes) fs.writeFileSync(n.consoleLog, HEALTHY_IGNITION.split('INFO     : files: files passed')[0]!);
      const boot = new FirstBootWatch(nodes);
      assert.equal(boot.failure(1000), undefined);
      fs.appendFileSync(nodes[2]!.consoleLog, `${IGNITION_FAILED}\n`);
      assert.equal(boot.failure(1050), undefined, 'polls at most every 100 ms');
      const err = boot.failure(1200);
      assert.equal(err?.node, 'wrk2');
      assert.equal(boot.failure(5000), err);
      assert.equal(boot.saw('ctl1', 'ssh'), false);
      fs.appendFileSync(nodes[0]!.consoleLog, 'FLOTILLA-READY ssh 20.1\n');
      assert.equal(boot.saw('ctl1', 'ssh'), true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('waits end with the failure', () => {
  it('unlessFailed: the wait\'s result when nothing failed; the failure as soon as it is seen', async () => {
    assert.equal(await unlessFailed(new Promise((r) => setTimeout(() => r('done'), 50)), () => undefined, 10), 'done');
    let failed: Error | undefined;
    setTimeout(() => (failed = new Error('first boot failed')), 60);
    const t0 = Date.now();
    const never = new Promise<string>((_, reject) => setTimeout(() => reject(new Error('late')), 400));
    await assert.rejects(unlessFailed(never, () => failed, 10), /first boot failed/);
    assert.ok(Date.now() - t0 < 300, `gave up after ${Date.now() - t0} ms`);
    await new Promise((r) => setTimeout(r, 400)); // the wait's own late rejection is not unhandled
  });

  it('waitForSsh throws the abort\'s error as it is (no SSH attempt while the console says nothing)', async () => {
    const failure = new FirstBootFailedError('wrk1', 'ignition', IGNITION_FAILED, '/x/console.log', 9, 32, '');
    const t0 = Date.now();
    await assert.rejects(
      waitForSsh({ node: 'wrk1', host: '127.0.0.1', port: 1, user: 'core', hostKey: 'ssh-ed25519 AAAA', privateKey: 'x' }, Date.now() + 60_000, { readyHint: () => false, hintlessIntervalMs: 60_000, abort: () => failure }),
      (e: unknown) => e === failure,
    );
    assert.ok(Date.now() - t0 < 1000);
    await assert.rejects(
      waitForSsh({ node: 'wrk1', host: '127.0.0.1', port: 1, user: 'core', hostKey: 'ssh-ed25519 AAAA', privateKey: 'x' }, Date.now() + 60_000, { readyHint: () => false, hintlessIntervalMs: 60_000, abort: () => 'QEMU exited' }),
      /giving up: QEMU exited/,
    );
  });
});
