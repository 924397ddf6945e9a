/**
 * Ignition entries that the node image makes fail at first boot (a file the image ships,
 * written without "overwrite": true; anything below a shipped file) are refused when the spec
 * is loaded (validate, render, up) and on every render, naming the snippet, the path, the nodes
 * and the fix. cloud-config write_files always overwrite, and aws boots other images.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadSpecObject, loadSpecText } from '../../src/config/load';
import { renderCluster } from '../../src/config/render';
import { resolveSpec } from '../../src/config/validate';
import { ensureSecrets } from '../../src/config/secrets';
import type { ClusterSpec } from '../../src/config/spec';
import { readTextFile } from '../../src/util/fs';
import { FlotillaError } from '../../src/errors';
import { imageFileConflicts } from '../../src/config/image-files-check';
import { NODE_IMAGE_FILES } from '../../src/config/image-files';
import { cli } from '../helpers/cli';
import { makeSpec, nodes, testPublicKey } from '../helpers/spec';

const ign = (storage: Record<string, unknown>): string => JSON.stringify({ ignition: { version: '3.3.0' }, storage });
const motd = (extra: Record<string, unknown> = {}) => ({ path: '/etc/motd', mode: 420, contents: { source: 'data:,hi%0A' }, ...extra });

function loadError(spec: ClusterSpec): FlotillaError {
  try {
    loadSpecObject(spec);
  } catch (err) {
    assert.ok(FlotillaError.is(err), String(err));
    return err;
  }
  assert.fail('the spec loaded');
}

/** The spec as resolveSpec gives it, without the load-time check: what the renderer sees from the TS API or a saved spec.json. */
const resolvedOnly = (spec: ClusterSpec) => resolveSpec(spec, { baseDir: process.cwd(), readFile: readTextFile });

test('the issue: a worker snippet writing /etc/motd without overwrite is refused at load, naming snippet, path, nodes and fix', () => {
  const spec = makeSpec({
    format: 'ignition',
    nodes: nodes(3, (i) => ({ role: i === 0 ? 'controller' : 'worker' })),
    snippets: [{ format: 'ignition', nodes: ['node2', 'node3'], contents: ign({ files: [motd()] }) }],
  });
  const err = loadError(spec);
  assert.equal(err.code, 'invalid-input');
  assert.equal(err.problems.length, 1);
  const p = err.problems[0]!;
  assert.equal(p.path, 'snippets[0].contents');
  assert.match(p.message, /storage\.files\[0\] \(nodes node2, node3\): \/etc\/motd already exists in the node image/);
  assert.match(p.message, /has no "overwrite": true/);
  assert.match(p.message, /A file exists there already and overwrite is false/);
  assert.match(p.message, /add "overwrite": true to the entry/);
  // Fixed as the example now is: loads and renders.
  const fixed = loadSpecObject({ ...spec, snippets: [{ ...spec.snippets![0]!, contents: ign({ files: [motd({ overwrite: true })] }) }] });
  const out = renderCluster(fixed, ensureSecrets(fixed));
  const files = (JSON.parse(out[1]!.userData) as { storage: { files: Array<{ path: string; overwrite?: boolean }> } }).storage.files;
  assert.equal(files.find((f) => f.path === '/etc/motd')?.overwrite, true);
});

test('the renderer refuses it too, where the merged config exists (TS API, saved specs, up --format ignition)', () => {
  const spec = resolvedOnly(makeSpec({ nodes: nodes(2), snippets: [{ format: 'ignition', nodes: ['node2'], contents: ign({ files: [{ path: '/etc/sudoers', overwrite: false, contents: { source: 'data:,' } }] }) }] }));
  const secrets = ensureSecrets(spec);
  // The spec is cloud-config: its Ignition snippet only matters for an Ignition render.
  assert.equal(renderCluster(spec, secrets).length, 2);
  assert.throws(
    () => renderCluster(spec, secrets, { format: 'ignition' }),
    (e: unknown) =>
      FlotillaError.is(e) &&
      e.code === 'invalid-input' &&
      /^Ignition config for node node2: 1 problem/.test(e.message) &&
      /snippets\[0\]\.contents: Ignition snippet, storage\.files\[0\] \(node node2\): \/etc\/sudoers already exists in the node image and the entry says "overwrite": false/.test(e.message),
  );
  // Only through the internal option (tests that boot a failing config): no check.
  assert.equal(renderCluster(spec, secrets, { format: 'ignition', imageFiles: [] }).length, 2);
});

test('every path the brief names is in the list, and each one is refused without overwrite', () => {
  const list = NODE_IMAGE_FILES;
  const named = ['/etc/motd', '/etc/hostname', '/etc/hosts', '/etc/issue', '/etc/fstab', '/etc/ssh/sshd_config', '/etc/sudoers', '/etc/resolv.conf', '/etc/os-release', '/etc/systemd/system.conf', '/etc/systemd/journald.conf'];
  for (const p of named) {
    assert.ok(list.includes(p), p);
    const conflicts = imageFileConflicts({ storage: { files: [{ path: p }] } }, list);
    assert.deepEqual(conflicts.map((c) => [c.path, c.reason]), [[p, 'exists']], p);
    assert.deepEqual(imageFileConflicts({ storage: { files: [{ path: p, overwrite: true }] } }, list), [], p);
  }
  // Not shipped: fine without overwrite.
  assert.deepEqual(imageFileConflicts({ storage: { files: [{ path: '/etc/flotilla/extra.conf' }, { path: '/etc/motd.d/10-extra' }] } }, list), []);
});

