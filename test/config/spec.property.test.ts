/**
 * Property-based tests for spec validation (validate.ts, load.ts, yaml-source.ts), issue 7:
 * generated valid specs validate with no problems, survive a YAML round trip and render;
 * corrupted specs (mutated YAML text, hostile strings, random bytes, random values anywhere
 * in the object) give only FlotillaError, every problem at a line of the text or a path into
 * the input, the same problems every time, and no prototype pollution.
 * Seed and run count: see test/helpers/arbitraries.ts.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import fc from 'fast-check';
import { parse, parseDocument, stringify } from 'yaml';
import { splitPath } from '../../src/config/yaml-source';
import { loadSpecObject, loadSpecText } from '../../src/config/load';
import { ipv4ToInt, parseIPv4Cidr } from '../../src/config/net';
import { renderCluster } from '../../src/config/render';
import type { ClusterSecrets } from '../../src/config/secrets';
import type { ClusterSpec, ResolvedSpec } from '../../src/config/spec';
import { generateHostKey, type HostKeyPair } from '../../src/ssh/keys';
import { resolveSpec, type ResolveOptions } from '../../src/config/validate';
import { FlotillaError, type Problem } from '../../src/errors';
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
import { testPublicKey } from '../helpers/spec';

const runs = new RunCounter();

/** Specs are "read" from a directory that does not exist, so a `file:` reference never reaches the real disk. */
const SPEC_DIR = '/nonexistent/flotilla-spec-property';
const SPEC_FILE = path.join(SPEC_DIR, 'cluster.yaml');
const EXISTING_UNIT = 'units/present.service';
const resolveOptions: ResolveOptions = {
  baseDir: SPEC_DIR,
  readFile: (abs) => {
    if (abs === path.join(SPEC_DIR, EXISTING_UNIT)) return '[Service]\nExecStart=/bin/true\n';
    throw new FlotillaError('not-found', `${abs}: no such file`);
  },
};

const KEYS = [testPublicKey('a@prop'), testPublicKey('b@prop'), testPublicKey('c@prop')];

// ---------------------------------------------------------------------------
// Valid specs

const dnsLabel = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$/);

interface CidrChoice {
  cidr: string | undefined;
  /** Usable host offsets for fixed addresses: not network, gateway (.1) or broadcast. */
  firstHost: number;
  lastHost: number;
}
const cidrArb = fc.constantFrom<CidrChoice>(
  { cidr: undefined, firstHost: 2, lastHost: 254 },
  { cidr: '192.168.7.0/24', firstHost: 2, lastHost: 254 },
  { cidr: '172.16.0.0/16', firstHost: 2, lastHost: 65534 },
  // 20 addresses from .11 for nodes without one: enough for the at most 6 generated nodes.
  { cidr: '10.1.2.32/27', firstHost: 2, lastHost: 30 },
);

function hostAddress(cidr: string | undefined, offset: number): string {
  const net = parseIPv4Cidr(cidr ?? '10.99.0.0/24')!;
  const n = net.network + offset;
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

const metadataKeyArb = fc.oneof(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,10}$/), fc.constantFrom('constructor', 'toString', 'hasOwnProperty', 'valueOf'));
const metadataValueArb = fc.oneof(
  fc.stringMatching(/^[^\s,=]{1,12}$/),
  // YAML would read these as other types if written plain; the spec must keep them as text.
  fc.constantFrom('yes', 'no', 'null', '0777', '1e3', '~', '-dash', '#hash', '"q"', "it's", '{{x}}', 'a:b', '😀'),
);

const unitNameArb = fc.stringMatching(/^[a-z][a-z0-9_-]{0,8}(@[a-z0-9]{0,3})?\.(service|socket|timer|target|path)$/);

