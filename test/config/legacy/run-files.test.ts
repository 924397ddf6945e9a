/**
 * write_files under /run: both outputs keep the file across reboots through a persistent copy
 * and a tmpfiles.d entry, proved with the real systemd-tmpfiles on a scratch root; unit files
 * under /run/systemd are warned about (cloud-config) or moved to /etc/systemd (Ignition).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { convertLegacy, type ModernCloudConfig } from '../../../src/config/legacy';
import { decodeDataUrl, type IgnitionConfig } from '../../../src/config/ignition-types';
import { RUN_TMPFILES_PATH, runTmpfiles } from '../../../src/config/legacy/run-files';
import { cloudInitSchema, ignitionValidate } from '../../../src/config/validators';

const CONFIG = `#cloud-config
coreos:
  units:
    - name: app.service
      command: start
      content: |
        [Service]
        ExecStart=/run/app/bin/start
write_files:
  - path: /run/app/bin/start
    permissions: "0755"
    content: |
      #!/bin/sh
      exec sleep infinity
  - path: /var/run/app/env
    content: "A=1\\n"
  - path: /run/systemd/system/app.service.d/10-env.conf
    content: |
      [Service]
      EnvironmentFile=/run/app/env
  - path: /etc/app.conf
    content: "x\\n"
`;

test('cloud-config: /run files are written for the first boot and kept for later ones; /run/systemd units are warned about', () => {
  const r = convertLegacy(CONFIG, 'app.yaml', 'cloud-config');
  assert.ok(cloudInitSchema(r.output).ok, r.output);
  const files = (parseYaml(r.output, { version: '1.1' }) as ModernCloudConfig).write_files!;
  const byPath = new Map(files.map((f) => [f.path, f]));
  for (const p of ['/run/app/bin/start', '/var/run/app/env', '/run/systemd/system/app.service.d/10-env.conf', '/etc/app.conf']) assert.ok(byPath.has(p), p);
  assert.equal(byPath.get('/etc/flotilla/run/app/bin/start')?.permissions, '0755');
  assert.equal(byPath.get('/etc/flotilla/run/app/bin/start')?.content, '#!/bin/sh\nexec sleep infinity\n');
  assert.ok(byPath.has('/etc/flotilla/run/app/env'));
  assert.equal(byPath.has('/etc/flotilla/run/systemd/system/app.service.d/10-env.conf'), false);
  assert.match(byPath.get(RUN_TMPFILES_PATH)!.content, /^C "\/run\/app\/bin\/start" - - - - \/etc\/flotilla\/run\/app\/bin\/start$/m);
  const lines = CONFIG.split('\n');
  const lineOf = (s: string): number => lines.findIndex((l) => l.includes(s)) + 1;
  const at = (p: string) => r.warnings.find((w) => w.message.startsWith(`${p}:`));
  assert.equal(at('/run/app/bin/start')?.line, lineOf('path: /run/app/bin/start'));
  assert.match(at('/run/app/bin/start')!.message, /cloud-init writes it on the first boot only\. Also written to \/etc\/flotilla\/run\/app\/bin\/start, which \/etc\/tmpfiles\.d\/flotilla-run\.conf copies/);
  assert.equal(at('/run/systemd/system/app.service.d/10-env.conf')?.line, lineOf('path: /run/systemd/'));
  assert.match(at('/run/systemd/system/app.service.d/10-env.conf')!.message, /write it to \/etc\/systemd\/system\/app\.service\.d\/10-env\.conf instead/);
  assert.equal(at('/etc/app.conf'), undefined);
});

test('Ignition: /run files go to their persistent copy plus tmpfiles; /run/systemd units go to /etc/systemd', () => {
  const r = convertLegacy(CONFIG, 'app.yaml', 'ignition');
  assert.ok(ignitionValidate(r.output).ok, r.output);
  const files = (JSON.parse(r.output) as IgnitionConfig).storage!.files!;
  const paths = files.map((f) => f.path);
  assert.equal(paths.some((p) => p.startsWith('/run/') || p.startsWith('/var/run/')), false, paths.join(' '));
  assert.ok(paths.includes('/etc/systemd/system/app.service.d/10-env.conf'));
  assert.equal(files.find((f) => f.path === '/etc/flotilla/run/app/bin/start')?.mode, 0o755);
  const tmpfiles = decodeDataUrl(files.find((f) => f.path === RUN_TMPFILES_PATH)!.contents!.source!)!.toString();
  assert.equal(tmpfiles.split('\n').filter((l) => l.startsWith('C ')).length, 2);
  assert.ok(r.warnings.some((w) => /^\/run\/systemd\/system\/app\.service\.d\/10-env\.conf: .*written to \/etc\/systemd/.test(w.message)));
});

test('the tmpfiles.d entries really copy each file into an empty /run (systemd-tmpfiles on a scratch root)', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-tmpfiles-'));
  try {
    const copies = [
      { runPath: '/run/app/bin/start', copyPath: '/etc/flotilla/run/app/bin/start' },
      { runPath: "/run/odd dir/100%\"q\".env", copyPath: "/etc/flotilla/run/odd dir/100%\"q\".env" },
    ];
    for (const [i, c] of copies.entries()) {
      fs.mkdirSync(path.join(root, path.dirname(c.copyPath)), { recursive: true });
      fs.writeFileSync(path.join(root, c.copyPath), `content ${i}\n`, { mode: 0o750 });
    }
    fs.mkdirSync(path.join(root, 'etc/tmpfiles.d'), { recursive: true });
    fs.mkdirSync(path.join(root, 'run'));
    const conf = path.join(root, RUN_TMPFILES_PATH);
    fs.writeFileSync(conf, runTmpfiles(copies));
    const res = spawnSync('systemd-tmpfiles', [`--root=${root}`, '--create', conf], { encoding: 'utf8' });
    assert.equal(res.status, 0, res.stderr);
    for (const [i, c] of copies.entries()) {
      const copied = path.join(root, c.runPath);
      assert.equal(fs.readFileSync(copied, 'utf8'), `content ${i}\n`, c.runPath);
      assert.equal(fs.statSync(copied).mode & 0o777, 0o750);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
