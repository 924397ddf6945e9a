import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadSpecObject } from '../../src/config/load';
import { renderCluster, type RenderedNode } from '../../src/config/render';
import { ensureSecrets } from '../../src/config/secrets';
import type { ClusterSpec, ConfigFormat } from '../../src/config/spec';
import { decodeDataUrl, type IgnitionConfig } from '../../src/config/ignition-types';
import { validateMany } from '../../src/config/validators';
import { FlotillaError } from '../../src/errors';
import { makeSpec, nodes, testPublicKey } from '../helpers/spec';
import { pyYamlLoad } from '../helpers/pyyaml';

/** Strings that break naive YAML/JSON/template generation. */
const HOSTILE = [
  'quote " and \' and \\ backslash',
  'colon: value # not a comment',
  'line1\nline2\n  indented: true\n- item',
  '{{hostname}} {{{raw}}} }} {{',
  '---\n...\n#cloud-config\n',
  '${HOME} $(reboot) `reboot`',
  'unicode ✓ → 雪 \u2028 \t tab \u0085 nel \u2029 \r\n crlf \u009b csi \ufffe \uffff \x7f del \x01 soh',
  '\ttab first\n\ttab line\n',
  '&anchor *alias !tag %directive @at',
];
const HOSTILE_META = ['a:b', '"q"', "it's", '{{x}}', '#hash', 'yes', 'null', '0777', '-dash'];

const UNIT = (i: number, text: string) => `[Unit]\nDescription=${text.replace(/\n/g, ' ')}\n\n[Service]\nExecStart=/bin/sh -c 'echo ${i}'\n# ${text.split('\n').join('\n# ')}\n`;

interface Case {
  label: string;
  spec: ClusterSpec;
  format: ConfigFormat;
}

function matrix(): Case[] {
  const cases: Case[] = [];
  for (const n of [1, 3, 5, 50]) {
    for (const format of ['cloud-config', 'ignition'] as const) {
      cases.push({ label: `${n} nodes ${format}`, format, spec: makeSpec({ name: `c${n}`, nodes: nodes(n) }) });
    }
  }
  for (const format of ['cloud-config', 'ignition'] as const) {
    cases.push({
      label: `fixed addresses, roles, metadata, ${format}`,
      format,
      spec: makeSpec({
        name: 'fixed',
        network: { cidr: '172.30.8.0/22' },
        nodes: nodes(7, (i) => ({ role: i < 3 ? 'controller' : 'worker', address: `172.30.${9 + (i % 2)}.${20 + i}`, metadata: { zone: `z${i % 3}`, disk: i % 2 ? 'ssd' : 'hdd' } })),
      }),
    });
    cases.push({
      label: `hostile strings in units, metadata and key comments, ${format}`,
      format,
      spec: makeSpec({
        name: 'hostile',
        nodes: nodes(3, (i) => ({ metadata: Object.fromEntries(HOSTILE_META.map((v, j) => [`k${j}`, `${v}${i}`])) })),
        ssh: { authorizedKeys: [testPublicKey(`evil" comment: {{x}} #y 'z'`)] },
        units: HOSTILE.map((h, i) => ({ name: `hostile${i}.service`, contents: UNIT(i, h) })),
      }),
    });
    cases.push({ label: `no TLS, custom ports, ${format}`, format, spec: makeSpec({ name: 'plain', nodes: nodes(3), etcd: { tls: false, clientPort: 12379, peerPort: 12380, heartbeatIntervalMs: 100, electionTimeoutMs: 1000 } }) });
    cases.push({ label: `libvirt platform, process runner, ${format}`, format, spec: makeSpec({ name: 'virt', platform: 'libvirt', nodes: nodes(3), agent: { runner: 'process', ttlSeconds: 10, keyPrefix: '/custom/prefix/' } }) });
    cases.push({ label: `aws platform (no network-config), ${format}`, format, spec: makeSpec({ name: 'cloud', platform: 'aws', nodes: nodes(3), aws: { region: 'eu-west-1', largeConfigUrl: 's3://bucket/configs/' } }) });
    cases.push({ label: `explicit etcd members, workers, ${format}`, format, spec: makeSpec({ name: 'members', nodes: nodes(4), etcd: { members: ['node2'] } }) });
  }
  cases.push({
    label: 'cloud-config snippet merged (files, packages, users)',
    format: 'cloud-config',
    spec: makeSpec({
      name: 'snip',
      nodes: nodes(3),
      snippets: [
        { format: 'cloud-config', contents: `write_files:\n  - path: /etc/motd\n    content: "${HOSTILE[1]}"\nbootcmd:\n  - [sh, -c, "echo early"]\n` },
        { format: 'cloud-config', nodes: ['node2'], contents: 'timezone: Europe/Berlin\n' },
      ],
    }),
  });
  cases.push({
    label: 'ignition snippet merged (files, units, dropins)',
    format: 'ignition',
    spec: makeSpec({
      name: 'snip',
      nodes: nodes(3),
      snippets: [
        {
          format: 'ignition',
          contents: JSON.stringify({
            ignition: { version: '3.1.0' },
            // overwrite: the node image has /etc/motd (without it first boot stops; see image-files.test.ts).
            storage: { files: [{ path: '/etc/motd', mode: 420, overwrite: true, contents: { source: 'data:,hello' } }] },
            systemd: { units: [{ name: 'flotilla-fleetd.service', dropins: [{ name: '50-env.conf', contents: '[Service]\nEnvironment=DEBUG=1\n' }] }] },
          }),
        },
      ],
    }),
  });
  return cases;
}