/** A spec the validator must accept, with every optional part sometimes present. */
const validSpecArb: fc.Arbitrary<ClusterSpec> = fc
  .record({
    name: dnsLabel,
    format: fc.option(fc.constantFrom('cloud-config' as const, 'ignition' as const), { nil: undefined }),
    platform: fc.option(fc.constantFrom('local' as const, 'libvirt' as const, 'aws' as const), { nil: undefined }),
    cidr: cidrArb,
    nodes: fc.uniqueArray(
      fc.record(
        {
          name: dnsLabel,
          role: fc.constantFrom('controller' as const, 'worker' as const),
          metadata: fc.dictionary(metadataKeyArb, metadataValueArb, { maxKeys: 3 }),
          address: fc.integer({ min: 0, max: 1_000_000 }),
          cpus: fc.integer({ min: 1, max: 1024 }),
          memoryMiB: fc.integer({ min: 128, max: 4 * 1024 * 1024 }),
        },
        { requiredKeys: ['name'] },
      ),
      { selector: (n) => n.name, minLength: 1, maxLength: 6 },
    ),
    ssh: fc.record(
      { user: fc.stringMatching(/^[a-z_][a-z0-9_-]{0,31}$/).filter((u) => u !== 'root'), authorizedKeys: fc.subarray(KEYS, { minLength: 1 }) },
      { requiredKeys: ['authorizedKeys'] },
    ),
    etcd: fc.option(
      fc.record(
        {
          members: fc.nat(),
          clientPort: fc.integer({ min: 1, max: 65535 }),
          peerPort: fc.integer({ min: 1, max: 65535 }),
          tls: fc.boolean(),
          heartbeatIntervalMs: fc.integer({ min: 10, max: 10_000 }),
          electionTimeoutMs: fc.integer({ min: 50, max: 50_000 }),
        },
        { requiredKeys: [] },
      ),
      { nil: undefined },
    ),
    agent: fc.option(
      fc.record(
        {
          ttlSeconds: fc.integer({ min: 2, max: 3600 }),
          reconcileIntervalMs: fc.integer({ min: 100, max: 600_000 }),
          runner: fc.constantFrom('auto' as const, 'systemd' as const, 'process' as const),
          keyPrefix: fc.stringMatching(/^\/[A-Za-z0-9_./-]{0,20}\/$/),
        },
        { requiredKeys: [] },
      ),
      { nil: undefined },
    ),
    units: fc.option(
      fc.uniqueArray(
        fc.record(
          { name: unitNameArb, contents: unitFileText({ eols: ['\n'], bom: false }).map((u) => u.text), state: fc.constantFrom('inactive' as const, 'loaded' as const, 'launched' as const) },
          { requiredKeys: ['name', 'contents'] },
        ),
        { selector: (u) => u.name, maxLength: 3 },
      ),
      { nil: undefined },
    ),
    snippets: fc.option(fc.array(fc.record({ text: shortHostileString, nodeMask: fc.option(fc.nat(), { nil: undefined }) }), { maxLength: 2 }), { nil: undefined }),
    aws: fc.option(
      fc.record({ region: fc.stringMatching(/^[a-z]{2}(-[a-z]{1,8})+-\d$/), largeConfigUrl: fc.constantFrom('s3://bucket/flotilla/', 'https://example.com/ign/') }, { requiredKeys: [] }),
      { nil: undefined },
    ),
  })
  .map(({ cidr, nodes, etcd, snippets, ...rest }) => {
    const spec: ClusterSpec = { ...rest, nodes: [], ssh: { ...rest.ssh } };
    if (cidr.cidr !== undefined) spec.network = { cidr: cidr.cidr };
    const used = new Set<number>();
    for (const n of nodes) {
      const node: ClusterSpec['nodes'][number] = { name: n.name };
      if (n.role !== undefined) node.role = n.role;
      if (n.metadata !== undefined) node.metadata = { ...n.metadata };
      if (n.address !== undefined) {
        const offset = cidr.firstHost + (n.address % (cidr.lastHost - cidr.firstHost + 1));
        if (!used.has(offset)) {
          used.add(offset);
          node.address = hostAddress(cidr.cidr, offset);
        }
      }
      if (n.cpus !== undefined) node.cpus = n.cpus;
      if (n.memoryMiB !== undefined) node.memoryMiB = n.memoryMiB;
      spec.nodes.push(node);
    }
    if (etcd !== undefined) {
      const { members, ...e } = etcd;
      spec.etcd = { ...e };
      // Members are a non-empty subset of the nodes, picked by the bits of `members`.
      if (members !== undefined) {
        const picked = spec.nodes.filter((_, i) => (members >> i) & 1).map((n) => n.name);
        spec.etcd.members = picked.length > 0 ? picked : [spec.nodes[0]!.name];
      }
      const client = spec.etcd.clientPort ?? 2379;
      if ((spec.etcd.peerPort ?? 2380) === client) spec.etcd.peerPort = client === 65535 ? 1 : client + 1;
      const heartbeat = spec.etcd.heartbeatIntervalMs ?? 250;
      if ((spec.etcd.electionTimeoutMs ?? 2500) < 5 * heartbeat) spec.etcd.electionTimeoutMs = Math.max(50, 5 * heartbeat);
    }
    // Explicit roles without a controller leave etcd without members unless etcd.members names them.
    const anyRole = spec.nodes.some((n) => n.role !== undefined);
    if (anyRole && !spec.nodes.some((n) => n.role === 'controller') && spec.etcd?.members === undefined) spec.nodes[0]!.role = 'controller';
    if (snippets !== undefined) {
      const format = spec.format ?? 'cloud-config';
      spec.snippets = snippets.map(({ text, nodeMask }, i) => {
        const file = `/etc/flotilla-extra/${i}`;
        const contents =
          format === 'ignition'
            ? JSON.stringify({ storage: { files: [{ path: file, contents: { source: `data:;base64,${Buffer.from(text).toString('base64')}` } }] } })
            : stringify({ write_files: [{ path: file, content: text }] });
        const only = nodeMask === undefined ? undefined : spec.nodes.filter((_, j) => (nodeMask >> j) & 1).map((n) => n.name);
        return { format, contents, ...(only !== undefined ? { nodes: only } : {}) };
      });
    }
    return spec;
  });

