/**
 * Property-based tests for the legacy CoreOS cloud-config converter (legacy.ts, legacy/**),
 * issue 7: generated valid configs convert to both formats with their units and files, every
 * warning located; corrupted configs (mutated text, hostile strings, random bytes, random
 * values anywhere in the document) give a conversion or a FlotillaError, every problem at a
 * line and column of the text, the same result every time, and no prototype pollution.
 * legacy.test.ts already round-trips file contents through PyYAML and Ignition.
 * Seed and run count: see test/helpers/arbitraries.ts.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { parse, parseDocument, stringify } from 'yaml';
import { convertLegacy, isLegacyCoreosConfig, type CloudConfigFile, type ModernCloudConfig } from '../../src/config/legacy';
import { decodeDataUrl, type IgnitionConfig } from '../../src/config/ignition-types';
import type { Problem } from '../../src/errors';
import {
  assertInBounds,
  assertNoPrototypePollution,
  checkProperty,
  hostileString,
  linesOf,
  mutated,
  outcome,
  outcomeSummary,
  parentPath,
  randomBytesAsText,
  requiredRuns,
  resolvePath,
  RunCounter,
  shortHostileString,
  unitFileText,
} from '../helpers/arbitraries';
import { splitPath } from '../../src/config/yaml-source';

const runs = new RunCounter();
const FILE = 'legacy-user-data.yaml';
const FORMATS = ['cloud-config', 'ignition'] as const;

// ---------------------------------------------------------------------------
// Valid legacy configs

/** Text for names and other short fields: nothing YAML, PyYAML or a unit name would trip on. */
const plainText = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9 _.@:/-]{0,14}$/).map((s) => s.trimEnd());
const sshKey = fc.stringMatching(/^[A-Za-z0-9+/]{8,20}$/).map((b) => `ssh-ed25519 AAAAC3Nza${b} user@host`);
/** Unit file text; `small` keeps the YAML short, since parsing it is most of each run's cost. */
const unitText = (small: boolean): fc.Arbitrary<string> =>
  unitFileText({ eols: ['\n'], bom: false, maxSections: small ? 1 : 3, maxEntries: small ? 2 : 4 }).map((u) => u.text).filter((t) => t !== '');

type FileContent = { kind: 'text'; text: string } | { kind: 'base64'; text: string } | { kind: 'gzip+base64'; text: string } | { kind: 'binary'; bytes: Uint8Array };

interface LegacyDoc {
  hostname?: string;
  ssh_authorized_keys?: string[];
  manage_etc_hosts?: string;
  users?: Array<Record<string, unknown>>;
  write_files?: Array<Record<string, unknown>>;
  coreos?: Record<string, unknown>;
}

/** Keys as coreos-cloudinit read them: `-` and `_` alike. */
function spell(key: string, dashes: boolean): string {
  return dashes ? key.replaceAll('_', '-') : key;
}

function spelled(record: Record<string, unknown>, dashes: boolean): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined).map(([k, v]) => [spell(k, dashes), v]));
}

const userArb = fc.record(
  {
    name: fc.stringMatching(/^[a-z_][a-z0-9_-]{0,10}$/),
    passwd: fc.constant('$6$rounds=4096$salt$hashhashhash'),
    groups: fc.subarray(['sudo', 'docker', 'wheel', 'systemd-journal']),
    homedir: plainText.map((t) => `/home/${t.replace(/[^a-z0-9]/gi, '') || 'x'}`),
    shell: fc.constantFrom('/bin/bash', '/bin/sh', '/usr/sbin/nologin'),
    ssh_authorized_keys: fc.array(sshKey, { maxLength: 2 }),
    uid: fc.integer({ min: 1000, max: 60000 }),
    system: fc.boolean(),
    no_create_home: fc.boolean(),
    gecos: plainText,
    primary_group: fc.constantFrom('users', 'staff'),
  },
  { requiredKeys: ['name'] },
);

const fileArb = fc.record(
  {
    path: fc.tuple(fc.boolean(), fc.stringMatching(/^[a-z0-9_-]{1,10}$/)).map(([abs, name]) => `${abs ? '/' : ''}etc/gen/${name}`),
    content: fc.oneof(
      { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }).map((text): FileContent => ({ kind: 'text', text })) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((text): FileContent => ({ kind: 'base64', text })) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((text): FileContent => ({ kind: 'gzip+base64', text })) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((bytes): FileContent => ({ kind: 'binary', bytes })) },
    ),
    permissions: fc.constantFrom('0644', '0600', '0755', '644', '0400'),
    owner: fc.constantFrom('root:root', 'core', 'core:core', ':wheel', '1000:1000', 'root'),
  },
  { requiredKeys: ['path', 'content'] },
);

