/**
 * The real-world corpus (test/fixtures/real-world/, third-party CoreOS-era files kept byte for
 * byte, origins in SOURCES.tsv): every cloud-config converts to both formats and passes the real
 * validators, or is one of the refusals listed below with its reason; nothing converts with a
 * silent drop: every unit, drop-in, write_files path, user, SSH key and coreos.* setting of the
 * input appears in the output or in a located warning. Every unit file is accepted by
 * `units verify` or refused as listed.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { parse as parseYaml } from 'yaml';
import { FlotillaError, type Problem } from '../../../src/errors';
import { convertLegacy, type ModernCloudConfig } from '../../../src/config/legacy';
import { decodeDataUrl, type IgnitionConfig } from '../../../src/config/ignition-types';
import { cloudInitSchema, ignitionValidate } from '../../../src/config/validators';
import { checkUnitFile } from '../../../src/units/client';
import { REAL_WORLD, REFUSED_CLOUD_CONFIGS, REFUSED_UNITS } from '../../helpers/real-world';

const CORPUS = REAL_WORLD;
const CLOUD_CONFIGS = path.join(CORPUS, 'cloud-configs');
const UNITS = path.join(CORPUS, 'units');

function files(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.relative(dir, path.join(d.parentPath, d.name)))
    .sort();
}

/** Every text the output puts on the machine, decoded: file contents, unit bodies, drop-ins, commands, users, keys. */
function outputText(output: string, format: 'cloud-config' | 'ignition'): { text: string; paths: string[]; users: string[]; units: string[] } {
  if (format === 'ignition') {
    const c = JSON.parse(output) as IgnitionConfig;
    const fileTexts = (c.storage?.files ?? []).map((f) => {
      const raw = f.contents?.source ? decodeDataUrl(f.contents.source) : Buffer.alloc(0);
      return (f.contents?.compression === 'gzip' ? gunzipSync(raw!) : raw!).toString('utf8');
    });
    const units = c.systemd?.units ?? [];
    return {
      text: [output, ...fileTexts, ...units.flatMap((u) => [u.contents ?? '', ...(u.dropins ?? []).map((d) => `${d.name}\n${d.contents ?? ''}`)])].join('\n'),
      paths: [...(c.storage?.files ?? []).map((f) => f.path), ...units.flatMap((u) => [u.name, ...(u.dropins ?? []).map((d) => `${u.name}.d/${d.name}`)])],
      users: (c.passwd?.users ?? []).map((u) => u.name),
      units: units.map((u) => u.name),
    };
  }
  const c = parseYaml(output, { version: '1.1' }) as ModernCloudConfig;
  const fileTexts = (c.write_files ?? []).map((f) => {
    const enc = f.encoding ?? '';
    const data = /b64|base64/.test(enc) ? Buffer.from(f.content, 'base64') : Buffer.from(f.content, 'utf8');
    return (enc.startsWith('gz') ? gunzipSync(data) : data).toString('utf8');
  });
  const paths = (c.write_files ?? []).map((f) => f.path);
  return {
    text: [output, ...fileTexts].join('\n'),
    paths,
    users: (c.users ?? []).flatMap((u) => (u === 'default' ? [] : [u.name])),
    units: [...paths.map((p) => path.basename(p)), ...(c.runcmd ?? []).flatMap((cmd) => cmd)],
  };
}

/** What of `input` neither reaches the output nor has a warning at (or above) its path. */
function silentDrops(input: string, output: string, format: 'cloud-config' | 'ignition', warnings: readonly Problem[]): string[] {
  const doc = parseYaml(input, { version: '1.1' }) as Record<string, unknown>;
  const out = outputText(output, format);
  const warned = (p: string): boolean => warnings.some((w) => w.path === p || w.path.startsWith(`${p}.`) || w.path.startsWith(`${p}[`) || p.startsWith(`${w.path}.`) || p.startsWith(`${w.path}[`));
  const key = (o: Record<string, unknown>, k: string): unknown => o[k] ?? o[k.replace(/_/g, '-')];
  const drops: string[] = [];
  const need = (what: string, p: string, present: boolean): void => {
    if (!present && !warned(p)) drops.push(`${p} (${what})`);
  };
  const coreos = (doc.coreos ?? {}) as Record<string, unknown>;
  for (const [i, u] of ((coreos.units ?? []) as Array<Record<string, unknown>>).entries()) {
    const name = String(u.name);
    need(`unit ${name}`, `coreos.units[${i}]`, out.units.includes(name) || out.paths.some((p) => p.endsWith(`/${name}`) || p.includes(`/${name}.d/`)));
    for (const [j, d] of (((key(u, 'drop_ins') ?? []) as Array<Record<string, unknown>>).entries())) {
      need(`drop-in ${d.name}`, `coreos.units[${i}].${u.drop_ins ? 'drop_ins' : 'drop-ins'}[${j}]`, out.paths.some((p) => p.endsWith(`${name}.d/${String(d.name)}`)));
    }
  }
  for (const [i, f] of ((key(doc, 'write_files') ?? []) as Array<Record<string, unknown>>).entries()) {
    const p = String(f.path).replace(/^(?!\/)/, '/');
    const rest = p.replace(/^\/(var\/)?run/, '');
    need(`file ${p}`, `${doc.write_files ? 'write_files' : 'write-files'}[${i}]`, out.paths.includes(p) || out.paths.includes(`/etc/flotilla/run${rest}`) || out.paths.includes(`/etc${rest}`));
  }
  for (const [i, u] of ((doc.users ?? []) as Array<Record<string, unknown>>).entries()) {
    need(`user ${u.name}`, `users[${i}]`, out.users.includes(String(u.name)));
    for (const [j, k] of ((key(u, 'ssh_authorized_keys') ?? []) as unknown[]).entries()) need('an SSH key', `users[${i}].ssh_authorized_keys[${j}]`, out.text.includes(String(k).trim()));
  }
  for (const [j, k] of ((key(doc, 'ssh_authorized_keys') ?? []) as unknown[]).entries()) need('an SSH key', `ssh_authorized_keys[${j}]`, out.text.includes(String(k).trim()));
  for (const [section, settings] of Object.entries(coreos)) {
    if (section === 'units' || settings === null || typeof settings !== 'object') continue;
    for (const [k, v] of Object.entries(settings as Record<string, unknown>)) {
      // false, 0 and '' mean "the daemon's default": coreos-cloudinit left them out too.
      if (v === false || v === 0 || v === '' || v === null) continue;
      need(`setting ${section}.${k}`, `coreos.${section}.${k}`, out.text.includes(String(v)));
    }
  }
  return drops;
}