test('generated valid specs validate with no problems and resolve consistently', (t) => {
  checkProperty(
    t,
    1500,
    fc.property(
      validSpecArb,
      runs.count('valid object', (spec) => {
        const r = outcome(() => resolveSpec(spec, resolveOptions));
        assert.ok(r.ok, `rejected: ${r.ok ? '' : r.error.message}`);
        const resolved = r.value;
        assert.deepEqual(resolved.nodes.map((n) => n.name), spec.nodes.map((n) => n.name));
        const net = parseIPv4Cidr(resolved.network.cidr)!;
        assert.equal(new Set(resolved.nodes.map((n) => n.address)).size, resolved.nodes.length, 'addresses are unique');
        resolved.nodes.forEach((n, i) => {
          const ip = ipv4ToInt(n.address)!;
          assert.equal((ip & net.mask) >>> 0, net.network, `${n.address} inside ${resolved.network.cidr}`);
          assert.ok(ip !== net.network && ip !== net.network + 1 && ip !== net.broadcast, `${n.address} not reserved`);
          if (spec.nodes[i]!.address !== undefined) assert.equal(n.address, spec.nodes[i]!.address, 'a fixed address is kept');
          if (spec.nodes[i]!.role !== undefined) assert.equal(n.role, spec.nodes[i]!.role, 'a given role is kept');
          assert.equal(n.etcdMember, resolved.etcd.members.includes(n.name));
          assert.deepEqual(n.metadata, spec.nodes[i]!.metadata ?? {});
        });
        const expectedMembers = spec.etcd?.members ?? resolved.nodes.filter((n) => n.role === 'controller').map((n) => n.name);
        assert.deepEqual(resolved.etcd.members, expectedMembers);
        assert.ok(resolved.etcd.members.length > 0);
        assert.equal(resolved.agent.keyPrefix, spec.agent?.keyPrefix ?? `/flotilla/${spec.name}/`);
        assert.deepEqual(resolved.units.map((u) => u.name), (spec.units ?? []).map((u) => u.name));
        assertNoPrototypePollution();
      }),
    ),
  );
});

test('a valid spec written as YAML loads to the same result as the object', (t) => {
  checkProperty(
    t,
    600,
    fc.property(
      validSpecArb,
      fc.constantFrom('block', 'flow'),
      runs.count('valid yaml', (spec, style) => {
        const text = style === 'flow' ? stringify(spec, { collectionStyle: 'flow', lineWidth: 0 }) : stringify(spec, { lineWidth: 0 });
        const fromText = outcome(() => loadSpecText(text, SPEC_FILE));
        assert.ok(fromText.ok, `rejected:\n${text}\n${fromText.ok ? '' : fromText.error.message}`);
        // Against the data the text holds: the yaml package writes a block scalar whose first line
        // is blank but for spaces without the indentation indicator, so such spaces do not survive.
        assert.deepEqual(fromText.value, loadSpecObject(parse(text) as ClusterSpec, SPEC_DIR));
      }),
    ),
  );
});