function fileEntry(f: { path: string; content: FileContent; permissions?: string; owner?: string }): Record<string, unknown> {
  const c = f.content;
  const entry: Record<string, unknown> = { path: f.path };
  if (c.kind === 'text') entry.content = c.text;
  else if (c.kind === 'base64') Object.assign(entry, { encoding: 'b64', content: Buffer.from(c.text).toString('base64') });
  else if (c.kind === 'gzip+base64') Object.assign(entry, { encoding: 'gzip+base64', content: gzipSync(Buffer.from(c.text)).toString('base64') });
  // a Uint8Array is written as a `!!binary` scalar
  else entry.content = c.bytes;
  if (f.permissions !== undefined) entry.permissions = f.permissions;
  if (f.owner !== undefined) entry.owner = f.owner;
  return entry;
}

const unitNameArb = fc.oneof(
  fc.tuple(fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/), fc.constantFrom('service', 'socket', 'timer', 'path', 'mount', 'target', 'network', 'netdev', 'link')).map(([n, t]) => `${n}.${t}`),
  fc.constantFrom('etcd2.service', 'fleet.service', 'docker.service', 'app@.service', 'app@1.service'),
);

const unitArb = (small: boolean) =>
  fc.record(
  {
    name: unitNameArb,
    command: fc.constantFrom('start', 'stop', 'restart', 'reload', 'try-restart', 'reload-or-restart', 'reload-or-try-restart'),
    enable: fc.boolean(),
    runtime: fc.boolean(),
    mask: fc.boolean(),
    content: unitText(small),
    drop_ins: fc.array(fc.record({ name: fc.stringMatching(/^[0-9]{2}-[a-z]{1,6}\.(conf|txt)$/), content: unitText(small) }), { maxLength: small ? 1 : 2 }),
  },
  { requiredKeys: ['name'] },
);

const coreosArb = (small: boolean) =>
  fc.record(
  {
    etcd2: fc.record(
      {
        name: plainText,
        advertise_client_urls: fc.constantFrom('http://$private_ipv4:2379', 'http://10.0.0.1:2379'),
        heartbeat_interval: fc.integer({ min: 1, max: 1000 }),
        election_timeout: fc.integer({ min: 1, max: 10000 }),
        proxy: fc.constantFrom('on', 'off', 'readonly'),
        debug: fc.boolean(),
        // Any text but half a surrogate pair, which the reader refuses (see the regression test below).
        discovery: shortHostileString.map((t) => t.replace(/[\ud800-\udfff]/g, '?')),
      },
      { requiredKeys: [] },
    ),
    fleet: fc.record(
      {
        metadata: fc.constantFrom('region=eu,disk=ssd', 'role=web'),
        public_ip: fc.constantFrom('$public_ipv4', '10.0.0.2'),
        etcd_request_timeout: fc.double({ min: 0.5, max: 10, noNaN: true }),
        verbosity: fc.integer({ min: 0, max: 3 }),
        verify_units: fc.boolean(),
      },
      { requiredKeys: [] },
    ),
    update: fc.record({ reboot_strategy: fc.constantFrom('best-effort', 'etcd-lock', 'reboot', 'off'), group: fc.constantFrom('stable', 'beta') }, { requiredKeys: [] }),
    units: fc.uniqueArray(unitArb(small), { selector: (u) => u.name, maxLength: small ? 1 : 3 }),
  },
  { requiredKeys: [] },
);

interface GeneratedConfig {
  text: string;
  doc: LegacyDoc;
  files: string[];
  units: Array<{ name: string; content?: string; mask: boolean; runtime: boolean }>;
}