test('the rendered files of every example and a plain Ignition spec pass (the template marks what it writes overwrite: true)', () => {
  for (const f of ['single-node.yaml', 'three-node.yaml', 'five-node-ignition.yaml']) {
    const file = path.join(__dirname, '..', '..', 'examples', f);
    const spec = loadSpecText(fs.readFileSync(file, 'utf8'), file);
    assert.ok(renderCluster(spec, ensureSecrets(spec), { format: 'ignition' }).length > 0, f);
  }
  // A snippet entry merged over a template entry keeps the template's overwrite: true.
  const spec = loadSpecObject(makeSpec({ format: 'ignition', snippets: [{ format: 'ignition', contents: ign({ files: [{ path: '/etc/hosts', contents: { source: 'data:,127.0.0.1%20localhost%0A' } }] }) }] }));
  const hosts = (JSON.parse(renderCluster(spec, ensureSecrets(spec))[0]!.userData) as { storage: { files: Array<{ path: string; overwrite?: boolean; contents: { source: string } }> } }).storage.files.filter((x) => x.path === '/etc/hosts');
  assert.equal(hosts.length, 1);
  assert.equal(hosts[0]!.overwrite, true);
  assert.equal(hosts[0]!.contents.source, 'data:,127.0.0.1%20localhost%0A');
});

test('below a shipped file nothing can be created, overwrite or not; links and directories are checked too', () => {
  const err = loadError(
    makeSpec({
      format: 'ignition',
      snippets: [
        { format: 'ignition', contents: ign({ files: [{ path: '/etc/flotilla/ok.conf' }, { path: '/etc/hostname/extra', overwrite: true }] }) },
        { format: 'ignition', contents: ign({ links: [{ path: '/etc/localtime', target: '/usr/share/zoneinfo/Europe/Berlin' }], directories: [{ path: '/etc/issue' }] }) },
      ],
    }),
  );
  const messages = err.problems.map((p) => `${p.path}: ${p.message}`);
  assert.equal(messages.length, 3, messages.join('\n'));
  assert.match(messages[0]!, /^snippets\[0\]\.contents: Ignition snippet, storage\.files\[1\] \(node node1\): \/etc\/hostname\/extra: \/etc\/hostname is a file in the node image, so Ignition cannot create anything below it/);
  assert.match(messages[1]!, /^snippets\[1\]\.contents: Ignition snippet, storage\.directories\[0\] \(node node1\): \/etc\/issue already exists/);
  assert.match(messages[2]!, /^snippets\[1\]\.contents: Ignition snippet, storage\.links\[0\] \(node node1\): \/etc\/localtime already exists/);
  // A directory entry that replaces the file (overwrite: true) makes paths below it possible.
  assert.deepEqual(imageFileConflicts({ storage: { directories: [{ path: '/etc/motd', overwrite: true }], files: [{ path: '/etc/motd/a' }] } }, NODE_IMAGE_FILES), []);
});

test('a snippet file is named; the spec file gives line and column', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-imgfiles-'));
  try {
    fs.writeFileSync(path.join(dir, 'motd.ign'), ign({ files: [motd()] }));
    const specFile = path.join(dir, 'spec.yaml');
    fs.writeFileSync(specFile, `name: t\nformat: ignition\nnodes: [{name: a}, {name: b}]\nssh: {authorizedKeys: ["${testPublicKey()}"]}\nsnippets:\n  - format: ignition\n    nodes: [b]\n    file: motd.ign\n`);
    const r = await cli('validate', specFile);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`${specFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:8:11: snippets\\[0\\]\\.file: Ignition snippet motd\\.ign, storage\\.files\\[0\\] \\(node b\\): /etc/motd already exists in the node image`));
    const render = await cli('render', '--spec', specFile, '--out', path.join(dir, 'out'));
    assert.equal(render.code, 2);
    assert.match(render.stderr, /snippets\[0\]\.file: .*add "overwrite": true/);
    assert.equal(fs.existsSync(path.join(dir, 'out')), false, 'nothing written');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('own templates that drop overwrite are caught and named', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-imgfiles-'));
  try {
    const builtin = fs.readFileSync(path.join(__dirname, '..', '..', 'templates', 'ignition.json.hbs'), 'utf8');
    assert.match(builtin, /"overwrite": true, /);
    fs.writeFileSync(path.join(dir, 'ignition.json.hbs'), builtin.replace('"overwrite": true, ', ''));
    const err = loadError(makeSpec({ format: 'ignition', templates: dir }));
    assert.ok(err.problems.length >= 2);
    assert.ok(err.problems.some((p) => /^the rendered Ignition config \(ignition\.json\.hbs from .*\), storage\.files\[\d+\] \(node node1\): \/etc\/hostname already exists/.test(p.message)), err.message);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('cloud-config write_files always overwrite, and aws nodes boot other images: neither is checked', () => {
  const cc = loadSpecObject(makeSpec({ snippets: [{ format: 'cloud-config', contents: 'write_files:\n  - path: /etc/motd\n    content: hi\n' }] }));
  assert.equal(renderCluster(cc, ensureSecrets(cc)).length, 1);
  const aws = loadSpecObject(makeSpec({ platform: 'aws', format: 'ignition', snippets: [{ format: 'ignition', contents: ign({ files: [motd()] }) }] }));
  assert.equal(renderCluster(aws, ensureSecrets(aws)).length, 1);
  // The same snippet on libvirt (Flotilla's image) is refused.
  assert.match(loadError(makeSpec({ platform: 'libvirt', format: 'ignition', snippets: [{ format: 'ignition', contents: ign({ files: [motd()] }) }] })).message, /\/etc\/motd already exists in the node image/);
});