/** Host keys by node name, generated once: key generation would dominate the render property. */
const hostKeys = new Map<string, HostKeyPair>();
function secretsFor(spec: ResolvedSpec): ClusterSecrets {
  const keys: Record<string, HostKeyPair> = {};
  for (const n of spec.nodes) {
    if (!hostKeys.has(n.name)) hostKeys.set(n.name, generateHostKey(n.name));
    keys[n.name] = hostKeys.get(n.name)!;
  }
  return { version: 1, cluster: spec.name, hostKeys: keys };
}

test('a valid spec renders for every node', (t) => {
  checkProperty(
    t,
    60,
    fc.property(
      validSpecArb,
      runs.count('valid render', (spec) => {
        const resolved = loadSpecObject(spec, SPEC_DIR);
        const r = outcome(() => renderCluster(resolved, secretsFor(resolved)));
        assert.ok(r.ok, `render failed: ${r.ok ? '' : r.error.message}`);
        assert.deepEqual(r.value.map((n) => n.node), resolved.nodes.map((n) => n.name));
        for (const node of r.value) {
          if (resolved.format === 'ignition') assert.equal((JSON.parse(node.userData) as { ignition: { version: string } }).ignition.version, '3.3.0');
          else assert.ok(node.userData.startsWith('#cloud-config\n'));
          for (const u of resolved.units) assert.ok(node.userData.includes(u.name), `unit ${u.name} in the output`);
        }
      }),
    ),
  );
});

// ---------------------------------------------------------------------------
// Corrupted specs

/**
 * The loader's contract on any text: a spec, or a FlotillaError whose every problem names
 * the file and a line and column inside the text (only a document with no content has no
 * line to point at), and whose every field path leads into the parsed data (its parent at
 * least, for a missing field). Nothing leaks into Object.prototype.
 */
function checkAnySpecText(text: string): 'loaded' | 'rejected' {
  const first = outcome(() => loadSpecText(text, SPEC_FILE));
  assertNoPrototypePollution();
  if (first.ok) return 'loaded';
  const err = first.error;
  assert.equal(err.code, 'invalid-input', err.message);
  assert.ok(err.problems.length > 0, 'a rejection lists its problems');
  const lines = linesOf(text, 'lf');
  // Problems with a field path come after the YAML parsed, so parsing it here is safe and quick.
  const data = err.problems.some((p) => p.path !== '' || p.line === undefined) ? parseDocument(text, { uniqueKeys: true, strict: true }) : undefined;
  for (const p of err.problems) {
    assert.equal(p.file, SPEC_FILE, JSON.stringify(p));
    if (p.line === undefined) assert.equal(data?.contents, null, `no line, but the document has content: ${JSON.stringify(p)}`);
    else assertInBounds(p, lines, 'spec problem');
    if (p.path !== '') assert.ok(resolvePath(data!.toJS({ maxAliasCount: 100 }), parentPath(p.path)).found, `path ${p.path} leads into the input: ${JSON.stringify(p)}`);
  }
  return 'rejected';
}

function outcomeTally(check: (text: string) => string): { check: (text: string) => void; assertBoth: (a: string, b: string) => void } {
  const seen: Record<string, number> = {};
  return {
    check: (text) => {
      const o = check(text);
      seen[o] = (seen[o] ?? 0) + 1;
    },
    assertBoth: (a, b) => assert.ok((seen[a] ?? 0) > 0 && (seen[b] ?? 0) > 0, `both outcomes exercised: ${JSON.stringify(seen)}`),
  };
}

/** Valid spec text to mutate, with at most one unit: parsing long unit texts would dominate each run. */
const validYamlArb = fc
  .tuple(validSpecArb, fc.boolean())
  .map(([spec, flow]) => stringify({ ...spec, ...(spec.units ? { units: spec.units.slice(0, 1) } : {}) }, { lineWidth: 0, ...(flow ? { collectionStyle: 'flow' as const } : {}) }));

test('mutated spec YAML: a spec, or problems at lines of the text and paths into it', (t) => {
  const tally = outcomeTally(checkAnySpecText);
  checkProperty(t, 1000, fc.property(mutated(validYamlArb), runs.count('mutated yaml', tally.check)));
  tally.assertBoth('loaded', 'rejected');
});

test('hostile strings and random bytes as spec text: same contract', (t) => {
  checkProperty(t, 3500, fc.property(fc.oneof(hostileString, randomBytesAsText), runs.count('hostile text', checkAnySpecText)));
});

