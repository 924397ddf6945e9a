/**
 * Values that must be text: a mapping or list there is a located error wherever it stands,
 * including sections that are only reported, and `{{token}}` is named as an unrendered placeholder.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { FlotillaError, type Problem } from '../../../src/errors';
import { convertLegacy } from '../../../src/config/legacy';

function problems(text: string): readonly Problem[] {
  try {
    convertLegacy(text, 'tpl.yaml', 'ignition');
  } catch (e) {
    if (FlotillaError.is(e)) return e.problems;
    throw e;
  }
  assert.fail('converted without an error');
}

test('{{placeholders}} are located errors in translated and untranslated sections alike', () => {
  const found = problems(`#cloud-config
hostname: {{name}}
coreos:
  etcd:
    discovery: {{token}}
  flannel:
    interface: [eth0, eth1]
  etcd2:
    discovery: {{token}}
  units:
    - name: a.service
      enable: {{flag}}
`);
  const where = found.map((p) => `${p.line}:${p.path}`);
  assert.deepEqual(where, ['2:hostname', '5:coreos.etcd.discovery', '7:coreos.flannel.interface', '9:coreos.etcd2.discovery', '12:coreos.units[0].enable']);
  for (const p of found.filter((p) => p.line !== 7)) assert.match(p.message, /\{\{\w+\}\} looks like an unrendered template placeholder/);
  assert.match(found.find((p) => p.line === 7)!.message, /^expected text, found a list$/);
});

test('scalar settings in an untranslated section are only reported', () => {
  const r = convertLegacy('#cloud-config\ncoreos:\n  etcd:\n    discovery: "{{token}}"\n    addr: 1.2.3.4:4001\n', 'ok.yaml', 'cloud-config');
  assert.equal(r.warnings.length, 1);
  assert.match(r.warnings[0]!.message, /^not translated: etcd 0\.4 settings/);
});
