/**
 * The converter's warnings as a person reads them: one line per distinct warning listing its
 * places, dropped before changed, a count at the end; --json keeps every occurrence.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertLegacy } from '../../../src/config/legacy';
import { groupWarnings, summarizeWarnings } from '../../../src/config/legacy/warnings';
import { cli } from '../../helpers/cli';

const UNITS = [0, 1, 2, 3, 4, 5].map((i) => `    - name: u${i}.service\n      command: ${i % 2 === 0 ? 'reload' : 'start'}\n${i % 2 === 0 ? '      enable: true\n' : ''}      content: |\n        [Service]\n        ExecStart=/bin/true\n        [Install]\n        WantedBy=multi-user.target\n`);
const CONFIG = `#cloud-config\nwrite_files:\n  - path: /etc/a\n    content: $private_ipv4\n  - path: /etc/b\n    content: $private_ipv4\ncoreos:\n  locksmith:\n    group: x\n  units:\n${UNITS.join('')}`;

test('identical warnings are one line with their places; dropped ones first; a count ends the list', () => {
  const { warnings } = convertLegacy(CONFIG, 'big.yaml', 'cloud-config');
  assert.equal(warnings.length, 9);
  const lines = summarizeWarnings(warnings);
  assert.equal(lines.length, 5, lines.join('\n'));
  assert.match(lines[0]!, /^big\.yaml:\d+:\d+: coreos\.locksmith: not translated/);
  const enabled = lines.find((l) => l.includes('runs it on the first boot only') && !l.includes('not enabled'))!;
  assert.match(enabled, /^big\.yaml:coreos\.units\[0,2,4\]\.command \(lines \d+, \d+, \d+\): coreos-cloudinit ran `reload` at every boot/);
  assert.match(lines.find((l) => l.includes('not enabled'))!, /^big\.yaml:coreos\.units\[1,3,5\]\.command \(lines /);
  assert.match(lines.find((l) => l.includes('$private_ipv4'))!, /^big\.yaml:write_files\[0,1\]\.content \(lines 4, 6\): `\$private_ipv4`/);
  assert.equal(lines[4], '9 warnings (4 distinct): 1 not carried over, 8 carried over differently');
  assert.deepEqual(groupWarnings(warnings).map((g) => g.places.length), [1, 2, 3, 3]);
});

test('places of different shapes are listed; convert prints the summary and --json every occurrence', async () => {
  assert.match(summarizeWarnings([{ path: 'a', message: 'm', file: 'f', line: 1 }, { path: 'b.c[2]', message: 'm', file: 'f', line: 9 }])[0]!, /^f:a, b\.c\[2\] \(lines 1, 9\): m$/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-warn-'));
  try {
    const file = path.join(dir, 'big.yaml');
    fs.writeFileSync(file, CONFIG);
    const r = await cli('convert', file, '--format', 'ignition');
    assert.equal(r.code, 0, r.stderr);
    const err = r.stderr.trim().split('\n');
    assert.match(err[err.length - 1]!, /^\d+ warnings \(\d+ distinct\): /);
    assert.ok(err.slice(0, -1).every((l) => l.startsWith('warning: ')), r.stderr);
    const j = await cli('convert', file, '--format', 'ignition', '--json');
    const parsed = JSON.parse(j.stdout) as { warnings: unknown[] };
    assert.equal(parsed.warnings.length, convertLegacy(CONFIG, file, 'ignition').warnings.length);
    assert.equal(j.stderr, '');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