test('any spec text gives the same result every time', (t) => {
  checkProperty(
    t,
    200,
    fc.property(
      fc.oneof(mutated(validYamlArb), hostileString),
      runs.count('deterministic text', (text) => {
        const once = outcomeSummary(outcome(() => loadSpecText(text, SPEC_FILE)));
        assert.deepEqual(outcomeSummary(outcome(() => loadSpecText(text, SPEC_FILE))), once);
      }),
    ),
  );
});

/** A marker that no valid value of any field matches (upper case and `_`), to find where a value was written. */
const MARK = 'Q_MARK_7';

/** Fields a generated spec always has or may have, with the path validate.ts reports them under. */
function corruptibleFields(spec: ClusterSpec): string[] {
  const fields = ['name', 'ssh.authorizedKeys[0]'];
  spec.nodes.forEach((n, i) => {
    fields.push(`nodes[${i}].name`);
    if (n.address !== undefined) fields.push(`nodes[${i}].address`);
    if (n.role !== undefined) fields.push(`nodes[${i}].role`);
    if (n.cpus !== undefined) fields.push(`nodes[${i}].cpus`);
    for (const k of Object.keys(n.metadata ?? {})) if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) fields.push(`nodes[${i}].metadata.${k}`);
  });
  if (spec.ssh.user !== undefined) fields.push('ssh.user');
  if (spec.network) fields.push('network.cidr');
  for (const k of Object.keys(spec.etcd ?? {})) if (k !== 'members') fields.push(`etcd.${k}`);
  for (const k of Object.keys(spec.agent ?? {})) fields.push(`agent.${k}`);
  (spec.units ?? []).forEach((_, i) => fields.push(`units[${i}].name`, `units[${i}].state`));
  for (const k of Object.keys(spec.aws ?? {})) fields.push(`aws.${k}`);
  return fields;
}

/** Sets the member at `p` (which exists); defineProperty, so that a `__proto__` member is an own member as YAML and JSON.parse make it. */
function setPath(data: unknown, p: string, value: unknown): void {
  const parent = resolvePath(data, parentPath(p)).value as object;
  const last = splitPath(p).pop()!;
  Object.defineProperty(parent, last, { value, enumerable: true, writable: true, configurable: true });
}

test('one field set to a hostile value is reported at that field\'s path and on the line it is written', (t) => {
  checkProperty(
    t,
    600,
    fc.property(
      validSpecArb,
      fc.nat(),
      shortHostileString.map((s) => s.replace(/[\r\n\u0085\u2028\u2029]/g, ' ')),
      fc.boolean(),
      runs.count('one bad field', (spec, pick, hostile, flow) => {
        const fields = corruptibleFields(spec);
        const field = fields[pick % fields.length]!;
        const corrupted = structuredClone(spec);
        // Text that is wrong for every field: a string where numbers are expected, and
        // upper case, "_" and a space where names, addresses, keys and metadata are expected.
        setPath(corrupted, field, `${MARK} ${hostile}`);
        const text = stringify(corrupted, { lineWidth: 0, ...(flow ? { collectionStyle: 'flow' as const } : {}) });
        const r = outcome(() => loadSpecText(text, SPEC_FILE));
        assert.ok(!r.ok, `accepted a hostile ${field}`);
        const here = r.error.problems.find((p) => p.path === field);
        assert.ok(here, `no problem at ${field}: ${r.error.message}`);
        const lines = linesOf(text, 'lf');
        assertInBounds(here, lines, field);
        const markLine = lines.findIndex((l) => l.includes(MARK)) + 1;
        assert.equal(here.line, markLine, `${field} is reported on the line it is written:\n${text}`);
        assert.ok(here.column! <= lines[markLine - 1]!.indexOf(MARK) + 1, 'at or before the value');
      }),
    ),
  );
});

// Random values anywhere in a spec object (for specs built in TypeScript, and what YAML can produce).

const anyValue: fc.Arbitrary<unknown> = fc.anything({
  key: fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor', 'prototype', 'name', 'nodes', 'file', 'contents', 'address')),
  values: [fc.oneof(fc.string(), shortHostileString), fc.integer(), fc.double(), fc.boolean(), fc.constant(null)],
  maxDepth: 3,
  withNullPrototype: true,
});