test('the silent-drop check finds a unit, file, user, key or setting that went missing without a warning', () => {
  const input = '#cloud-config\nssh_authorized_keys: ["ssh-ed25519 AAAAkey one"]\nusers:\n  - name: ops\nwrite_files:\n  - path: /etc/x\n    content: hi\ncoreos:\n  etcd2:\n    name: node-one\n  units:\n    - name: app.service\n      command: start\n      content: "[Service]\\nExecStart=/bin/true\\n"\n';
  const r = convertLegacy(input, 'in.yaml', 'ignition');
  assert.deepEqual(silentDrops(input, r.output, 'ignition', r.warnings), []);
  const c = JSON.parse(r.output) as IgnitionConfig;
  const broken = { ...c, systemd: { units: [] }, passwd: { users: [] }, storage: { files: c.storage!.files!.filter((f) => f.path !== '/etc/x' && !f.path.includes('etcd2')) } };
  assert.deepEqual(silentDrops(input, JSON.stringify(broken), 'ignition', []).sort(), [
    'coreos.etcd2.name (setting etcd2.name)',
    'coreos.units[0] (unit app.service)',
    'ssh_authorized_keys[0] (an SSH key)',
    'users[0] (user ops)',
    'write_files[0] (file /etc/x)',
  ]);
  // A warning at the item's path (or above it) accounts for it.
  assert.deepEqual(silentDrops(input, JSON.stringify(broken), 'ignition', [{ path: 'coreos', message: 'm' }, { path: 'users[0]', message: 'm' }, { path: 'ssh_authorized_keys', message: 'm' }, { path: 'write_files[0].path', message: 'm' }]), []);
});

describe('real-world CoreOS cloud-configs', () => {
  const all = files(CLOUD_CONFIGS);
  test('the corpus is what the README says: at least 40 cloud-configs, each with its source', () => {
    assert.ok(all.length >= 40, `${all.length} cloud-configs`);
    const sources = fs.readFileSync(path.join(CORPUS, 'SOURCES.tsv'), 'utf8');
    for (const f of all) assert.match(sources, new RegExp(`^cloud-configs/${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\t\\S+/\\S+\\t\\S+\\t[0-9a-f]{40}$`, 'm'), f);
    for (const f of Object.keys(REFUSED_CLOUD_CONFIGS)) assert.ok(all.includes(f), `listed refusal ${f} is in the corpus`);
  });
  for (const f of all) {
    test(f, () => {
      const text = fs.readFileSync(path.join(CLOUD_CONFIGS, f), 'utf8');
      for (const format of ['cloud-config', 'ignition'] as const) {
        let result;
        try {
          result = convertLegacy(text, f, format);
        } catch (e) {
          assert.ok(FlotillaError.is(e) && e.code === 'invalid-input', `not a located refusal: ${(e as Error).stack}`);
          const why = REFUSED_CLOUD_CONFIGS[f];
          assert.ok(why, `${format}: refused, but not listed as a correct refusal:\n${e.message}`);
          assert.match(e.message, why);
          continue;
        }
        assert.equal(REFUSED_CLOUD_CONFIGS[f], undefined, `listed as refused, but converts to ${format}`);
        for (const w of result.warnings) assert.ok(w.file === f && w.line !== undefined, `warning without a line: ${JSON.stringify(w)}`);
        const v = format === 'cloud-config' ? cloudInitSchema(result.output) : ignitionValidate(result.output);
        assert.ok(v.ok, `${format} rejected by its validator:\n${v.messages.join('\n')}`);
        assert.deepEqual(silentDrops(text, result.output, format, result.warnings), [], `${format}: dropped without a warning`);
      }
    });
  }
});

describe('real-world fleet units', () => {
  const all = files(UNITS);
  test('at least 60 units, each with its source, many of them templates', () => {
    assert.ok(all.length >= 60, `${all.length} units`);
    assert.ok(all.filter((f) => f.includes('@.')).length >= 8);
    const sources = fs.readFileSync(path.join(CORPUS, 'SOURCES.tsv'), 'utf8');
    for (const f of all) assert.ok(sources.includes(`units/${f}\t`), f);
  });
  test('units verify accepts every unit fleet would have run, and refuses only the listed ones, each with its line', () => {
    const unexpected: string[] = [];
    for (const f of all) {
      const { problems } = checkUnitFile(path.join(UNITS, f), fs.readFileSync(path.join(UNITS, f), 'utf8'));
      const why = REFUSED_UNITS[f];
      if (why) {
        assert.ok(problems.length > 0, `${f} is listed as refused but is accepted`);
        assert.match(problems.map((p) => `${p.file}:${p.line}: ${p.path}: ${p.message}`).join('\n'), why);
      } else if (problems.length > 0) unexpected.push(`${f}: ${problems.map((p) => `${p.line}: ${p.message}`).join('; ')}`);
    }
    assert.deepEqual(unexpected, []);
  });
});
