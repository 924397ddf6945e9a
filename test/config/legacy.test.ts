/**
 * The legacy CoreOS cloud-config converter: real examples through both outputs and the real
 * validators (cloud-init schema, ignition-validate), exact translated content, located
 * warnings and errors, and hostile strings surviving the trip (checked with PyYAML, the YAML
 * reader cloud-init itself uses).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { FlotillaError, type Problem } from '../../src/errors';
import { convertLegacy, isLegacyCoreosConfig, type CloudConfigFile, type ModernCloudConfig } from '../../src/config/legacy';
import { parseEnvironmentLine } from '../../src/config/legacy/systemd';
import { decodeDataUrl, type IgnitionConfig, type IgnitionFile, type IgnitionUnit } from '../../src/config/ignition-types';
import { cloudInitSchema, ignitionValidate } from '../../src/config/validators';

const EXAMPLES = path.join(__dirname, '..', '..', 'examples', 'legacy');
const example = (name: string): string => readFileSync(path.join(EXAMPLES, name), 'utf8');

/** 1-based line of the first line of `text` that starts with `prefix` (after indentation). */
function lineOf(text: string, prefix: string): number {
  const i = text.split('\n').findIndex((l) => l.trimStart().startsWith(prefix));
  assert.ok(i >= 0, `no line starting with ${prefix}`);
  return i + 1;
}

function toCloudConfig(text: string, file = 'input.yaml'): { config: ModernCloudConfig; output: string; warnings: Problem[] } {
  const r = convertLegacy(text, file, 'cloud-config');
  assert.equal(r.format, 'cloud-config');
  assert.ok(r.output.startsWith('#cloud-config\n'), r.output.slice(0, 40));
  return { config: parseYaml(r.output, { version: '1.1' }) as ModernCloudConfig, output: r.output, warnings: r.warnings };
}

function toIgnition(text: string, file = 'input.yaml'): { config: IgnitionConfig; output: string; warnings: Problem[] } {
  const r = convertLegacy(text, file, 'ignition');
  assert.equal(r.format, 'ignition');
  assert.ok(r.output.endsWith('}\n'));
  return { config: JSON.parse(r.output) as IgnitionConfig, output: r.output, warnings: r.warnings };
}

function assertValidCloudConfig(output: string): void {
  const v = cloudInitSchema(output);
  assert.ok(v.ok, `cloud-init schema rejected the output:\n${v.messages.join('\n')}\n${output}`);
}

function assertValidIgnition(output: string): void {
  const v = ignitionValidate(output);
  assert.ok(v.ok, `ignition-validate rejected the output:\n${v.messages.join('\n')}\n${output}`);
}

function ignitionFile(config: IgnitionConfig, p: string): IgnitionFile {
  const f = config.storage?.files?.find((x) => x.path === p);
  assert.ok(f, `no storage file ${p}`);
  return f;
}

/** What Ignition writes for a file: the data URL decoded and, if compressed, gunzipped. */
function ignitionBytes(f: IgnitionFile): Buffer {
  const raw = decodeDataUrl(f.contents!.source!);
  assert.ok(raw, `not a data URL: ${f.contents?.source}`);
  return f.contents?.compression === 'gzip' ? gunzipSync(raw) : raw;
}

function cloudFile(config: ModernCloudConfig, p: string): CloudConfigFile {
  const f = config.write_files?.find((x) => x.path === p);
  assert.ok(f, `no write_files entry ${p}`);
  return f;
}

/** What cloud-init writes for a write_files entry (cc_write_files decoding). */
function cloudBytes(f: CloudConfigFile): Buffer {
  const enc = f.encoding ?? 'text/plain';
  if (enc === 'text/plain') return Buffer.from(f.content, 'utf8');
  const data = enc.includes('b64') || enc.includes('base64') ? Buffer.from(f.content, 'base64') : Buffer.from(f.content, 'latin1');
  return enc.startsWith('gz') ? gunzipSync(data) : data;
}

function unit(config: IgnitionConfig, name: string): IgnitionUnit {
  const u = config.systemd?.units?.find((x) => x.name === name);
  assert.ok(u, `no unit ${name}`);
  return u;
}