/** Walks a value, listing the paths (in validate.ts's notation) of every member. */
function memberPaths(data: unknown, at = ''): string[] {
  const out: string[] = [];
  if (Array.isArray(data)) data.forEach((v, i) => out.push(`${at}[${i}]`, ...memberPaths(v, `${at}[${i}]`)));
  else if (typeof data === 'object' && data !== null) {
    for (const k of Object.keys(data)) {
      const p = /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? (at ? `${at}.${k}` : k) : `${at ? `${at}.` : ''}${JSON.stringify(k)}`;
      out.push(p, ...memberPaths((data as Record<string, unknown>)[k], p));
    }
  }
  return out;
}

/** A valid spec with some members replaced by random values, some members added, or `file:` references. */
const corruptedObjectArb: fc.Arbitrary<unknown> = fc
  .tuple(
    validSpecArb,
    fc.array(fc.record({ pick: fc.nat(), action: fc.constantFrom('replace', 'add'), key: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('__proto__', 'constructor', 'file', 'contents', 'role')), value: anyValue }), {
      minLength: 1,
      maxLength: 4,
    }),
  )
  .map(([spec, edits]) => {
    const data = JSON.parse(JSON.stringify(spec)) as Record<string, unknown>;
    for (const e of edits) {
      const members = memberPaths(data);
      if (members.length === 0) break;
      const p = members[e.pick % members.length]!;
      if (e.action === 'replace') setPath(data, p, e.value);
      else {
        const target = resolvePath(data, p).value;
        if (typeof target === 'object' && target !== null && !Array.isArray(target)) setPath(target, JSON.stringify(e.key), e.value);
      }
    }
    return data;
  });

test('random values in a spec object: only FlotillaError, every path leads into the input, deterministic', (t) => {
  let rejected = 0;
  checkProperty(
    t,
    2600,
    fc.property(
      fc.oneof({ weight: 4, arbitrary: corruptedObjectArb }, { weight: 1, arbitrary: anyValue }),
      runs.count('random object', (input) => {
        const first = outcome(() => resolveSpec(input, resolveOptions));
        assert.deepEqual(outcomeSummary(outcome(() => resolveSpec(input, resolveOptions))), outcomeSummary(first), 'deterministic');
        assertNoPrototypePollution();
        if (first.ok) return;
        rejected++;
        assert.equal(first.error.code, 'invalid-input');
        assert.ok(first.error.problems.length > 0);
        for (const p of first.error.problems) {
          assert.ok(resolvePath(input, parentPath(p.path)).found, `path ${JSON.stringify(p.path)} leads into the input: ${p.message}`);
        }
      }),
    ),
  );
  assert.ok(rejected > 0);
});

// ---------------------------------------------------------------------------
// Bugs the properties found, kept as examples

function problemsOf(text: string): Problem[] {
  const r = outcome(() => loadSpecText(text, SPEC_FILE));
  assert.ok(!r.ok, 'rejected');
  return [...r.error.problems];
}

test('regression: deep nesting gives the same located problem every time (it was a stack overflow at a varying column)', () => {
  const text = `name: x\nnodes: ${'['.repeat(3000)}${']'.repeat(3000)}\n`;
  const expected = [{ path: '', message: 'collections nested more than 100 deep', file: SPEC_FILE, line: 2, column: 108 }];
  assert.deepEqual(problemsOf(text), expected);
  assert.deepEqual(problemsOf(text), expected);
  const block = `nodes:\n${Array.from({ length: 300 }, (_, i) => `${' '.repeat(i + 1)}- `).join('\n')}\n`;
  assert.deepEqual(problemsOf(block).map((p) => [p.message, p.line]), [['collections nested more than 100 deep', 101]]);
});

test('regression: a syntax error after a block scalar is on its own line (the yaml LineCounter put it past the end of the line before)', () => {
  const text = ' "0"\nformat: x\nunits:\n  - contents: |\n      [aA]\naws:\n  region: a\n';
  const aws = problemsOf(text).find((p) => p.message.includes('"aws"'));
  assert.deepEqual([aws?.line, aws?.column], [6, 1]);
});

test('regression: an alias without an anchor is located at the alias (it had no line)', () => {
  assert.deepEqual(problemsOf('name: x\nnodes: *a\n').map((p) => [p.line, p.column]), [[2, 8]]);
  assert.deepEqual(problemsOf('*\0').map((p) => [p.line, p.column]), [[1, 1]]);
});

test(`the spec validation target ran at least ${requiredRuns()} generated inputs`, (t) => {
  t.diagnostic(`runs: ${runs.report()}; total ${runs.total()}`);
  assert.ok(runs.total() >= requiredRuns(), `only ${runs.total()} runs`);
});
