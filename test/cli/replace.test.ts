/**
 * `flotilla replace` input handling, without VMs: usage errors name the flag, a missing cluster
 * is exit 3, a libvirt cluster is refused, and replaceNodes refuses what it cannot do before
 * touching anything (no saved spec, unknown or repeated nodes, a spec that changes addresses).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadSpecObject } from '../../src/config/load';
import { generateKeyPair } from '../../src/ssh/keys';
import { cli } from '../helpers/cli';

const NAME = 'rcli';

describe('flotilla replace: input', () => {
  let state: string;
  let specDir: string;
  const saved = process.env.FLOTILLA_STATE_DIR;
  const spec = (addr2 = '10.99.0.12') =>
    loadSpecObject({ name: NAME, nodes: [{ name: 'node1', address: '10.99.0.11' }, { name: 'node2', address: addr2 }, { name: 'node3', address: '10.99.0.13' }], ssh: { authorizedKeys: [generateKeyPair().publicKey] } });

  before(() => {
    state = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-replace-cli-'));
    specDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-replace-spec-'));
    process.env.FLOTILLA_STATE_DIR = state;
    const dir = path.join(state, 'clusters', NAME);
    fs.mkdirSync(path.join(dir, 'ssh'), { recursive: true });
    const key = generateKeyPair();
    fs.writeFileSync(path.join(dir, 'ssh', 'id_ed25519'), key.privateKey);
    fs.writeFileSync(path.join(dir, 'ssh', 'id_ed25519.pub'), `${key.publicKey}\n`);
    const s = spec();
    const record = {
      version: 1, name: NAME, platform: 'local', format: 'cloud-config', netns: `flotilla-${NAME}`, createdAt: new Date().toISOString(), user: 'core',
      sshKeyFile: path.join(dir, 'ssh', 'id_ed25519'), knownHostsFile: path.join(dir, 'ssh', 'known_hosts'), tls: true, keyPrefix: `/flotilla/${NAME}/`, clientPort: 2379,
      etcdEndpoints: [], timeline: {}, phases: [], cpuSeconds: {},
      nodes: s.nodes.map((n, i) => ({ name: n.name, address: n.address, role: 'controller', etcdMember: true, metadata: {}, sshPort: 2201 + i, hostPublicKey: key.publicKey, pidFile: path.join(dir, n.name, 'qemu.pid'), consoleLog: path.join(dir, n.name, 'console.log') })),
    };
    fs.writeFileSync(path.join(dir, 'cluster.json'), JSON.stringify(record));
    fs.writeFileSync(path.join(state, 'clusters', 'lv.json'), '');
    const lvDir = path.join(state, 'clusters', 'lv');
    fs.mkdirSync(lvDir, { recursive: true });
    fs.writeFileSync(path.join(lvDir, 'cluster.json'), JSON.stringify({ ...record, name: 'lv', platform: 'libvirt' }));
    fs.writeFileSync(path.join(specDir, 'lv.json'), JSON.stringify({ name: 'lv', platform: 'libvirt', nodes: s.nodes.map((n) => ({ name: n.name, address: n.address })), ssh: { authorizedKeys: [generateKeyPair().publicKey] } }));
    fs.writeFileSync(path.join(specDir, 'moved.json'), JSON.stringify({ name: NAME, nodes: [{ name: 'node1', address: '10.99.0.11' }, { name: 'node2', address: '10.99.0.99' }, { name: 'node3', address: '10.99.0.13' }], ssh: { authorizedKeys: [generateKeyPair().publicKey] } }));
  });

  after(() => {
    if (saved === undefined) delete process.env.FLOTILLA_STATE_DIR;
    else process.env.FLOTILLA_STATE_DIR = saved;
    fs.rmSync(state, { recursive: true, force: true });
    fs.rmSync(specDir, { recursive: true, force: true });
  });

  it('needs --nodes or --all, not both', async () => {
    let r = await cli('replace', '--name', NAME);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--nodes node1,node2 or --all/);
    r = await cli('replace', '--name', NAME, '--all', '--nodes', 'node1');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--nodes or --all, not both/);
  });

  it('refuses bad and repeated node names, naming the flag', async () => {
    let r = await cli('replace', '--name', NAME, '--nodes', 'node1,Bad_Name');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--nodes: not a node name: "Bad_Name"/);
    r = await cli('replace', '--name', NAME, '--nodes', 'node1,node1');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /named twice/);
  });

  it('a missing cluster is exit 3; a libvirt one made without libvirt.json names the file, before touching anything', async () => {
    let r = await cli('replace', '--name', 'nosuch', '--all');
    assert.equal(r.code, 3);
    assert.match(r.stderr, /no cluster named nosuch/);
    r = await cli('replace', '--name', 'lv', '--all', '--spec', path.join(specDir, 'lv.json'));
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /lv\/node1\/libvirt\.json is missing .* replace needs it/);
    // A damaged file is named too (exit 2), and nothing is touched.
    const saved = path.join(state, 'clusters', 'lv', 'node1', 'libvirt.json');
    fs.mkdirSync(path.dirname(saved), { recursive: true });
    fs.writeFileSync(saved, '{"cluster": "lv",');
    r = await cli('replace', '--name', 'lv', '--all', '--spec', path.join(specDir, 'lv.json'));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /lv\/node1\/libvirt\.json: not JSON/);
    fs.rmSync(path.dirname(saved), { recursive: true, force: true });
  });

  it('without a saved spec it asks for --spec', async () => {
    const r = await cli('replace', '--name', NAME, '--nodes', 'node2');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no saved spec .* pass --spec FILE/);
  });

  it('refuses unknown nodes and a spec that moves a node, before touching anything', async () => {
    fs.writeFileSync(path.join(state, 'clusters', NAME, 'spec.json'), JSON.stringify(spec()));
    let r = await cli('replace', '--name', NAME, '--nodes', 'node7');
    assert.equal(r.code, 3);
    assert.match(r.stderr, /nodes: cluster rcli has no node node7 \(nodes: node1, node2, node3\)/);
    r = await cli('replace', '--name', NAME, '--nodes', 'node2', '--spec', path.join(specDir, 'moved.json'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--spec cannot replace nodes of cluster rcli: 1 problem\n.*nodes\[1\]\.address: is "10\.99\.0\.99", the running cluster has "10\.99\.0\.12"; a replaced node keeps its address/);
  });
});
