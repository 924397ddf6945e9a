/**
 * libvirt documents as data: the XML serialiser escapes everything (checked by parsing the
 * output with Python's XML parser, a different implementation), and the domain, pool and volume
 * documents and QEMU network arguments carry exactly what the driver needs.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { FlotillaError } from '../../src/errors';
import {
  clusterLinks,
  defaultPorts,
  domainName,
  domainUuid,
  domainXml,
  FLOTILLA_NS,
  networkArgs,
  poolXml,
  QEMU_NS,
  serializeXml,
  volumeXml,
  type DomainDesc,
} from '../../src/provision/libvirt/domain-xml';
import { el, escapeAttr, escapeText, textEl } from '../../src/provision/libvirt/xml';

interface PyNode {
  tag: string;
  attrib: Record<string, string>;
  text: string | null;
  children: PyNode[];
}

/** Parses XML with Python's xml.etree (expat) and returns the tree as JSON. */
function pyParse(xml: string): PyNode {
  const script = [
    'import sys, json, xml.etree.ElementTree as ET',
    'def conv(e):',
    '    return {"tag": e.tag, "attrib": dict(e.attrib), "text": e.text, "children": [conv(c) for c in e]}',
    'print(json.dumps(conv(ET.fromstring(sys.stdin.buffer.read()))))',
  ].join('\n');
  return JSON.parse(execFileSync('python3', ['-c', script], { input: xml, encoding: 'utf8' })) as PyNode;
}

function find(n: PyNode, path: string[]): PyNode[] {
  if (path.length === 0) return [n];
  return n.children.filter((c) => c.tag === path[0]).flatMap((c) => find(c, path.slice(1)));
}

const HOSTILE = [
  `a"b'c<d>e&f`,
  ']]> <!-- --> <![CDATA[ x ]]> &amp; &#x41; &lt;',
  'tab\there\nnewline\r\ncrlf',
  '</name><name>evil</name>',
  'unicode: é ü ✓ 🚀 \u2028 \u0085',
  `"/><devices><disk type='file'><source file='/etc/shadow'/></disk></devices><x a="`,
];

describe('XML serialiser', () => {
  it('round-trips hostile text and attribute values through a real XML parser', () => {
    for (const s of HOSTILE) {
      const xml = serializeXml(el('root', { a: s, b: 'plain' }, textEl('t', s), el('e', { x: s })));
      const tree = pyParse(xml);
      assert.equal(tree.attrib.a, s, `attribute: ${JSON.stringify(s)}`);
      assert.equal(tree.attrib.b, 'plain');
      assert.equal(find(tree, ['t'])[0]!.text, s, `text: ${JSON.stringify(s)}`);
      assert.equal(find(tree, ['e'])[0]!.attrib.x, s);
      assert.equal(tree.children.length, 2, 'no element was injected');
    }
  });

  it('escapes exactly the characters that need it', () => {
    assert.equal(escapeText('a<b>&c"d\'e'), 'a&lt;b&gt;&amp;c"d\'e');
    assert.equal(escapeAttr('a<b>&c"d\'e\tf\ng'), 'a&#60;b&#62;&#38;c&#34;d&#39;e&#9;f&#10;g');
  });

  it('refuses characters XML cannot carry, and bad names', () => {
    for (const bad of ['\u0000', '\u0001', '\u001b[31m', '\ufffe', '\ud800x', 'x\udc00']) {
      assert.throws(() => serializeXml(textEl('t', `ok${bad}`)), (e: unknown) => FlotillaError.is(e) && /cannot be represented in XML/.test(e.message), JSON.stringify(bad));
      assert.throws(() => serializeXml(el('t', { a: bad })), /cannot be represented/);
    }
    assert.throws(() => el('a b'), /not an XML element name/);
    assert.throws(() => el('x', { 'on"click': '1' }), /not an XML attribute name/);
    assert.throws(() => el('1x'), /not an XML element name/);
    // Surrogate pairs are fine.
    assert.equal(pyParse(serializeXml(textEl('t', '🚀'))).text, '🚀');
  });

  it('leaves out undefined attributes and false children, flattens arrays', () => {
    const xml = serializeXml(el('r', { a: undefined, b: 1, c: true, d: false }, false, undefined, [el('x'), [el('y')]]), '');
    assert.equal(xml, '<r b="1" c="yes" d="no"><x/><y/></r>\n');
  });
});

