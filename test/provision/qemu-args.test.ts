import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FlotillaError } from '../../src/errors';
import { clusterMulticast, clusterNamespace, qemuArgs, type QemuNodeDesc } from '../../src/provision/local/qemu-args';

function desc(over: Partial<QemuNodeDesc> = {}): QemuNodeDesc {
  return {
    name: 'demo-node1',
    accel: 'tcg',
    cpus: 2,
    memoryMiB: 1024,
    kernel: '/img/vmlinuz',
    initrd: '/img/initrd.img',
    cmdline: 'root=/dev/vda rw console=ttyS0',
    disk: '/state/clusters/demo/node1/disk.qcow2',
    firstBoot: { kind: 'nocloud', seedIso: '/state/clusters/demo/node1/seed.iso' },
    network: { primaryMac: '52:54:00:12:34:56', sshPort: 2201, cluster: { mac: '52:54:00:ab:cd:ef', group: '239.1.2.3', port: 23456 } },
    consoleLog: '/state/clusters/demo/node1/console.log',
    pidFile: '/state/clusters/demo/node1/qemu.pid',
    ...over,
  };
}

/** The value following each occurrence of `flag`. */
function values(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));
}

describe('qemuArgs', () => {
  it('boots the kernel directly with the machine, CPU and devices chosen for TCG', () => {
    const a = qemuArgs(desc());
    assert.deepEqual(values(a, '-machine'), ['pc,accel=tcg']);
    assert.deepEqual(values(a, '-cpu'), ['qemu64']);
    assert.deepEqual(values(a, '-smp'), ['2']);
    assert.deepEqual(values(a, '-m'), ['1024']);
    assert.deepEqual(values(a, '-kernel'), ['/img/vmlinuz']);
    assert.deepEqual(values(a, '-initrd'), ['/img/initrd.img']);
    assert.deepEqual(values(a, '-append'), ['root=/dev/vda rw console=ttyS0']);
    assert.deepEqual(values(a, '-display'), ['none']);
    assert.deepEqual(values(a, '-serial'), ['file:/state/clusters/demo/node1/console.log']);
    assert.deepEqual(values(a, '-pidfile'), ['/state/clusters/demo/node1/qemu.pid']);
    assert.ok(a.includes('-nodefaults'));
    assert.ok(!a.includes('-daemonize'));
    assert.ok(!a.includes('-enable-kvm'));
  });

  it('uses the host CPU under KVM', () => {
    const a = qemuArgs(desc({ accel: 'kvm' }));
    assert.deepEqual(values(a, '-machine'), ['pc,accel=kvm']);
    assert.deepEqual(values(a, '-cpu'), ['host']);
  });

  it('restricts user-mode networking and forwards SSH from 127.0.0.1 only', () => {
    const netdevs = values(qemuArgs(desc()), '-netdev');
    const user = netdevs.find((n) => n.startsWith('user,'));
    assert.equal(user, 'user,id=uplink,restrict=on,hostfwd=tcp:127.0.0.1:2201-:22');
  });

  it('gives the NICs the node MACs, uplink first', () => {
    const devices = values(qemuArgs(desc()), '-device').filter((d) => d.startsWith('virtio-net-pci'));
    assert.deepEqual(devices, ['virtio-net-pci,netdev=uplink,mac=52:54:00:12:34:56', 'virtio-net-pci,netdev=cluster,mac=52:54:00:ab:cd:ef']);
  });

  it('puts the cluster NIC on a multicast datagram netdev bound to 127.0.0.1', () => {
    const cluster = values(qemuArgs(desc()), '-netdev').find((n) => n.startsWith('dgram,'));
    assert.equal(
      cluster,
      'dgram,id=cluster,remote.type=inet,remote.host=239.1.2.3,remote.port=23456,local.type=inet,local.host=127.0.0.1,local.port=23456',
    );
  });

  it('leaves the cluster NIC out when there is none', () => {
    const a = qemuArgs(desc({ network: { primaryMac: '52:54:00:12:34:56', sshPort: 2201 } }));
    assert.equal(values(a, '-netdev').length, 1);
    assert.ok(!a.some((x) => x.startsWith('dgram')));
  });

  it('attaches the NoCloud seed read-only, or the Ignition config through fw_cfg', () => {
    const nocloud = qemuArgs(desc());
    assert.ok(values(nocloud, '-drive').includes('file=/state/clusters/demo/node1/seed.iso,if=virtio,format=raw,readonly=on'));
    assert.deepEqual(values(nocloud, '-fw_cfg'), []);
    const ign = qemuArgs(desc({ firstBoot: { kind: 'ignition', configFile: '/s/config.ign' } }));
    assert.deepEqual(values(ign, '-fw_cfg'), ['name=opt/com.coreos/config,file=/s/config.ign']);
    assert.ok(!values(ign, '-drive').some((d) => d.includes('seed')));
  });

  it('uses the overlay disk as the first virtio drive', () => {
    assert.equal(values(qemuArgs(desc()), '-drive')[0], 'file=/state/clusters/demo/node1/disk.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap');
  });

  it('adds -daemonize only when asked', () => {
    assert.ok(qemuArgs(desc({ daemonize: true })).includes('-daemonize'));
  });

  it('refuses values that would change the meaning of a QEMU option', () => {
    const bad = (over: Partial<QemuNodeDesc>, re: RegExp): void => {
      assert.throws(() => qemuArgs(desc(over)), (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input' && re.test(e.message));
    };
    bad({ disk: '/tmp/a,file=/etc/shadow' }, /disk/);
    bad({ consoleLog: '/tmp/x,append=on' }, /console log/);
    bad({ firstBoot: { kind: 'ignition', configFile: '/tmp/c,x.ign' } }, /ignition config/);
    bad({ network: { primaryMac: '52:54:00:12:34:5G', sshPort: 2201 } }, /primary MAC/);
    bad({ network: { primaryMac: '52:54:00:12:34:56', sshPort: 70000 } }, /ssh port/);
    bad({ network: { primaryMac: '52:54:00:12:34:56', sshPort: 2201, cluster: { mac: '52:54:00:ab:cd:ef', group: '10.0.0.1', port: 5 } } }, /multicast/);
    bad({ cpus: 0 }, /cpus/);
    bad({ memoryMiB: 64 }, /memoryMiB/);
    bad({ cmdline: 'root=/dev/vda\ninit=/bin/sh' }, /newline/);
  });
});

describe('clusterMulticast / clusterNamespace', () => {
  it('derives a stable administratively scoped group and port from the cluster name', () => {
    const a = clusterMulticast('demo');
    assert.deepEqual(clusterMulticast('demo'), a);
    assert.match(a.group, /^239\.\d+\.\d+\.\d+$/);
    for (const part of a.group.split('.')) assert.ok(Number(part) <= 255);
    assert.ok(a.port >= 20000 && a.port < 60000);
    const names = ['demo', 'demo2', 'prod', 'test', 'a', 'b', 'bench1', 'bench3'];
    const keys = new Set(names.map((n) => JSON.stringify(clusterMulticast(n))));
    assert.equal(keys.size, names.length);
  });

  it('names the namespace after the cluster', () => {
    assert.equal(clusterNamespace('demo'), 'flotilla-demo');
  });
});

describe('qemuArgs for snapshot templates and clones', () => {
  const clone = (over: Partial<QemuNodeDesc> = {}) =>
    desc({
      vmgenid: '0f8fad5b-d9cb-469f-a165-70867728950e',
      firstBoot: { kind: 'nocloud-fw-cfg', files: { 'user-data': '/n/seed/user-data', 'meta-data': '/n/seed/meta-data' } },
      fwCfg: [{ name: 'opt/flotilla/clone', file: '/n/clone.conf' }],
      incoming: '/img/templates/abc/state',
      qmpSocket: '/n/qmp.sock',
      ...over,
    });
  const devices = (a: string[]) => values(a, '-device').map((d) => d.replace(/,mac=.*$/, '').replace(/,guid=.*$/, ''));

  it('a clone has its own generation ID, its seed and clone data in fw_cfg, and restores the saved state', () => {
    const a = qemuArgs(clone());
    assert.ok(values(a, '-device').includes('vmgenid,guid=0f8fad5b-d9cb-469f-a165-70867728950e'));
    assert.deepEqual(values(a, '-fw_cfg'), ['name=opt/flotilla/nocloud/user-data,file=/n/seed/user-data', 'name=opt/flotilla/nocloud/meta-data,file=/n/seed/meta-data', 'name=opt/flotilla/clone,file=/n/clone.conf']);
    assert.deepEqual(values(a, '-incoming'), ['exec:cat /img/templates/abc/state']);
    // No seed drive: the template had none, and a restore needs the same devices.
    assert.deepEqual(values(a, '-drive').length, 1);
  });

  it('template and clone have the same devices in the same order (else the restore fails)', () => {
    const template = desc({ vmgenid: '9b2c7a1e-0d3f-4a5b-8c6d-7e8f9a0b1c2d', firstBoot: { kind: 'none' }, qmpSocket: '/t/qmp.sock' });
    assert.deepEqual(devices(qemuArgs(clone())), devices(qemuArgs(template)));
    assert.deepEqual(devices(qemuArgs(clone({ firstBoot: { kind: 'ignition', configFile: '/n/config.ign' } }))), devices(qemuArgs(template)));
    assert.deepEqual(values(qemuArgs(template), '-fw_cfg'), []);
    assert.deepEqual(values(qemuArgs(template), '-incoming'), []);
  });

  it('refuses what QEMU or its /bin/sh would read otherwise', () => {
    const bad = (over: Partial<QemuNodeDesc>, re: RegExp) => assert.throws(() => qemuArgs(clone(over)), (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input' && re.test(e.message));
    bad({ vmgenid: 'not-a-uuid' }, /vmgenid "not-a-uuid" is not a lower-case UUID/);
    bad({ incoming: '/state/$(reboot)' }, /saved VM state path .* only letters, digits/);
    bad({ incoming: 'relative/state' }, /saved VM state path/);
    bad({ fwCfg: [{ name: 'etc/vmgenid_guid', file: '/x' }] }, /fw_cfg name "etc\/vmgenid_guid": not a name below opt\//);
    bad({ fwCfg: [{ name: `opt/${'a'.repeat(60)}`, file: '/x' }] }, /at most 55 characters/);
    bad({ firstBoot: { kind: 'nocloud-fw-cfg', files: { 'vendor-data': '/x' } } }, /NoCloud seed file "vendor-data"/);
    bad({ fwCfg: [{ name: 'opt/flotilla/clone', file: '/a,b' }] }, /cannot be used in a QEMU option/);
  });
});
