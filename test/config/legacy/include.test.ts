/**
 * `.include` in CoreOS-era unit content: a unit including its own packaged file becomes a
 * drop-in over it, a file the config writes is inlined, anything else is refused with the line;
 * every output passes the real validators.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { FlotillaError } from '../../../src/errors';
import { convertLegacy, type ModernCloudConfig } from '../../../src/config/legacy';
import { decodeDataUrl, type IgnitionConfig } from '../../../src/config/ignition-types';
import { INCLUDE_DROPIN_NAME } from '../../../src/config/legacy/include';
import { cloudInitSchema, ignitionValidate } from '../../../src/config/validators';

const DOCKER = `#cloud-config
coreos:
  units:
    - name: docker.service
      command: restart
      content: |
        .include /usr/lib/systemd/system/docker.service
        [Service]
        Environment="DOCKER_OPTS=--insecure-registry=10.0.0.0/8"
`;

test('a unit that includes its packaged file becomes a drop-in over it, in both formats', () => {
  const cc = convertLegacy(DOCKER, 'docker.yaml', 'cloud-config');
  assert.ok(cloudInitSchema(cc.output).ok, cc.output);
  const files = (parseYaml(cc.output, { version: '1.1' }) as ModernCloudConfig).write_files!;
  assert.deepEqual(files.map((f) => f.path), [`/etc/systemd/system/docker.service.d/${INCLUDE_DROPIN_NAME}`]);
  assert.equal(files[0]!.content, '[Service]\nEnvironment="DOCKER_OPTS=--insecure-registry=10.0.0.0/8"\n');
  const w = cc.warnings.find((x) => x.message.startsWith('`.include /usr/lib/systemd/system/docker.service`'));
  assert.equal(w?.line, 7, JSON.stringify(cc.warnings));
  assert.match(w!.message, /written as drop-in docker\.service\.d\/10-coreos-include\.conf over the packaged docker\.service/);

  const ign = convertLegacy(DOCKER, 'docker.yaml', 'ignition');
  assert.ok(ignitionValidate(ign.output).ok, ign.output);
  const unit = (JSON.parse(ign.output) as IgnitionConfig).systemd!.units!.find((u) => u.name === 'docker.service')!;
  assert.equal(unit.contents, undefined);
  assert.deepEqual(unit.dropins, [{ name: INCLUDE_DROPIN_NAME, contents: '[Service]\nEnvironment="DOCKER_OPTS=--insecure-registry=10.0.0.0/8"\n' }]);
});

test('settings right after .include keep the section they were written in', () => {
  const text = DOCKER.replace('        [Service]\n', '');
  const r = convertLegacy(`${text.replace('.include', '[Service]\n        .include')}`, 'x.yaml', 'cloud-config');
  assert.match((parseYaml(r.output, { version: '1.1' }) as ModernCloudConfig).write_files![0]!.content, /^\[Service\]\nEnvironment=/);
});

test('a file the config writes itself is inlined', () => {
  const text = `#cloud-config
write_files:
  - path: /etc/systemd/common.conf
    content: |
      [Service]
      Restart=always
coreos:
  units:
    - name: app.service
      content: |
        [Unit]
        Description=app
        .include /etc/systemd/common.conf
        ExecStart=/usr/bin/app
`;
  const ign = convertLegacy(text, 'app.yaml', 'ignition');
  assert.ok(ignitionValidate(ign.output).ok, ign.output);
  const unit = (JSON.parse(ign.output) as IgnitionConfig).systemd!.units!.find((u) => u.name === 'app.service')!;
  assert.equal(unit.contents, '[Unit]\nDescription=app\n[Service]\nRestart=always\nExecStart=/usr/bin/app\n');
  assert.ok(ign.warnings.some((w) => w.line === 13 && /inlined from this config's own \/etc\/systemd\/common\.conf/.test(w.message)));
  const files = (JSON.parse(ign.output) as IgnitionConfig).storage!.files!;
  assert.equal(decodeDataUrl(files.find((f) => f.path === '/etc/systemd/common.conf')!.contents!.source!)!.toString(), '[Service]\nRestart=always\n');
});

test('an .include that nothing can express is refused with its line and why', () => {
  const text = `#cloud-config
coreos:
  units:
    - name: docker-tcp.service
      content: |
        .include /usr/lib/systemd/system/docker.service
        [Service]
        ExecStart=
`;
  for (const format of ['cloud-config', 'ignition'] as const) {
    assert.throws(
      () => convertLegacy(text, 'tcp.yaml', format),
      (e: unknown) =>
        FlotillaError.is(e) &&
        e.problems.some((p) => p.file === 'tcp.yaml' && p.line === 6 && /cannot be translated: this config does not write \/usr\/lib\/systemd\/system\/docker\.service, and docker-tcp\.service is not the unit it names/.test(p.message)),
    );
  }
  const before = `#cloud-config
coreos:
  units:
    - name: docker.service
      content: |
        [Service]
        Environment=A=1
        .include /usr/lib/systemd/system/docker.service
`;
  assert.throws(() => convertLegacy(before, 'b.yaml', 'ignition'), (e: unknown) => FlotillaError.is(e) && e.problems.some((p) => p.line === 8 && /settings before the line/.test(p.message)));
});