function invalidInput(text: string, file = 'bad.yaml'): readonly Problem[] {
  for (const format of ['cloud-config', 'ignition'] as const) {
    assert.throws(
      () => convertLegacy(text, file, format),
      (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input' && e.problems.length > 0,
    );
  }
  try {
    convertLegacy(text, file, 'ignition');
  } catch (e) {
    if (FlotillaError.is(e)) return e.problems;
    throw e;
  }
  assert.fail('unreachable: convertLegacy did not throw');
}

function warningAt(warnings: readonly Problem[], p: string): Problem {
  const w = warnings.find((x) => x.path === p);
  assert.ok(w, `no warning for ${p}; got ${warnings.map((x) => x.path).join(', ')}`);
  return w;
}

const HEALTHCHECK =
  '#!/bin/sh\n# exit 0 when the local fleet agent and etcd answer\nset -eu\ncurl -fsS http://127.0.0.1:2379/health >/dev/null\nfleetctl list-machines >/dev/null\n';
const CA_PEM =
  '-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUFlotillaDemoCAnotARealCertificate0wCgYIKoZIzj0E\nAwIwEjEQMA4GA1UEAwwHZXRjZC1jYTAeFw0yNDAxMDEwMDAwMDBaFw0zNDAxMDEw\n-----END CERTIFICATE-----\n';
const MOTD = 'This worker is managed by Flotilla.\nUnits are scheduled by fleet; do not start them by hand.\n';

describe('examples pass the real validators in both formats', () => {
  for (const name of ['controller.yaml', 'worker.yaml', 'edge.yaml']) {
    test(name, () => {
      const text = example(name);
      assert.equal(isLegacyCoreosConfig(text), true);
      assertValidCloudConfig(toCloudConfig(text, name).output);
      assertValidIgnition(toIgnition(text, name).output);
    });
  }
});

describe('controller: etcd2, fleet, units and drop-ins', () => {
  const text = example('controller.yaml');
  const etcdEnv = [
    'Environment="ETCD_NAME=core-01"',
    'Environment="ETCD_INITIAL_CLUSTER_TOKEN=flotilla-demo"',
    'Environment="ETCD_INITIAL_CLUSTER=core-01=http://10.0.0.11:2380,core-02=http://10.0.0.12:2380,core-03=http://10.0.0.13:2380"',
    'Environment="ETCD_INITIAL_CLUSTER_STATE=new"',
    'Environment="ETCD_INITIAL_ADVERTISE_PEER_URLS=http://10.0.0.11:2380"',
    'Environment="ETCD_LISTEN_PEER_URLS=http://10.0.0.11:2380"',
    'Environment="ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379,http://0.0.0.0:4001"',
    'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://10.0.0.11:2379,http://10.0.0.11:4001"',
    'Environment="ETCD_HEARTBEAT_INTERVAL=100"',
    'Environment="ETCD_ELECTION_TIMEOUT=1000"',
  ];
  // `debug: false` is left out, as coreos-cloudinit left out zero values
  const etcdDropIn = `[Service]\n${etcdEnv.join('\n')}\n`;
  const fleetDropIn =
    '[Service]\nEnvironment="FLEET_PUBLIC_IP=10.0.0.11"\nEnvironment="FLEET_METADATA=role=controller,region=eu-west"\n' +
    'Environment="FLEET_ETCD_SERVERS=http://127.0.0.1:2379"\nEnvironment="FLEET_ENGINE_RECONCILE_INTERVAL=2"\n';

  test('cloud-config: drop-ins, unit files and runcmd in file order', () => {
    const { config, warnings } = toCloudConfig(text);
    assert.equal(config.hostname, 'core-01');
    assert.deepEqual(config.ssh_authorized_keys, ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFlotillaDemoKeyNotRealAAAAAAAAAAAAAAAAAAAA ops@example.org']);
    assert.equal(config.users, undefined, 'no users given: cloud-init keeps its default user for the keys');
    assert.equal(cloudFile(config, '/etc/systemd/system/etcd2.service.d/20-cloudinit.conf').content, etcdDropIn);
    assert.equal(cloudFile(config, '/etc/systemd/system/fleet.service.d/20-cloudinit.conf').content, fleetDropIn);
    assert.equal(
      cloudFile(config, '/etc/systemd/system/etcd2.service.d/30-limits.conf').content,
      '[Service]\nLimitNOFILE=65536\nRestart=always\nRestartSec=5s\n',
    );
    const network = cloudFile(config, '/run/systemd/network/00-eth0.network');
    assert.match(network.content, /^Address=10\.0\.0\.11\/24$/m);
    assert.equal(cloudFile(config, '/etc/systemd/system/etcd-backup.timer').permissions, '0644');
    assert.deepEqual(config.runcmd, [
      ['systemctl', 'daemon-reload'],
      ['systemctl', 'restart', 'systemd-networkd'],
      ['systemctl', 'enable', 'etcd-backup.timer'],
      ['systemctl', 'enable', 'docker-tcp.socket'],
      ['systemctl', 'start', 'etcd2.service'],
      ['systemctl', 'start', 'fleet.service'],
      ['systemctl', 'start', 'etcd-backup.timer'],
      ['systemctl', 'start', 'docker-tcp.socket'],
    ]);
    assert.equal(warningAt(warnings, 'coreos.etcd2').line, lineOf(text, 'etcd2:'));
    assert.equal(warningAt(warnings, 'coreos.units[1].command').line, lineOf(text, 'command: start'));
    assert.equal(warningAt(warnings, 'coreos.units[0].name').line, lineOf(text, '- name: 00-eth0.network'));
  });

  test('ignition: merged units, enabled for start, drop-ins, network file, core user', () => {
    const { config } = toIgnition(text);
    const etcd2 = unit(config, 'etcd2.service');
    assert.equal(etcd2.enabled, true);
    assert.equal(etcd2.contents, undefined);
    assert.deepEqual(etcd2.dropins, [
      { name: '30-limits.conf', contents: '[Service]\nLimitNOFILE=65536\nRestart=always\nRestartSec=5s\n' },
      { name: '20-cloudinit.conf', contents: etcdDropIn },
    ]);
    assert.deepEqual(unit(config, 'fleet.service').dropins, [{ name: '20-cloudinit.conf', contents: fleetDropIn }]);
    assert.equal(unit(config, 'etcd-backup.service').enabled, undefined);
    assert.equal(unit(config, 'docker-tcp.socket').enabled, true, '`enable: yes` is YAML 1.1 true, as go-yaml read it');
    assert.ok(!config.systemd!.units!.some((u) => u.name.endsWith('.network')), 'network units are files to Ignition');
    const network = ignitionFile(config, '/etc/systemd/network/00-eth0.network');
    assert.equal(network.mode, 0o644);
    assert.match(ignitionBytes(network).toString(), /^Gateway=10\.0\.0\.1$/m);
    assert.equal(ignitionBytes(ignitionFile(config, '/etc/hostname')).toString(), 'core-01\n');
    assert.deepEqual(config.passwd?.users, [
      { name: 'core', sshAuthorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFlotillaDemoKeyNotRealAAAAAAAAAAAAAAAAAAAA ops@example.org'] },
    ]);
  });
});

describe('worker: write_files encodings, permissions, owners, users', () => {
  const text = example('worker.yaml');

  test('cloud-config keeps encodings and decodes to the original bytes', () => {
    const { config, warnings } = toCloudConfig(text);
    const env = cloudFile(config, '/etc/flotilla/worker.env');
    assert.equal(env.permissions, '0600', 'unquoted 0600 keeps its octal text, as go-yaml read it');
    assert.equal(env.owner, 'root:root');
    assert.equal(env.defer, undefined);
    const ca = cloudFile(config, '/etc/ssl/etcd/ca.pem');
    assert.equal(ca.encoding, 'b64');
    assert.equal(cloudBytes(ca).toString(), CA_PEM);
    const hc = cloudFile(config, '/opt/bin/healthcheck');
    assert.equal(hc.encoding, 'gz+b64');
    assert.equal(hc.permissions, '0755');
    assert.equal(cloudBytes(hc).toString(), HEALTHCHECK);
    const motd = cloudFile(config, '/etc/motd.d/flotilla');
    assert.equal(motd.encoding, 'gz+b64', '!!binary gzip is carried as base64 text');
    assert.equal(cloudBytes(motd).toString(), MOTD);
    const aliases = cloudFile(config, '/home/ops/.bash_aliases');
    assert.equal(aliases.owner, 'ops:ops');
    assert.equal(aliases.defer, true, 'owner is a user this config creates, which cloud-init does after write_files');

    assert.deepEqual(config.users, [
      {
        name: 'ops',
        gecos: 'Operations, Flotilla',
        hashed_passwd: '$6$rounds=4096$flotilla$3bXJ0aW5nIG5vdCBhIHJlYWwgaGFzaCBqdXN0IGFuIGV4YW1wbGUgb25s',
        lock_passwd: false,
        groups: ['sudo', 'docker'],
        shell: '/bin/bash',
        ssh_authorized_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpsKeyForTheWorkerExampleOnlyAAAAAAAAAAA ops@laptop'],
      },
      { name: 'metrics', homedir: '/var/lib/metrics', primary_group: 'nogroup', shell: '/usr/sbin/nologin', no_create_home: true, system: true, uid: 990 },
    ]);
    assert.equal(config.manage_etc_hosts, 'localhost');
    const subst = warningAt(warnings, 'coreos.fleet.public-ip');
    assert.equal(subst.line, lineOf(text, 'public-ip: $private_ipv4'));
    assert.match(subst.message, /\$private_ipv4/);
  });

  test('ignition: modes, owners, decoded or gzip-compressed contents, users', () => {
    const { config, warnings } = toIgnition(text);
    const env = ignitionFile(config, '/etc/flotilla/worker.env');
    assert.equal(env.mode, 0o600);
    assert.equal(env.overwrite, true);
    assert.deepEqual([env.user, env.group], [{ name: 'root' }, { name: 'root' }]);
    assert.equal(ignitionBytes(env).toString(), 'FLOTILLA_ROLE=worker\nETCD_ENDPOINTS=http://10.0.0.11:2379,http://10.0.0.12:2379,http://10.0.0.13:2379\n');
    const ca = ignitionFile(config, '/etc/ssl/etcd/ca.pem');
    assert.equal(ca.contents?.compression, undefined);
    assert.equal(ignitionBytes(ca).toString(), CA_PEM);
    const hc = ignitionFile(config, '/opt/bin/healthcheck');
    assert.equal(hc.mode, 0o755);
    assert.equal(hc.contents?.compression, 'gzip');
    assert.equal(ignitionBytes(hc).toString(), HEALTHCHECK);
    assert.equal(ignitionBytes(ignitionFile(config, '/etc/motd.d/flotilla')).toString(), MOTD);
    const aliases = ignitionFile(config, '/home/ops/.bash_aliases');
    assert.equal(aliases.mode, 0o640);
    assert.deepEqual([aliases.user, aliases.group], [{ name: 'ops' }, { name: 'ops' }]);
    assert.deepEqual(config.passwd?.users?.[1], {
      name: 'metrics',
      uid: 990,
      homeDir: '/var/lib/metrics',
      noCreateHome: true,
      primaryGroup: 'nogroup',
      shell: '/usr/sbin/nologin',
      system: true,
    });
    assert.equal(config.passwd?.users?.[0]?.passwordHash, '$6$rounds=4096$flotilla$3bXJ0aW5nIG5vdCBhIHJlYWwgaGFzaCBqdXN0IGFuIGV4YW1wbGUgb25s');
    assert.equal(warningAt(warnings, 'manage_etc_hosts').line, lineOf(text, 'manage_etc_hosts:'));
  });
});

describe('edge: what has no equivalent is reported at its line', () => {
  const text = example('edge.yaml');

  test('both formats name coreos.flannel, locksmith, oem, append and unknown keys', () => {
    for (const { warnings } of [toCloudConfig(text, 'edge.yaml'), toIgnition(text, 'edge.yaml')]) {
      const flannel = warningAt(warnings, 'coreos.flannel');
      assert.equal(flannel.line, lineOf(text, 'flannel:'));
      assert.equal(flannel.file, 'edge.yaml');
      assert.match(flannel.message, /not translated/);
      assert.equal(warningAt(warnings, 'coreos.locksmith').line, lineOf(text, 'locksmith:'));
      assert.equal(warningAt(warnings, 'coreos.oem').line, lineOf(text, 'oem:'));
      assert.equal(warningAt(warnings, 'write_files[1].append').line, lineOf(text, 'append: true'));
      assert.equal(warningAt(warnings, 'bootcmd').line, lineOf(text, 'bootcmd:'));
      const lines = warnings.map((w) => w.line ?? 0);
      assert.deepEqual(lines, [...lines].sort((a, b) => a - b), 'warnings come in line order');
    }
  });

  test('cloud-config writes update.conf and masks; ignition reports update and try-restart', () => {
    const cc = toCloudConfig(text);
    assert.equal(cloudFile(cc.config, '/etc/coreos/update.conf').content, 'GROUP=stable\nREBOOT_STRATEGY=off\nSERVER=https://public.update.core-os.net/v1/update/\n');
    assert.deepEqual(cc.config.runcmd?.slice(0, 3), [
      ['systemctl', 'daemon-reload'],
      ['systemctl', 'mask', 'locksmithd.service'],
      ['systemctl', 'stop', 'locksmithd.service'],
    ]);
    assert.equal(cloudFile(cc.config, '/run/systemd/system/cache-warmup.service').permissions, '0644');
    assert.equal(cloudFile(cc.config, '/etc/environment').content, 'HTTP_PROXY=http://proxy.internal:3128\n');

    const ign = toIgnition(text);
    assert.match(warningAt(ign.warnings, 'coreos.update').message, /not translated/);
    assert.match(warningAt(ign.warnings, 'coreos.units[3].command').message, /try-restart/);
    assert.ok(!ign.warnings.some((w) => w.path === 'coreos.units[0].command'), 'stopping a masked unit needs no warning');
    assert.deepEqual(unit(ign.config, 'locksmithd.service'), { name: 'locksmithd.service', mask: true });
    assert.equal(unit(ign.config, 'docker.service').enabled, true, '`restart` at every boot is what enabling gives');
    assert.equal(ign.config.storage?.files?.some((f) => f.path === '/etc/coreos/update.conf'), false);
  });
});

describe('broken input throws invalid-input with the place', () => {
  test('YAML syntax error: line and column', () => {
    const text = '#cloud-config\ncoreos:\n  units:\n    - name: a.service\n   command: start\n';
    const problems = invalidInput(text);
    assert.deepEqual(
      problems.map((p) => [p.path, p.file, p.line, p.column]),
      [['', 'bad.yaml', 5, 1]],
    );
    assert.match(problems[0]!.message, /^YAML syntax error: /);
  });

  test('two YAML documents', () => {
    assert.match(invalidInput('#cloud-config\nhostname: a\n---\nhostname: b\n')[0]!.message, /more than one YAML document/);
  });

  test('coreos: {units: 5} names coreos.units', () => {
    const problems = invalidInput('#cloud-config\ncoreos: {units: 5}\n');
    const p = problems.find((x) => x.path === 'coreos.units');
    assert.ok(p, JSON.stringify(problems));
    assert.equal(p.line, 2);
    assert.match(p.message, /expected a list, found number 5/);
  });

  test('bad base64 names the content line', () => {
    const text = '#cloud-config\nwrite_files:\n  - path: /etc/x\n    encoding: b64\n    content: "bm90 IGJhc2U2NA=="\n';
    const problems = invalidInput(text);
    assert.deepEqual(
      problems.map((p) => [p.path, p.line]),
      [['write_files[0].content', 5]],
    );
    assert.match(problems[0]!.message, /not valid base64/);
  });

  test('gzip that is not gzip', () => {
    const text = `#cloud-config\nwrite_files:\n  - path: /etc/x\n    encoding: gz+b64\n    content: ${Buffer.from('plain text').toString('base64')}\n`;
    assert.match(invalidInput(text)[0]!.message, /not valid gzip/);
  });

  test('missing #cloud-config header', () => {
    const problems = invalidInput('coreos:\n  units: []\n');
    assert.deepEqual(problems.map((p) => [p.path, p.line]), [['', 1]]);
    assert.match(problems[0]!.message, /#cloud-config/);
  });

  test('every problem at once: unit without name, unknown command, bad unit name, encoding, permissions, types', () => {
    const text = [
      '#cloud-config',
      'hostname: [a, b]',
      'users:',
      '  - groups: [x]',
      'write_files:',
      '  - path: /etc/a',
      '    encoding: base32',
      '  - path: /etc/b',
      '    permissions: "rw-r--r--"',
      'coreos:',
      '  etcd2:',
      '    heartbeat-interval: fast',
      '    proxy: sometimes',
      '  units:',
      '    - command: start',
      '    - name: web.service',
      '      command: enable',
      '    - name: ../../etc/passwd',
      '    - name: x.service',
      '      enable: maybe',
      '      content: |',
      '        [Service]',
      '        ExecStart /bin/true',
      '',
    ].join('\n');
    const problems = invalidInput(text);
    const at = Object.fromEntries(problems.map((p) => [p.path, p.line]));
    assert.deepEqual(at, {
      hostname: 2,
      'users[0]': 4,
      'write_files[0].encoding': 7,
      'write_files[1].permissions': 9,
      'coreos.etcd2.heartbeat-interval': 12,
      'coreos.etcd2.proxy': 13,
      'coreos.units[0]': 15,
      'coreos.units[1].command': 17,
      'coreos.units[2].name': 18,
      'coreos.units[3].enable': 20,
      'coreos.units[3].content': 21,
    });
    assert.deepEqual(problems.map((p) => p.line), Object.values(at), 'problems come in line order');
    assert.match(problems.find((p) => p.path === 'coreos.units[1].command')!.message, /unknown unit command "enable"/);
    assert.match(problems.find((p) => p.path === 'coreos.units[3].content')!.message, /line 2/);
  });

  test('a key given with - and _ is ambiguous', () => {
    const problems = invalidInput('#cloud-config\ncoreos:\n  etcd2:\n    data-dir: /a\n    data_dir: /b\n');
    assert.deepEqual(problems.map((p) => [p.path, p.line]), [['coreos.etcd2.data_dir', 5]]);
  });

  test('the message lists file:line for the CLI', () => {
    assert.throws(
      () => convertLegacy('#cloud-config\ncoreos: {units: 5}\n', 'old.yaml', 'cloud-config'),
      (e: unknown) => FlotillaError.is(e) && /old\.yaml:2:\d+: coreos\.units: expected a list/.test(e.message),
    );
  });
});

describe('hostile strings survive the trip exactly', () => {
  const hostile = [
    'quotes "double" and \'single\'',
    'key: value # not a comment',
    '{{ template }} and {% tag %} and ${var}',
    '- looks like a list item',
    'yes',
    'on',
    'off',
    '1:20',
    '0644',
    '~',
    'null',
    '  leading and trailing spaces  ',
    'tab\there',
    'trailing backslash \\',
    'multi\nline\n\nwith blank line\n',
    'no final newline\nsecond',
    '\ncarriage\r\nreturns\r\n',
    'unicode: ünïcødé ✓ 日本 🚀',
    '%YAML 1.1',
    '--- not a document',
    '"quoted at the start',
    '#!/bin/sh\necho "$HOME" | tr : \\n\n',
    'Makefile:\n\tcc -o x x.c\n',
    'YAML 1.1 line breaks: NEL \x85 LS \u2028 PS \u2029, DEL \x7f, noncharacter \ufffe',
  ];
  const hostname = 'evil"host: {{name}} #x\nnext';
  const unitContent = '[Unit]\nDescription=it\'s "quoted": {{ x }} # not a comment\n\n[Service]\nExecStart=/bin/echo "a: b" \'{{c}}\' #d\n';
  const etcdName = 'node "one" \\ {{x}} #y: z';

  function hostileInput(): string {
    const doc = {
      hostname,
      write_files: hostile.map((content, i) => ({ path: `/etc/hostile/${i}`, content })),
      coreos: {
        etcd2: { name: etcdName },
        units: [{ name: 'hostile.service', content: unitContent, drop_ins: [{ name: '10-h.conf', content: hostile[1]! }] }],
      },
    };
    return `#cloud-config\n${stringifyYaml(doc, { version: '1.1' })}`;
  }

  /** cloud-init reads user-data with PyYAML, so that is the reader that has to agree. */
  function readWithPyYaml(yamlText: string): unknown {
    const r = spawnSync('python3', ['-c', 'import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))'], {
      input: yamlText,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout);
  }

  test('cloud-config, read back by PyYAML', () => {
    const { output } = toCloudConfig(hostileInput());
    assertValidCloudConfig(output);
    const config = readWithPyYaml(output) as ModernCloudConfig;
    assert.equal(config.hostname, hostname);
    hostile.forEach((content, i) => assert.equal(cloudBytes(cloudFile(config, `/etc/hostile/${i}`)).toString(), content));
    // text stays text unless PyYAML could not read it back (then it travels as base64)
    assert.equal(cloudFile(config, '/etc/hostile/0').encoding, undefined);
    assert.equal(cloudFile(config, `/etc/hostile/${hostile.length - 1}`).encoding, 'b64');
    assert.equal(cloudFile(config, '/etc/systemd/system/hostile.service').content, unitContent);
    assert.equal(cloudFile(config, '/etc/systemd/system/hostile.service.d/10-h.conf').content, hostile[1]);
    const dropIn = cloudFile(config, '/etc/systemd/system/etcd2.service.d/20-cloudinit.conf').content;
    assert.deepEqual(parseEnvironmentLine(dropIn.split('\n')[1]!), { variable: 'ETCD_NAME', value: etcdName });
  });

  test('ignition', () => {
    const { config, output } = toIgnition(hostileInput());
    assertValidIgnition(output);
    assert.equal(ignitionBytes(ignitionFile(config, '/etc/hostname')).toString(), `${hostname}\n`);
    hostile.forEach((content, i) => assert.equal(ignitionBytes(ignitionFile(config, `/etc/hostile/${i}`)).toString(), content));
    assert.equal(unit(config, 'hostile.service').contents, unitContent);
    const envLine = unit(config, 'etcd2.service').dropins![0]!.contents!.split('\n')[1]!;
    assert.deepEqual(parseEnvironmentLine(envLine), { variable: 'ETCD_NAME', value: etcdName });
  });

  test('any text round-trips through PyYAML and Ignition; binary gzip keeps its bytes (property)', () => {
    const seed = Date.now();
    const texts = fc.sample(fc.string({ unit: 'binary', maxLength: 80 }), { numRuns: 400, seed });
    const blobs = fc.sample(fc.uint8Array({ maxLength: 64 }), { numRuns: 20, seed });
    const doc = {
      write_files: [
        ...texts.map((content, i) => ({ path: `/t/${i}`, content })),
        ...blobs.map((bytes, i) => ({ path: `/b/${i}`, encoding: 'gzip+b64', content: gzipSync(Buffer.from(bytes)).toString('base64') })),
      ],
    };
    const text = `#cloud-config\n${stringifyYaml(doc, { version: '1.1' })}`;
    const cc = readWithPyYaml(toCloudConfig(text).output) as ModernCloudConfig;
    const ign = toIgnition(text).config;
    texts.forEach((content, i) => {
      const why = `seed ${seed}, text ${JSON.stringify(content)}`;
      assert.equal(cloudBytes(cloudFile(cc, `/t/${i}`)).toString(), content, why);
      assert.equal(ignitionBytes(ignitionFile(ign, `/t/${i}`)).toString(), content, why);
    });
    blobs.forEach((bytes, i) => {
      assert.deepEqual(cloudBytes(cloudFile(cc, `/b/${i}`)), Buffer.from(bytes), `seed ${seed}`);
      assert.deepEqual(ignitionBytes(ignitionFile(ign, `/b/${i}`)), Buffer.from(bytes), `seed ${seed}`);
    });
  });
});

describe('unit semantics', () => {
  test('a unit listed twice becomes one Ignition unit; files written twice keep the later one', () => {
    const text = [
      '#cloud-config',
      'write_files:',
      '  - path: /etc/motd',
      '    content: first',
      '  - path: /etc/motd',
      '    content: second',
      'coreos:',
      '  units:',
      '    - name: app.service',
      '      command: start',
      '    - name: app.service',
      '      content: |',
      '        [Service]',
      '        ExecStart=/usr/bin/sleep infinity',
      '      drop-ins:',
      '        - name: 10-env.conf',
      '          content: |',
      '            [Service]',
      '            Environment=A=1',
      '',
    ].join('\n');
    const { config, output, warnings } = toIgnition(text);
    assertValidIgnition(output);
    assert.equal(config.systemd?.units?.length, 1);
    assert.deepEqual(unit(config, 'app.service'), {
      name: 'app.service',
      enabled: true,
      contents: '[Service]\nExecStart=/usr/bin/sleep infinity\n',
      dropins: [{ name: '10-env.conf', contents: '[Service]\nEnvironment=A=1\n' }],
    });
    assert.equal(ignitionBytes(ignitionFile(config, '/etc/motd')).toString(), 'second');
    assert.equal(warningAt(warnings, 'write_files[1].path').line, 5);
    // enabled, but the content has no [Install]: enabling does nothing, which is reported
    assert.match(warningAt(warnings, 'coreos.units[1].content').message, /no \[Install\] section/);
  });

  test('masked unit: content dropped with a warning, mask kept in both formats', () => {
    const text = '#cloud-config\ncoreos:\n  units:\n    - name: bad.service\n      mask: true\n      content: |\n        [Service]\n        ExecStart=/bin/false\n';
    const cc = toCloudConfig(text);
    assert.equal(cc.config.write_files, undefined);
    assert.deepEqual(cc.config.runcmd, [['systemctl', 'daemon-reload'], ['systemctl', 'mask', 'bad.service']]);
    assert.equal(warningAt(cc.warnings, 'coreos.units[0].content').line, 6);
    const ign = toIgnition(text);
    assert.deepEqual(ign.config.systemd?.units, [{ name: 'bad.service', mask: true }]);
  });

  test('runtime units use --runtime under /run for cloud-config', () => {
    const text = '#cloud-config\ncoreos:\n  units:\n    - name: r.service\n      runtime: true\n      enable: true\n      mask: false\n      content: |\n        [Service]\n        ExecStart=/bin/true\n        [Install]\n        WantedBy=multi-user.target\n';
    const { config } = toCloudConfig(text);
    assert.deepEqual(config.write_files?.map((f) => f.path), ['/run/systemd/system/r.service']);
    assert.deepEqual(config.runcmd, [['systemctl', 'daemon-reload'], ['systemctl', 'enable', '--runtime', 'r.service']]);
  });

  test('top-level keys with users: cloud-config keeps the default user first; ignition adds them to core', () => {
    const text = '#cloud-config\nssh_authorized_keys: [ssh-ed25519 AAAAtop]\nusers:\n  - name: core\n    ssh-authorized-keys: [ssh-ed25519 AAAAcore]\n  - name: app\n';
    const cc = toCloudConfig(text);
    assertValidCloudConfig(cc.output);
    assert.deepEqual(cc.config.users, ['default', { name: 'core', ssh_authorized_keys: ['ssh-ed25519 AAAAcore'] }, { name: 'app' }]);
    assert.deepEqual(cc.config.ssh_authorized_keys, ['ssh-ed25519 AAAAtop']);
    const ign = toIgnition(text);
    assert.deepEqual(ign.config.passwd?.users, [{ name: 'core', sshAuthorizedKeys: ['ssh-ed25519 AAAAcore', 'ssh-ed25519 AAAAtop'] }, { name: 'app' }]);
  });

  test('empty and null sections mean nothing to do', () => {
    const text = '#cloud-config\nmanage_etc_hosts: ~\nusers:\nwrite_files: null\ncoreos:\n  fleet: ~\n  etcd2: {}\n  units:\n';
    for (const { config, warnings } of [toCloudConfig(text), toIgnition(text)]) {
      assert.deepEqual(warnings, []);
      assert.deepEqual(Object.keys(config).filter((k) => k !== 'ignition'), []);
    }
  });

  test('reboot-strategy: off stays the text off (YAML 1.1 would make it false)', () => {
    const { config } = toCloudConfig('#cloud-config\ncoreos:\n  update:\n    reboot-strategy: off\n');
    assert.equal(cloudFile(config, '/etc/coreos/update.conf').content, 'REBOOT_STRATEGY=off\n');
  });
});

describe('isLegacyCoreosConfig', () => {
  test('needs the header and a top-level coreos key', () => {
    assert.equal(isLegacyCoreosConfig('#cloud-config\ncoreos:\n  units: []\n'), true);
    assert.equal(isLegacyCoreosConfig('#cloud-config  \r\nhostname: a\ncoreos: {}\n'), true);
    assert.equal(isLegacyCoreosConfig('#cloud-config\nhostname: a\nruncmd: [ls]\n'), false);
    assert.equal(isLegacyCoreosConfig('#cloud-config\nwrite_files:\n  - coreos: x\n'), false);
    assert.equal(isLegacyCoreosConfig('coreos:\n  units: []\n'), false);
    assert.equal(isLegacyCoreosConfig('{"ignition": {"version": "3.3.0"}}'), false);
  });

  test('broken YAML with a coreos key still goes to the legacy converter, which reports it', () => {
    const text = '#cloud-config\ncoreos:\n  units: [\n';
    assert.equal(isLegacyCoreosConfig(text), true);
    assert.match(invalidInput(text)[0]!.message, /YAML syntax error/);
  });
});
