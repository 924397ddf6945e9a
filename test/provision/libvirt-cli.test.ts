/**
 * `--platform` on `up` and `down`, checked before anything is built or started: a bad choice, a
 * spec for a platform `up` does not run, and a `down` whose flag contradicts the cluster's record
 * are refused with a usage error, and the record is left as it was. A libvirt record is found
 * running through libvirt's pidfile, not Flotilla's.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { nodeRunning } from '../../src/provision/up';
import { type NodeRecord } from '../../src/cluster/store';
import { cli } from '../helpers/cli';

describe('flotilla up/down --platform', () => {
  let state: string;
  const saved = process.env.FLOTILLA_STATE_DIR;

  before(() => {
    state = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-platform-'));
    process.env.FLOTILLA_STATE_DIR = state;
  });
  after(() => {
    if (saved === undefined) delete process.env.FLOTILLA_STATE_DIR;
    else process.env.FLOTILLA_STATE_DIR = saved;
    fs.rmSync(state, { recursive: true, force: true });
  });

  it('up refuses an unknown platform, naming the choices', async () => {
    const r = await cli('up', '--nodes', '1', '--platform', 'xen');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--platform must be one of local, libvirt \(got "xen"\)/);
    assert.equal(fs.existsSync(path.join(state, 'clusters')), false, 'nothing written');
  });

  it('up refuses a spec for AWS', async () => {
    const spec = path.join(state, 'aws.yaml');
    fs.writeFileSync(spec, 'name: a\nplatform: aws\nnodes: [{ name: n1 }]\nssh: { authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA16AmAcqpS7fk81l5B7E7LuolGHY75Q8SYBK73OUG+k x"] }\n');
    const r = await cli('up', '--spec', spec, '--platform', 'libvirt');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /spec platform is aws; up runs local and libvirt clusters/);
  });

  it('down refuses a --platform that contradicts the record, and leaves it', async () => {
    const dir = path.join(state, 'clusters', 'c1');
    fs.mkdirSync(dir, { recursive: true });
    const record = { version: 1, name: 'c1', platform: 'local', netns: 'flotilla-c1', nodes: [] };
    fs.writeFileSync(path.join(dir, 'cluster.json'), JSON.stringify(record));
    const r = await cli('down', '--name', 'c1', '--platform', 'libvirt');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cluster c1 runs on local, not libvirt/);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'cluster.json'), 'utf8')), record);
  });

  it("a libvirt node is running only while libvirt's pidfile names a live QEMU for its domain", async () => {
    const pidFile = path.join(state, 'dom.pid');
    const node = (domain: string): NodeRecord => ({ name: 'n1', address: '10.99.0.11', role: 'worker', etcdMember: false, metadata: {}, sshPort: 2201, hostPublicKey: '', pidFile, domain, consoleLog: '' });
    // A process whose argv looks like libvirt's QEMU for domain flotilla-c-n1: a shell renamed by
    // exec -a, its script's positional arguments standing in for QEMU's (`; :` keeps it from exec'ing sleep).
    const child = spawn('bash', ['-c', "exec -a /usr/bin/qemu-system-x86_64 bash -c 'sleep 300; :' qemu -name guest=flotilla-c-n1,debug-threads=on"], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    try {
      await new Promise((r) => child.once('spawn', r));
      fs.writeFileSync(pidFile, `${child.pid}\n`);
      // Until the outer shell has exec'd, its argv is the launcher's.
      for (let i = 0; i < 100 && !fs.readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').startsWith('/usr/bin/qemu-system-x86_64\0'); i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(nodeRunning(node('flotilla-c-n1')), true);
      assert.equal(nodeRunning(node('flotilla-c-n10')), false, 'another domain whose name extends it');
      assert.equal(nodeRunning(node('flotilla-c-n')), false);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    assert.equal(nodeRunning(node('flotilla-c-n1')), false, 'the process is gone');
  });
});