function desc(over: Partial<DomainDesc> = {}): DomainDesc {
  return {
    cluster: 'demo',
    node: 'node1',
    accel: 'tcg',
    cpus: 2,
    memoryMiB: 1024,
    kernel: '/var/lib/flotilla/images/abc/vmlinuz',
    initrd: '/var/lib/flotilla/images/abc/initrd.img',
    cmdline: 'root=/dev/vda rw console=ttyS0 quiet',
    volumes: { pool: 'flotilla-demo-node1', disk: 'disk.qcow2', seed: 'seed.iso' },
    consoleLog: '/var/lib/flotilla/libvirt/demo/node1/console.log',
    primaryMac: '52:54:00:12:34:56',
    sshPort: 40100,
    cluster0: { mac: '52:54:00:ab:cd:ef', hub: true, links: [] },
    configHash: 'a'.repeat(64),
    ...over,
  };
}

describe('domain XML', () => {
  it('a replaced node (generation n) gets a new UUID, stable per generation; the first keeps the original', () => {
    // The guest's /etc/machine-id is the domain UUID: a replaced node must not come back as the old machine.
    const g0 = domainUuid('demo', 'node1');
    assert.equal(domainUuid('demo', 'node1', 0), g0);
    const g1 = domainUuid('demo', 'node1', 1);
    assert.notEqual(g1, g0);
    assert.equal(domainUuid('demo', 'node1', 1), g1);
    assert.notEqual(domainUuid('demo', 'node1', 2), g1);
    assert.match(g1, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const t = pyParse(serializeXml(domainXml(desc({ generation: 1 }))));
    assert.equal(find(t, ['uuid'])[0]!.text, g1);
  });

  it('describes a TCG node: qemu domain, qemu64 CPU, direct kernel boot, volumes, serial file, both NICs', () => {
    const t = pyParse(serializeXml(domainXml(desc())));
    assert.equal(t.tag, 'domain');
    assert.equal(t.attrib.type, 'qemu');
    assert.equal(find(t, ['name'])[0]!.text, 'flotilla-demo-node1');
    assert.equal(find(t, ['uuid'])[0]!.text, domainUuid('demo', 'node1'));
    assert.deepEqual(find(t, ['memory'])[0], { tag: 'memory', attrib: { unit: 'MiB' }, text: '1024', children: [] });
    assert.equal(find(t, ['vcpu'])[0]!.text, '2');
    assert.equal(find(t, ['os', 'kernel'])[0]!.text, desc().kernel);
    assert.equal(find(t, ['os', 'initrd'])[0]!.text, desc().initrd);
    assert.equal(find(t, ['os', 'cmdline'])[0]!.text, desc().cmdline);
    assert.deepEqual(find(t, ['os', 'type'])[0]!.attrib, { arch: 'x86_64', machine: 'pc' });
    assert.equal(find(t, ['cpu'])[0]!.attrib.mode, 'custom');
    assert.equal(find(t, ['cpu', 'model'])[0]!.text, 'qemu64');
    const meta = find(t, ['metadata', `{${FLOTILLA_NS}}node`])[0]!;
    assert.deepEqual(meta.attrib, { cluster: 'demo', node: 'node1', config: 'a'.repeat(64) });
    const disks = find(t, ['devices', 'disk']);
    assert.deepEqual(disks.map((d) => find(d, ['source'])[0]!.attrib), [
      { pool: 'flotilla-demo-node1', volume: 'disk.qcow2' },
      { pool: 'flotilla-demo-node1', volume: 'seed.iso' },
    ]);
    assert.deepEqual(disks.map((d) => find(d, ['target'])[0]!.attrib.dev), ['vda', 'vdb']);
    assert.equal(find(disks[0]!, ['driver'])[0]!.attrib.type, 'qcow2');
    assert.equal(find(disks[1]!, ['readonly']).length, 1, 'the seed is read-only');
    assert.equal(find(t, ['devices', 'serial', 'source'])[0]!.attrib.path, desc().consoleLog);
    assert.equal(find(t, ['devices', 'interface']).length, 0, 'no libvirt-managed NIC (no libvirt network, no bridge)');
    assert.equal(find(t, ['sysinfo']).length, 0);
    const args = find(t, [`{${QEMU_NS}}commandline`, `{${QEMU_NS}}arg`]).map((a) => a.attrib.value);
    assert.deepEqual(args, networkArgs(desc()));
  });

  it('uses domain type kvm with the host CPU when KVM works', () => {
    const t = pyParse(serializeXml(domainXml(desc({ accel: 'kvm' }))));
    assert.equal(t.attrib.type, 'kvm');
    assert.equal(find(t, ['cpu'])[0]!.attrib.mode, 'host-passthrough');
  });

  it('passes an Ignition config through fw_cfg instead of a seed disk', () => {
    const t = pyParse(serializeXml(domainXml(desc({ volumes: { pool: 'p', disk: 'disk.qcow2', ignitionFile: '/var/lib/flotilla/libvirt/demo/node1/volumes/config.ign' } }))));
    assert.deepEqual(find(t, ['sysinfo'])[0]!.attrib, { type: 'fwcfg' });
    assert.deepEqual(find(t, ['sysinfo', 'entry'])[0]!.attrib, { name: 'opt/com.coreos/config', file: '/var/lib/flotilla/libvirt/demo/node1/volumes/config.ign' });
    assert.equal(find(t, ['devices', 'disk']).length, 1);
  });

  it('keeps hostile values inside their attributes and text', () => {
    const cmdline = `console=ttyS0 x="</cmdline><devices/>" & y='<'`;
    const t = pyParse(serializeXml(domainXml(desc({ cmdline, consoleLog: `/tmp/a"b'<c>&.log` }))));
    assert.equal(find(t, ['os', 'cmdline'])[0]!.text, cmdline);
    assert.equal(find(t, ['devices', 'serial', 'source'])[0]!.attrib.path, `/tmp/a"b'<c>&.log`);
    assert.equal(find(t, ['devices']).length, 1);
  });

  it('refuses what it cannot express safely', () => {
    assert.throws(() => domainXml(desc({ cluster: 'Bad_Name' })), /not a DNS label/);
    assert.throws(() => domainXml(desc({ primaryMac: '52:54:00:12:34:5G' })), /MAC/);
    assert.throws(() => domainXml(desc({ cmdline: 'a\nb' })), /newline/);
    assert.throws(() => domainXml(desc({ memoryMiB: 64 })), /memoryMiB/);
    assert.throws(() => domainXml(desc({ sshPort: 22 })), /1024 to 65535/);
    assert.throws(() => domainXml(desc({ volumes: { pool: 'p', disk: 'd', ignitionFile: '/a,b' } })), /QEMU option/);
    assert.throws(() => domainXml(desc({ volumes: { pool: 'p', disk: 'd', seed: 's', ignitionFile: '/x' } })), /exactly one first-boot source/);
    assert.throws(() => domainXml(desc({ configHash: 'nothex' })), /sha256/);
  });
});

describe('cluster network', () => {
  it('wires a star through the first node: hub ports on 127.0.0.1 only', () => {
    const links = clusterLinks(3, 41000);
    assert.deepEqual(links, [
      { hub: true, links: [{ localPort: 41002, remotePort: 41003 }, { localPort: 41004, remotePort: 41005 }] },
      { hub: false, links: [{ localPort: 41003, remotePort: 41002 }] },
      { hub: false, links: [{ localPort: 41005, remotePort: 41004 }] },
    ]);
    assert.deepEqual(clusterLinks(1, 41000), [{ hub: true, links: [] }]);
    assert.throws(() => clusterLinks(0, 41000), /at least 1/);
    assert.throws(() => clusterLinks(3, 65534), /port/);
  });

  it('builds the QEMU arguments: restricted user-mode uplink with one forward, hub or link for the cluster NIC', () => {
    const hub = networkArgs({ primaryMac: '52:54:00:00:00:01', sshPort: 40100, cluster0: { mac: '52:54:00:00:00:02', ...clusterLinks(3, 41000)[0]! } });
    assert.deepEqual(hub, [
      '-netdev', 'user,id=hn0,restrict=on,hostfwd=tcp:127.0.0.1:40100-:22',
      '-device', 'virtio-net-pci,netdev=hn0,mac=52:54:00:00:00:01,bus=pci.0,addr=0x10',
      '-netdev', 'hubport,id=cl0,hubid=0',
      '-netdev', 'dgram,id=cl0l0,local.type=inet,local.host=127.0.0.1,local.port=41002,remote.type=inet,remote.host=127.0.0.1,remote.port=41003',
      '-netdev', 'hubport,id=cl0h0,hubid=0,netdev=cl0l0',
      '-netdev', 'dgram,id=cl0l1,local.type=inet,local.host=127.0.0.1,local.port=41004,remote.type=inet,remote.host=127.0.0.1,remote.port=41005',
      '-netdev', 'hubport,id=cl0h1,hubid=0,netdev=cl0l1',
      '-device', 'virtio-net-pci,netdev=cl0,mac=52:54:00:00:00:02,bus=pci.0,addr=0x11',
    ]);
    const leaf = networkArgs({ primaryMac: '52:54:00:00:00:03', sshPort: 40101, cluster0: { mac: '52:54:00:00:00:04', ...clusterLinks(3, 41000)[1]! } });
    assert.deepEqual(leaf.slice(4), [
      '-netdev', 'dgram,id=cl0,local.type=inet,local.host=127.0.0.1,local.port=41003,remote.type=inet,remote.host=127.0.0.1,remote.port=41002',
      '-device', 'virtio-net-pci,netdev=cl0,mac=52:54:00:00:00:04,bus=pci.0,addr=0x11',
    ]);
    for (const a of [...hub, ...leaf]) {
      for (const host of a.match(/host=[^,]+/g) ?? []) assert.equal(host, 'host=127.0.0.1', a);
    }
    assert.throws(() => networkArgs({ primaryMac: '52:54:00:00:00:03', sshPort: 40101, cluster0: { mac: '52:54:00:00:00:04', hub: false, links: [] } }), /exactly one/);
  });

  it('derives stable ports and identities from the names', () => {
    const p = defaultPorts('demo');
    assert.deepEqual(defaultPorts('demo'), p);
    assert.ok(p.sshPortBase >= 40000 && p.sshPortBase < 60000 && p.sshPortBase % 100 === 0);
    assert.equal(p.linkPortBase, p.sshPortBase + 32);
    assert.match(domainUuid('demo', 'node1'), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(domainUuid('demo', 'node1'), domainUuid('demo', 'node2'));
    assert.equal(domainName('demo', 'node1'), 'flotilla-demo-node1');
  });
});

describe('storage documents', () => {
  it('makes a private directory pool and volumes, overlays backed by the base image', () => {
    const pool = pyParse(serializeXml(poolXml('flotilla-demo-node1', '/var/lib/flotilla/libvirt/demo/node1/volumes')));
    assert.equal(pool.attrib.type, 'dir');
    assert.equal(find(pool, ['target', 'path'])[0]!.text, '/var/lib/flotilla/libvirt/demo/node1/volumes');
    assert.equal(find(pool, ['target', 'permissions', 'mode'])[0]!.text, '0711');
    const vol = pyParse(serializeXml(volumeXml({ name: 'disk.qcow2', capacityBytes: 4 * 1024 ** 3, format: 'qcow2', backing: { path: '/img/disk.qcow2', format: 'qcow2' } })));
    assert.equal(find(vol, ['capacity'])[0]!.text, String(4 * 1024 ** 3));
    assert.equal(find(vol, ['target', 'format'])[0]!.attrib.type, 'qcow2');
    assert.equal(find(vol, ['target', 'permissions', 'mode'])[0]!.text, '0600');
    assert.equal(find(vol, ['backingStore', 'path'])[0]!.text, '/img/disk.qcow2');
    const raw = pyParse(serializeXml(volumeXml({ name: 'seed.iso', capacityBytes: 366592, format: 'raw' })));
    assert.equal(find(raw, ['backingStore']).length, 0);
    assert.throws(() => volumeXml({ name: '../x', capacityBytes: 1, format: 'raw' }), /volume name/);
  });
});