/** A valid legacy config, its text, and the files and units it defines. */
const validConfigArb = (small: boolean): fc.Arbitrary<GeneratedConfig> =>
  fc
  .record(
    {
      hostname: fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,5})?$/),
      ssh_authorized_keys: fc.array(sshKey, { minLength: 1, maxLength: 2 }),
      manage_etc_hosts: fc.constant('localhost'),
      users: fc.uniqueArray(userArb, { selector: (u) => u.name, maxLength: small ? 1 : 2 }),
      write_files: fc.uniqueArray(fileArb, { selector: (f) => f.path.replace(/^\/?/, '/'), maxLength: small ? 1 : 3 }),
      coreos: coreosArb(small),
    },
    { requiredKeys: ['coreos'] },
  )
  .chain((parts) => fc.tuple(fc.constant(parts), fc.boolean()))
  .map(([parts, dashes]) => {
    const doc: LegacyDoc = {};
    if (parts.hostname !== undefined) doc.hostname = parts.hostname;
    if (parts.ssh_authorized_keys !== undefined) doc.ssh_authorized_keys = parts.ssh_authorized_keys;
    if (parts.manage_etc_hosts !== undefined) doc.manage_etc_hosts = parts.manage_etc_hosts;
    if (parts.users !== undefined) doc.users = parts.users.map((u) => spelled({ ...u, groups: u.groups?.length ? u.groups : undefined }, dashes));
    if (parts.write_files !== undefined) doc.write_files = parts.write_files.map(fileEntry);
    const coreos: Record<string, unknown> = {};
    const c = parts.coreos;
    if (c.etcd2) coreos.etcd2 = spelled(c.etcd2, dashes);
    if (c.fleet) coreos.fleet = spelled(c.fleet, dashes);
    if (c.update) coreos.update = spelled(c.update, dashes);
    if (c.units) coreos.units = c.units.map((u) => spelled({ ...u, drop_ins: u.drop_ins?.length ? u.drop_ins : undefined }, dashes));
    doc.coreos = coreos;
    const text = `#cloud-config\n${stringify(doc, { version: '1.1', lineWidth: 0 })}`;
    // Unit contents as the text holds them: the yaml package writes a block scalar whose first
    // line is blank but for spaces without the indentation indicator, so such spaces are lost.
    const written = (parse(text, { version: '1.1' }) as { coreos: { units?: Array<{ content?: string }> } }).coreos.units ?? [];
    return {
      text,
      doc,
      files: (parts.write_files ?? []).map((f) => f.path.replace(/^\/?/, '/')),
      units: (c.units ?? []).map((u, i) => ({ name: u.name, content: written[i]!.content, mask: u.mask ?? false, runtime: u.runtime ?? false })),
    };
  });

/** The input as plain data (YAML 1.1), to follow problem paths into. */
function inputData(text: string): unknown {
  try {
    return parse(text, { version: '1.1' });
  } catch {
    return undefined;
  }
}

function cloudFileText(f: CloudConfigFile): string {
  return f.encoding === 'b64' ? Buffer.from(f.content, 'base64').toString('utf8') : f.content;
}

function assertLocated(problems: readonly Problem[], text: string, what: string): void {
  const lines = linesOf(text, 'lf');
  for (const p of problems) {
    assert.equal(p.file, FILE, `${what}: ${JSON.stringify(p)}`);
    assertInBounds(p, lines, what);
  }
}

test('generated valid configs convert to both formats with their files and units, every warning located', (t) => {
  checkProperty(
    t,
    300,
    fc.property(
      fc.oneof({ weight: 4, arbitrary: validConfigArb(true) }, { weight: 1, arbitrary: validConfigArb(false) }),
      runs.count('valid', (config) => {
        assert.equal(isLegacyCoreosConfig(config.text), true);
        const data = inputData(config.text);
        for (const format of FORMATS) {
          const r = outcome(() => convertLegacy(config.text, FILE, format));
          assert.ok(r.ok, `${format} rejected:\n${config.text}\n${r.ok ? '' : r.error.message}`);
          assert.deepEqual(outcomeSummary(outcome(() => convertLegacy(config.text, FILE, format))), outcomeSummary(r), 'deterministic');
          assertLocated(r.value.warnings, config.text, `${format} warning`);
          for (const w of r.value.warnings) {
            if (w.path !== '') assert.ok(resolvePath(data, w.path).found, `warning path ${w.path} is in the input`);
          }
          if (format === 'ignition') {
            const ign = JSON.parse(r.value.output) as IgnitionConfig;
            assert.equal(ign.ignition.version, '3.3.0');
            const paths = (ign.storage?.files ?? []).map((f) => f.path);
            for (const f of config.files) assert.ok(paths.includes(f), `file ${f} in the Ignition config`);
            for (const u of config.units) {
              if (u.content === undefined || u.mask) continue;
              if (/\.(network|netdev|link)$/.test(u.name)) {
                const file = ign.storage?.files?.find((f) => f.path === `/etc/systemd/network/${u.name}`);
                assert.equal(decodeDataUrl(file?.contents?.source ?? '')?.toString('utf8'), u.content);
              } else {
                assert.equal(ign.systemd?.units?.find((x) => x.name === u.name)?.contents, u.content, `unit ${u.name}`);
              }
            }
          } else {
            assert.ok(r.value.output.startsWith('#cloud-config\n'));
            const cc = parse(r.value.output, { version: '1.1' }) as ModernCloudConfig;
            const files = cc.write_files ?? [];
            for (const f of config.files) assert.ok(files.some((x) => x.path === f), `file ${f} in the cloud-config`);
            for (const u of config.units) {
              if (u.content === undefined || u.mask) continue;
              const dir = `/${u.runtime ? 'run' : 'etc'}/systemd/${/\.(network|netdev|link)$/.test(u.name) ? 'network' : 'system'}`;
              const file = files.find((x) => x.path === `${dir}/${u.name}`);
              assert.ok(file, `unit file ${dir}/${u.name}`);
              assert.equal(cloudFileText(file), u.content);
            }
          }
        }
        assertNoPrototypePollution();
      }),
    ),
  );
});

