/**
 * The local-cluster pieces that need no VM: the QMP client against a real (paused) QEMU,
 * the QMP flag on node command lines, and the parsers for what nodes print.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseActiveStates, parseEndpointHealth } from '../../src/chaos/local';
import { qmpCommand } from '../../src/provision/local/qmp';
import { FlotillaError } from '../../src/errors';
import { qemuArgs, type QemuNodeDesc } from '../../src/provision/local/qemu-args';
import { makeTempDir, removeTempDir, sleep } from '../fixtures/proc';

describe('QMP against a real QEMU', () => {
  const dir = makeTempDir('flotilla-qmp-');
  const sock = path.join(dir, 'qmp.sock');
  let qemu: ReturnType<typeof spawn>;
  before(async () => {
    // Paused (-S): no guest code runs, only the monitor. The NIC's netdev is named as on Flotilla nodes.
    qemu = spawn('qemu-system-x86_64', ['-machine', 'pc,accel=tcg', '-S', '-nodefaults', '-display', 'none', '-monitor', 'none',
      '-netdev', 'user,id=cluster,restrict=on', '-device', 'virtio-net-pci,netdev=cluster', '-qmp', `unix:${sock},server=on,wait=off`], { stdio: 'ignore' });
    for (let i = 0; i < 200 && !fs.existsSync(sock); i++) await sleep(50);
  });
  after(async () => {
    qemu.kill('SIGKILL');
    await new Promise((r) => (qemu.exitCode !== null || qemu.signalCode !== null ? r(undefined) : qemu.once('exit', r)));
    removeTempDir(dir);
  });

  it('takes the cluster link down and up', async () => {
    assert.deepEqual(await qmpCommand(sock, 'set_link', { name: 'cluster', up: false }), {});
    assert.deepEqual(await qmpCommand(sock, 'set_link', { name: 'cluster', up: true }), {});
    const status = (await qmpCommand(sock, 'query-status')) as { status: string };
    assert.equal(status.status, 'prelaunch');
  });

  it('reports QMP errors and missing sockets as external errors', async () => {
    await assert.rejects(qmpCommand(sock, 'set_link', { name: 'no-such-nic', up: false }), (e: unknown) => FlotillaError.is(e) && e.code === 'external' && /DeviceNotFound/.test(e.message));
    await assert.rejects(qmpCommand(path.join(dir, 'absent.sock'), 'query-status'), (e: unknown) => FlotillaError.is(e) && e.code === 'external' && /ENOENT/.test(e.message));
  });
});

describe('node command line', () => {
  const desc: QemuNodeDesc = {
    name: 'c-n1', accel: 'tcg', cpus: 1, memoryMiB: 512, kernel: '/k', initrd: '/i', cmdline: 'quiet', disk: '/d.qcow2',
    firstBoot: { kind: 'nocloud', seedIso: '/s.iso' }, network: { primaryMac: '52:54:00:00:00:01', sshPort: 2201 }, consoleLog: '/c.log', pidFile: '/q.pid',
  };
  it('has a QMP unix socket only when asked, and refuses paths QEMU would misread', () => {
    assert.ok(!qemuArgs(desc).includes('-qmp'));
    const args = qemuArgs({ ...desc, qmpSocket: '/run/x/qmp.sock' });
    assert.equal(args[args.indexOf('-qmp') + 1], 'unix:/run/x/qmp.sock,server=on,wait=off');
    assert.throws(() => qemuArgs({ ...desc, qmpSocket: '/run/x,y/qmp.sock' }), /cannot be used in a QEMU option/);
  });
});

describe('parsers for node output', () => {
  it('reads systemctl show blocks', () => {
    const out = 'Id=a.service\nActiveState=active\n\nId=b.service\nActiveState=inactive\n\nId=c.service\nActiveState=deactivating\n';
    assert.deepEqual([...parseActiveStates(out)], [['a.service', 'active'], ['b.service', 'inactive'], ['c.service', 'deactivating']]);
    assert.deepEqual([...parseActiveStates('')], []);
  });

  it('reads etcdctl endpoint health JSON', () => {
    const out = '[{"endpoint":"https://10.99.0.11:2379","health":true,"took":"3ms"},{"endpoint":"https://10.99.0.12:2379","health":false,"error":"context deadline exceeded"}]';
    assert.deepEqual([...parseEndpointHealth(out)], [['10.99.0.11', true], ['10.99.0.12', false]]);
    assert.throws(() => parseEndpointHealth('Error: context deadline exceeded'));
  });
});