function files(r: RenderedNode): Map<string, string> {
  const out = new Map<string, string>();
  if (r.format === 'ignition') {
    const cfg = JSON.parse(r.userData) as IgnitionConfig;
    for (const f of cfg.storage?.files ?? []) out.set(f.path, decodeDataUrl(f.contents!.source!)!.toString('utf8'));
    for (const u of cfg.systemd?.units ?? []) if (u.contents) out.set(`/etc/systemd/system/${u.name}`, u.contents);
  } else {
    const cc = parseYaml(r.userData.replace(/^#cloud-config\n/, '')) as { write_files: Array<{ path: string; content: string }> };
    for (const f of cc.write_files) out.set(f.path, f.content);
  }
  return out;
}

test('a matrix of specs renders, and every output passes the real validators', async () => {
  const cases = matrix();
  assert.ok(cases.length >= 20, `matrix has ${cases.length} specs`);
  const docs: Array<{ label: string; node: string; format: ConfigFormat; content: string }> = [];
  for (const c of cases) {
    const spec = loadSpecObject(c.spec);
    const rendered = renderCluster(spec, ensureSecrets(spec), { format: c.format });
    assert.equal(rendered.length, c.spec.nodes.length, c.label);
    for (const r of rendered) docs.push({ label: c.label, node: r.node, format: r.format, content: r.userData });
  }
  const results = await validateMany(docs.map((d) => ({ format: d.format, content: d.content })), 2);
  const failures = results.map((r, i) => ({ r, d: docs[i]! })).filter((x) => !x.r.ok);
  assert.deepEqual(failures.map((f) => `${f.d.label} / ${f.d.node}: ${f.r.tool}: ${f.r.messages.join(' | ')}`), []);
  // Both validators really ran on both formats.
  assert.ok(results.some((r) => r.tool === 'cloud-init schema') && results.some((r) => r.tool === 'ignition-validate'));
});

for (const format of ['cloud-config', 'ignition'] as const) {
  test(`hostile strings reach the node byte for byte and inject nothing (${format})`, () => {
    const comment = `evil" comment: {{x}} #y 'z'`;
    const key = testPublicKey(comment);
    const spec = loadSpecObject(
      makeSpec({
        nodes: [{ name: 'node1', metadata: { a: 'x:"y"', b: '{{z}}' } }],
        ssh: { authorizedKeys: [key] },
        units: HOSTILE.map((h, i) => ({ name: `h${i}.service`, contents: h })),
      }),
    );
    const [r] = renderCluster(spec, ensureSecrets(spec), { format });
    const written = files(r!);
    HOSTILE.forEach((h, i) => assert.equal(written.get(`/etc/flotilla/units/h${i}.service`), h));
    const fleetd = JSON.parse(written.get('/etc/flotilla/fleetd.json')!) as { metadata: Record<string, string> };
    assert.deepEqual(fleetd.metadata, { a: 'x:"y"', b: '{{z}}' });
    if (format === 'cloud-config') {
      // cloud-init reads with PyYAML (YAML 1.1): it must see the very same data.
      assert.deepEqual(pyYamlLoad(r!.userData), parseYaml(r!.userData));
      const cc = parseYaml(r!.userData) as Record<string, unknown> & { users: Array<{ ssh_authorized_keys: string[] }> };
      assert.deepEqual(cc.users[0]!.ssh_authorized_keys, [key]);
      // Nothing but the keys the template writes reached the top level.
      assert.deepEqual(Object.keys(cc).sort(), ['disable_root', 'hostname', 'locale', 'manage_etc_hosts', 'preserve_hostname', 'runcmd', 'ssh_deletekeys', 'ssh_genkeytypes', 'ssh_keys', 'ssh_pwauth', 'users', 'write_files']);
    } else {
      const cfg = JSON.parse(r!.userData) as IgnitionConfig;
      assert.deepEqual(cfg.passwd!.users![0]!.sshAuthorizedKeys, [key]);
      assert.deepEqual(Object.keys(cfg).sort(), ['ignition', 'passwd', 'storage', 'systemd']);
    }
  });
}

test('pinned host key: the rendered public key matches the private key the node gets', () => {
  const spec = loadSpecObject(makeSpec({ nodes: nodes(2) }));
  const secrets = ensureSecrets(spec);
  for (const format of ['cloud-config', 'ignition'] as const) {
    for (const r of renderCluster(spec, secrets, { format })) {
      assert.equal(r.hostPublicKey, secrets.hostKeys[r.node]!.publicKey);
      const priv = format === 'ignition' ? files(r).get('/etc/ssh/ssh_host_ed25519_key') : (parseYaml(r.userData) as { ssh_keys: { ed25519_private: string } }).ssh_keys.ed25519_private;
      assert.equal(priv, secrets.hostKeys[r.node]!.privateKey);
      const { utils } = require('ssh2') as typeof import('ssh2');
      const parsed = utils.parseKey(priv!);
      assert.ok(!(parsed instanceof Error));
      const pub = (Array.isArray(parsed) ? parsed[0]! : parsed).getPublicSSH().toString('base64');
      assert.equal(r.hostPublicKey.split(' ')[1], pub);
    }
  }
  // Secrets are kept across renders: same keys for the same nodes.
  assert.deepEqual(ensureSecrets(spec, secrets), secrets);
});

test('an Ignition node resolves its own name: /etc/hostname and /etc/hosts name it, as manage_etc_hosts does for cloud-config', () => {
  const spec = loadSpecObject(makeSpec({ nodes: nodes(2) }));
  for (const r of renderCluster(spec, ensureSecrets(spec), { format: 'ignition' })) {
    const f = files(r);
    assert.equal(f.get('/etc/hostname'), `${r.node}\n`);
    const hosts = f.get('/etc/hosts')!.split('\n').map((l) => l.split(/\s+/));
    assert.deepEqual(hosts.find((l) => l[1] === r.node), ['127.0.1.1', r.node]);
    assert.ok(hosts.some((l) => l[0] === '127.0.0.1' && l[1] === 'localhost'));
  }
  for (const r of renderCluster(spec, ensureSecrets(spec), { format: 'cloud-config' })) {
    assert.equal((parseYaml(r.userData) as { manage_etc_hosts?: unknown }).manage_etc_hosts, true);
  }
});

test('a format chosen over the spec\'s (up --format ignition) renders that format\'s node files too', () => {
  // Found by the chaos run: a cloud-config spec brought up with --format ignition got no
  // AuthorizedKeysFile line for Ignition's keys, and every SSH login was refused.
  const spec = loadSpecObject(makeSpec({ nodes: nodes(1) }));
  assert.equal(spec.format, 'cloud-config');
  const [r] = renderCluster(spec, ensureSecrets(spec), { format: 'ignition' });
  assert.match(files(r!).get('/etc/ssh/sshd_config.d/10-flotilla.conf')!, /^AuthorizedKeysFile .ssh\/authorized_keys .ssh\/authorized_keys.d\/ignition$/m);
});

test('etcd and agent configuration follow the spec', () => {
  const spec = loadSpecObject(makeSpec({ name: 'ec', nodes: nodes(4, (i) => ({ address: `10.99.0.${21 + i}` })), etcd: { members: ['node1', 'node2', 'node3'] } }));
  const rendered = renderCluster(spec, ensureSecrets(spec));
  const env = (r: RenderedNode) => files(r).get('/etc/flotilla/etcd.env');
  assert.match(env(rendered[0]!)!, /^ETCD_INITIAL_CLUSTER=node1=https:\/\/10\.99\.0\.21:2380,node2=https:\/\/10\.99\.0\.22:2380,node3=https:\/\/10\.99\.0\.23:2380$/m);
  assert.match(env(rendered[1]!)!, /^ETCD_NAME=node2$/m);
  assert.match(env(rendered[0]!)!, /^ETCD_CLIENT_CERT_AUTH=true$/m);
  assert.equal(env(rendered[3]!), undefined, 'the worker runs no etcd member');
  const agent = JSON.parse(files(rendered[3]!).get('/etc/flotilla/fleetd.json')!) as { endpoints: string[]; address: string };
  assert.deepEqual(agent.endpoints, ['https://10.99.0.21:2379', 'https://10.99.0.22:2379', 'https://10.99.0.23:2379']);
  assert.equal(agent.address, '10.99.0.24');
  const net = parseYaml(rendered[3]!.networkConfig!) as { ethernets: { cluster: { addresses: string[]; match: { macaddress: string } } } };
  assert.deepEqual(net.ethernets.cluster.addresses, ['10.99.0.24/24']);
  assert.equal(net.ethernets.cluster.match.macaddress, spec.nodes[3]!.clusterMac);
});

test('snippets merge by identity: a snippet entry with an existing path replaces it, others are added', () => {
  const spec = loadSpecObject(
    makeSpec({
      nodes: nodes(2),
      snippets: [{ format: 'cloud-config', nodes: ['node2'], contents: 'write_files:\n  - path: /etc/flotilla/fleetd.json\n    content: "{}"\n  - path: /etc/extra\n    content: x\n' }],
    }),
  );
  const [a, b] = renderCluster(spec, ensureSecrets(spec));
  assert.notEqual(files(a!).get('/etc/flotilla/fleetd.json'), '{}');
  assert.equal(files(b!).get('/etc/flotilla/fleetd.json'), '{}');
  assert.equal(files(b!).get('/etc/extra'), 'x');
  assert.equal(files(a!).get('/etc/extra'), undefined);
});

test('bad snippets are rejected naming the snippet', () => {
  const bad: Array<[ConfigFormat, string, RegExp]> = [
    ['cloud-config', 'write_files: [\n', /snippets\[0\]\.contents:\d+: cloud-config snippet is not valid YAML/],
    ['cloud-config', 'packages_update: true\n', /packages_update: unknown cloud-config key \(did you mean "package_update"\?\)/],
    ['ignition', '{"storage": ', /Ignition snippet is not valid JSON/],
    ['ignition', '{"ignition": {"version": "3.5.0"}}', /ignition\.version: "3\.5\.0" is not accepted/],
  ];
  for (const [format, contents, re] of bad) {
    const spec = loadSpecObject(makeSpec({ format, snippets: [{ format, contents }] }));
    assert.throws(() => renderCluster(spec, ensureSecrets(spec)), (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input' && re.test(e.message));
  }
});

test('user templates override the built-in ones, and unsafe templates are refused', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-tpl-'));
  try {
    fs.writeFileSync(path.join(dir, 'cloud-config.yaml.hbs'), '#cloud-config\nhostname: {{json hostname}}\ntimezone: "UTC"\n');
    const spec = loadSpecObject(makeSpec({ templates: dir }));
    const [r] = renderCluster(spec, ensureSecrets(spec));
    assert.deepEqual(parseYaml(r!.userData), { hostname: 'node1', timezone: 'UTC' });
    for (const [tpl, re] of [
      ['hostname: {{hostname}}\n', /cloud-config\.yaml\.hbs:1:11: "\{\{hostname\}\}" inserts a value without the json helper/],
      ['hostname: {{{hostname}}}\n', /triple-stash/],
      ['{{> partial}}\n', /partials/],
      ['{{#each files}}{{json (lookup this "path")}}{{/each}}\n', /unknown helper "lookup"/],
    ] as const) {
      fs.writeFileSync(path.join(dir, 'cloud-config.yaml.hbs'), tpl);
      assert.throws(() => renderCluster(spec, ensureSecrets(spec)), (e: unknown) => FlotillaError.is(e) && re.test(e.message), tpl);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