// ---------------------------------------------------------------------------
// Corrupted configs

/**
 * The converter's contract on any text: output that parses and warnings at lines of the
 * text, or a FlotillaError whose every problem names the file, a line and a column of the
 * text. One format per run: parsing the YAML is most of the cost, and both formats share it.
 */
function checkAnyLegacyText(text: string, format: (typeof FORMATS)[number]): 'converted' | 'rejected' {
  const r = outcome(() => convertLegacy(text, FILE, format));
  assertNoPrototypePollution();
  if (!r.ok) {
    assert.equal(r.error.code, 'invalid-input', r.error.message);
    assert.ok(r.error.problems.length > 0, 'a rejection lists its problems');
    assertLocated(r.error.problems, text, `${format} problem`);
    return 'rejected';
  }
  assertLocated(r.value.warnings, text, `${format} warning`);
  if (format === 'ignition') assert.equal((JSON.parse(r.value.output) as IgnitionConfig).ignition.version, '3.3.0');
  else assert.ok(parseDocument(r.value.output, { version: '1.1' }).errors.length === 0, 'the cloud-config output is YAML');
  return 'converted';
}

function outcomeTally(): { check: (text: string, format: (typeof FORMATS)[number]) => void; assertBoth: () => void } {
  const seen = { converted: 0, rejected: 0 };
  return {
    check: (text, format) => void seen[checkAnyLegacyText(text, format)]++,
    assertBoth: () => assert.ok(seen.converted > 0 && seen.rejected > 0, `both outcomes exercised: ${JSON.stringify(seen)}`),
  };
}

const formatArb = fc.constantFrom(...FORMATS);

test('mutated legacy configs: a conversion, or problems at lines and columns of the text', (t) => {
  const tally = outcomeTally();
  checkProperty(t, 2000, fc.property(mutated(validConfigArb(true).map((c) => c.text)), formatArb, runs.count('mutated', tally.check)));
  tally.assertBoth();
});

test('hostile strings and random bytes, with and without the #cloud-config header: same contract', (t) => {
  checkProperty(
    t,
    5000,
    fc.property(
      fc.oneof(hostileString, randomBytesAsText),
      fc.constantFrom('', '#cloud-config\n', '#cloud-config\ncoreos:\n  '),
      formatArb,
      runs.count('hostile', (body, header, format) => {
        const detected = outcome(() => isLegacyCoreosConfig(header + body));
        assert.ok(detected.ok && typeof detected.value === 'boolean', 'isLegacyCoreosConfig answers without throwing');
        checkAnyLegacyText(header + body, format);
      }),
    ),
  );
});

test('any legacy config text gives the same result every time', (t) => {
  checkProperty(
    t,
    200,
    fc.property(
      fc.oneof(mutated(validConfigArb(true).map((c) => c.text)), hostileString),
      fc.constantFrom(...FORMATS),
      runs.count('deterministic', (text, format) => {
        const once = outcomeSummary(outcome(() => convertLegacy(text, FILE, format)));
        assert.deepEqual(outcomeSummary(outcome(() => convertLegacy(text, FILE, format))), once);
      }),
    ),
  );
});

