/**
 * Real VM: a first boot that fails is reported within seconds, not after up's 10-minute SSH
 * deadline. One Ignition node whose snippet writes /etc/motd (the image has it) without
 * "overwrite": true — the issue's own failure. Loading such a spec is refused (image-files.test.ts),
 * so the spec is resolved without that check and `up` renders with the internal `imageFiles: []`
 * (no user flag can do this). up must fail with FirstBootFailedError naming the node, the stage
 * (ignition) and Ignition's console line, stop the VM and keep the cluster's files for
 * inspection; `down` then removes everything. The same for cloud-init: one cloud-config node
 * whose write_files entry lies below a file the image has (/etc/hostname/extra).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { loadSpecObject } from '../../src/config/load';
import { resolveSpec } from '../../src/config/validate';
import { readTextFile } from '../../src/util/fs';
import { FlotillaError } from '../../src/errors';
import { clusterDir } from '../../src/cluster/store';
import { FirstBootFailedError, readConsole } from '../../src/provision/console';
import { namespaceExists, runningPid } from '../../src/provision/local/qemu';
import { type PhaseEvent } from '../../src/provision/up';
import { downLocal, upLocal } from '../../src/provision/local/up';
import { readRecord } from '../../src/cluster/store';
import { testPublicKey } from '../helpers/spec';

const NAME = 'fbfail';
const CC_NAME = 'fbfailcc';
const log = (msg: string): void => void process.stderr.write(`# ${msg}\n`);

after(async () => {
  await downLocal(NAME);
  await downLocal(CC_NAME);
});

test('up fails fast when Ignition fails at first boot: node, stage and console line; VM stopped, files kept until down', { timeout: 30 * 60_000 }, async () => {
  await downLocal(NAME); // a previous run that died mid-way
  const raw = {
    name: NAME,
    format: 'ignition' as const,
    nodes: [{ name: 'node1' }],
    ssh: { authorizedKeys: [testPublicKey()] },
    snippets: [{ format: 'ignition' as const, contents: JSON.stringify({ ignition: { version: '3.3.0' }, storage: { files: [{ path: '/etc/motd', mode: 420, contents: { source: 'data:,will%20not%20be%20written%0A' } }] } }) }],
  };
  // What a user gets: refused before anything boots.
  assert.throws(() => loadSpecObject(raw), /\/etc\/motd already exists in the node image/);
  const spec = resolveSpec(raw, { baseDir: process.cwd(), readFile: readTextFile });

  const events: PhaseEvent[] = [];
  let launchedAt = 0;
  const t0 = Date.now();
  let err: unknown;
  try {
    await upLocal({
      spec,
      imageFiles: [],
      progress: (ev) => {
        events.push(ev);
        if (ev.phase === 'launch' && ev.state === 'done') launchedAt = Date.now();
        if (ev.state !== 'info' || ev.phase !== 'image') log(`${ev.phase} ${ev.state}${ev.seconds !== undefined ? ` ${ev.seconds.toFixed(1)}s` : ''}${ev.detail ? ` ${ev.detail}` : ''}`);
      },
    });
  } catch (e) {
    err = e;
  }
  const failedAt = Date.now();
  assert.ok(FlotillaError.is(err), `up should fail, got ${String(err)}`);
  assert.ok(FirstBootFailedError.is(err), `a FirstBootFailedError, got: ${(err as Error).message}`);
  log(`up failed ${((failedAt - t0) / 1000).toFixed(1)} s after it started, ${((failedAt - launchedAt) / 1000).toFixed(1)} s after launch:\n${err.message.split('\n').slice(0, 3).join('\n')}`);
  assert.equal(err.code, 'external');
  assert.equal(err.node, 'node1');
  assert.equal(err.stage, 'ignition');
  assert.match(err.line, /Ignition failed: .*error creating file "\/etc\/motd": A file exists there already and overwrite is false/);
  assert.match(err.message, /^node node1: first boot failed in ignition \(seen \d+\.\d s after launch\): .*Ignition failed: .*\/etc\/motd/);
  assert.match(err.message, new RegExp(`stopped the cluster's 1 VM; its files stay in ${clusterDir(NAME)} until 'flotilla down --name ${NAME}'`));

  // Fast: soon after the guest printed it (its failure marker carries the guest's uptime), not at up's 10-minute deadline.
  const consoleLog = path.join(clusterDir(NAME), 'node1', 'console.log');
  const text = fs.readFileSync(consoleLog, 'latin1');
  const marker = /FLOTILLA-FAILED first-boot ignition ([0-9.]+) flotilla-ignition\.service (\S+) (\S*)/.exec(text);
  assert.ok(marker, `the image's failure marker is on the console:\n${text.slice(-3000)}`);
  log(`guest uptime at the failure marker: ${marker[1]} s (${marker[2]} ${marker[3]}); seen by up ${err.seconds!.toFixed(1)} s after launch`);
  assert.ok(err.seconds! < 300, `seen ${err.seconds} s after launch`);
  assert.ok(err.seconds! - Number(marker[1]) < 20, `reported ${(err.seconds! - Number(marker[1])).toFixed(1)} s after the guest's marker`);
  assert.equal(readConsole(consoleLog).failure?.stage, 'ignition');
  assert.ok(events.some((e) => e.phase === 'kernel' && e.state === 'done'));
  assert.ok(!events.some((e) => e.phase === 'first-boot' && e.state === 'done'));

  // Left as documented: VM stopped, namespace gone, record, console and rendered config kept.
  const record = readRecord(NAME);
  assert.ok(record, 'cluster record kept');
  for (const n of record.nodes) assert.equal(runningPid(n.pidFile), undefined, `${n.name}'s QEMU stopped`);
  assert.equal(namespaceExists(record.netns!), false);
  assert.ok(fs.existsSync(path.join(clusterDir(NAME), 'node1', 'rendered.ign')));
  // Ignition prints its whole config on failure (the private host key too): the error leaves it out.
  assert.match(text, /Full config:/);
  assert.doesNotMatch(err.message, /PRIVATE%20KEY|"path": "\/etc/);
  assert.match(err.message, /Full config: \(\d+ lines of Ignition's config dump left out\)\n(.*\n)?.*CRITICAL : Ignition failed: [^\n]*$/);
  // The error is kept with the other e2e artifacts (not the console: it holds that dump).
  const artifacts = path.resolve(process.env.FLOTILLA_TEST_ARTIFACTS ?? path.join(__dirname, '..', '..', 'test-artifacts'), 'first-boot-failure');
  fs.mkdirSync(artifacts, { recursive: true });
  fs.writeFileSync(path.join(artifacts, 'error.txt'), `${err.message}\n`);
  const down = await downLocal(NAME);
  assert.equal(down.existed, true);
  assert.equal(fs.existsSync(clusterDir(NAME)), false);
});

test('the same watch catches cloud-init: a failed module stops up with node, stage cloud-init and the console line', { timeout: 30 * 60_000 }, async () => {
  await downLocal(CC_NAME);
  const spec = loadSpecObject({
    name: CC_NAME,
    nodes: [{ name: 'node1' }],
    ssh: { authorizedKeys: [testPublicKey()] },
    // cloud-config is not checked before boot (write_files overwrite); this one still cannot work.
    snippets: [{ format: 'cloud-config', contents: 'write_files:\n  - path: /etc/hostname/extra\n    content: x\n' }],
  });
  const t0 = Date.now();
  let err: unknown;
  try {
    await upLocal({ spec });
  } catch (e) {
    err = e;
  }
  assert.ok(FirstBootFailedError.is(err), `a FirstBootFailedError, got: ${String((err as Error | undefined)?.message ?? err)}`);
  log(`up failed ${((Date.now() - t0) / 1000).toFixed(1)} s after it started: ${err.message.split('\n')[0]}`);
  assert.equal(err.node, 'node1');
  assert.equal(err.stage, 'cloud-init');
  assert.match(err.line, /Running module write-files \(.*\) failed|FLOTILLA-FAILED first-boot cloud-init/);
  assert.ok(err.seconds! < 300, `seen ${err.seconds} s after launch`);
  const record = readRecord(CC_NAME);
  assert.ok(record);
  for (const n of record.nodes) assert.equal(runningPid(n.pidFile), undefined, `${n.name}'s QEMU stopped`);
  await downLocal(CC_NAME);
  assert.equal(fs.existsSync(clusterDir(CC_NAME)), false);
});