const anyValue: fc.Arbitrary<unknown> = fc.anything({
  key: fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom('__proto__', 'constructor', 'name', 'content', 'path', 'units', 'drop-ins', 'encoding', '<<')),
  values: [fc.oneof(fc.string(), shortHostileString), fc.integer(), fc.double(), fc.boolean(), fc.constant(null)],
  maxDepth: 3,
});

/** Every member path of a value, in the converter's notation (`a.b[2].c`). */
function memberPaths(data: unknown, at = ''): string[] {
  const out: string[] = [];
  if (Array.isArray(data)) data.forEach((v, i) => out.push(`${at}[${i}]`, ...memberPaths(v, `${at}[${i}]`)));
  else if (typeof data === 'object' && data !== null && !(data instanceof Uint8Array)) {
    // Keys that the path notation would misread are left alone (their values are not picked).
    for (const k of Object.keys(data).filter((key) => !/[.[\]"\\]/.test(key))) {
      const p = at ? `${at}.${k}` : k;
      out.push(p, ...memberPaths((data as Record<string, unknown>)[k], p));
    }
  }
  return out;
}

/** A valid config with members replaced by random values or random members added, written as YAML 1.1. */
const corruptedDocArb: fc.Arbitrary<string> = fc
  .tuple(validConfigArb(true), fc.array(fc.record({ pick: fc.nat(), add: fc.boolean(), key: fc.string({ maxLength: 8 }), value: anyValue }), { minLength: 1, maxLength: 4 }))
  .map(([config, edits]) => {
    const doc = structuredClone(config.doc) as Record<string, unknown>;
    for (const e of edits) {
      const members = memberPaths(doc);
      if (members.length === 0) break;
      const p = members[e.pick % members.length]!;
      const target = e.add ? resolvePath(doc, p).value : resolvePath(doc, parentPath(p)).value;
      // A Uint8Array is a `!!binary` scalar here, not a mapping to add members to.
      if (typeof target !== 'object' || target === null || target instanceof Uint8Array) continue;
      const key = e.add ? e.key : splitPath(p).pop()!;
      // A named member of a sequence is not YAML (and `length` cannot be redefined).
      if (Array.isArray(target) && !/^\d+$/.test(String(key))) continue;
      // defineProperty, so that a `__proto__` key is written out as a key like any other.
      Object.defineProperty(target, key, { value: e.value, enumerable: true, writable: true, configurable: true });
    }
    return `#cloud-config\n${stringify(doc, { version: '1.1', lineWidth: 0 })}`;
  });

test('random values anywhere in a valid config: same contract', (t) => {
  const tally = outcomeTally();
  checkProperty(t, 2500, fc.property(corruptedDocArb, formatArb, runs.count('random values', tally.check)));
  tally.assertBoth();
});

// ---------------------------------------------------------------------------
// Bugs the properties found, kept as examples

function legacyProblems(text: string): Array<[string, number | undefined, number | undefined]> {
  const r = outcome(() => convertLegacy(text, FILE, 'ignition'));
  assert.ok(!r.ok, 'rejected');
  return r.error.problems.map((p) => [p.message, p.line, p.column]);
}

test('regression: a mapping key that is an alias to nothing is located at the alias (it had no line)', () => {
  assert.deepEqual(legacyProblems('#cloud-config\n? *a\n'), [['mapping keys must be plain strings', 2, 3]]);
  assert.deepEqual(legacyProblems('#cloud-config\ncoreos:\n  : x\n'), [['mapping keys must be plain strings', 3, 3]]);
});

test('regression: deep nesting is one located syntax error, the same every time', () => {
  const text = `#cloud-config\ncoreos:\n  units: ${'['.repeat(3000)}\n`;
  const expected = [['YAML syntax error: collections nested more than 100 deep', 3, 109]];
  assert.deepEqual(legacyProblems(text), expected);
  assert.deepEqual(legacyProblems(text), expected);
});

test('regression: text with a lone surrogate is an error at its line (Ignition output threw URIError)', () => {
  const text = '#cloud-config\nhostname: "\\ud800"\ncoreos: {}\n';
  for (const format of FORMATS) {
    const r = outcome(() => convertLegacy(text, FILE, format));
    assert.ok(!r.ok);
    assert.deepEqual(r.error.problems.map((p) => [p.path, p.line]), [['hostname', 2]]);
  }
});

test(`the converter target ran at least ${requiredRuns()} generated inputs`, (t) => {
  t.diagnostic(`runs: ${runs.report()}; total ${runs.total()}`);
  assert.ok(runs.total() >= requiredRuns(), `only ${runs.total()} runs`);
});
