import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadSpecFile, loadSpecObject, loadSpecText } from '../../src/config/load';
import { FlotillaError, type Problem } from '../../src/errors';
import { makeSpec, nodes, testPublicKey } from '../helpers/spec';

const KEY = testPublicKey();

function problemsOf(fn: () => unknown): Problem[] {
  try {
    fn();
  } catch (err) {
    assert.ok(FlotillaError.is(err), `expected FlotillaError, got ${String(err)}`);
    assert.equal(err.code, 'invalid-input');
    return [...err.problems];
  }
  assert.fail('expected the spec to be rejected');
}

test('defaults: 3 controllers of 4 nodes, addresses from .11, TLS on, short agent TTL', () => {
  const spec = loadSpecObject(makeSpec({ nodes: nodes(4) }));
  assert.deepEqual(spec.nodes.map((n) => [n.name, n.role, n.address, n.etcdMember]), [
    ['node1', 'controller', '10.99.0.11', true],
    ['node2', 'controller', '10.99.0.12', true],
    ['node3', 'controller', '10.99.0.13', true],
    ['node4', 'worker', '10.99.0.14', false],
  ]);
  assert.equal(spec.etcd.tls, true);
  assert.equal(spec.format, 'cloud-config');
  assert.equal(spec.platform, 'local');
  assert.equal(spec.agent.keyPrefix, '/flotilla/test/');
  assert.ok(spec.agent.ttlSeconds <= 5);
  assert.deepEqual(loadSpecObject(makeSpec({ nodes: nodes(5) })).etcd.members.length, 5);
  assert.deepEqual(loadSpecObject(makeSpec({ nodes: nodes(2) })).etcd.members, ['node1']);
});

test('fixed addresses are kept and automatic ones skip them', () => {
  const spec = loadSpecObject(makeSpec({ nodes: [{ name: 'a' }, { name: 'b', address: '10.99.0.11' }, { name: 'c' }] }));
  assert.deepEqual(spec.nodes.map((n) => n.address), ['10.99.0.12', '10.99.0.11', '10.99.0.13']);
});

test('every problem is reported at once, with its path and YAML line', () => {
  const text = [
    'name: demo', // 1
    'nodes:', // 2
    '  - name: n1', // 3
    '  - name: n1', // 4
    '  - name: Bad_Host', // 5
    '    adress: 10.99.0.5', // 6
    '  - name: n4', // 7
    '    address: 10.1.2.3', // 8
    '    metadata: { "bad key": x, ok: "has space" }', // 9
    'ssh:', // 10
    `  authorizedKeys: ["${KEY}", "ssh-ed25519 AAAAbroken"]`, // 11
    'etcd:', // 12
    '  clientPort: "2379"', // 13
    '  members: [n1, n9]', // 14
    'format: butane', // 15
    'agnet: {}', // 16
  ].join('\n');
  const problems = problemsOf(() => loadSpecText(text, 'spec.yaml'));
  const got = problems.map((p) => `${p.line}: ${p.path}: ${p.message}`);
  const expect = [
    /^4: nodes\[1\]\.name: duplicate name "n1" \(also nodes\[0\]\)$/,
    /^5: nodes\[2\]\.name: "Bad_Host" is not a valid node name/,
    /^6: nodes\[2\]\.adress: unknown field \(did you mean "address"\?\)$/,
    /^8: nodes\[3\]\.address: 10\.1\.2\.3 is outside the cluster network 10\.99\.0\.0\/24$/,
    /^9: nodes\[3\]\.metadata\."bad key": metadata key must be/,
    /^9: nodes\[3\]\.metadata\.ok: metadata value "has space" must be non-empty without spaces/,
    /^11: ssh\.authorizedKeys\[1\]: malformed public key data/,
    /^13: etcd\.clientPort: must be a whole number from 1 to 65535, got the string "2379"$/,
    /^14: etcd\.members\[1\]: "n9" is not a node name \(did you mean "n1"\?\)$/,
    /^15: format: must be one of cloud-config, ignition, got "butane"$/,
    /^16: agnet: unknown field \(did you mean "agent"\?\)$/,
  ];
  for (const re of expect) assert.ok(got.some((g) => re.test(g)), `missing ${re}\n got:\n${got.join('\n')}`);
  assert.equal(got.length, expect.length, got.join('\n'));
  assert.ok(problems.every((p) => p.file === 'spec.yaml'));
});

test('YAML syntax errors name line and column', () => {
  const problems = problemsOf(() => loadSpecText('name: demo\nnodes:\n  - name: a\n   bad-indent: 1\n', 'broken.yaml'));
  assert.ok(problems.length >= 1);
  assert.equal(problems[0]!.file, 'broken.yaml');
  assert.equal(problems[0]!.line, 4);
  assert.ok(problems[0]!.column! >= 1);
  const dup = problemsOf(() => loadSpecText('name: a\nname: b\n', 'dup.yaml'));
  assert.match(dup[0]!.message, /Map keys must be unique/);
  assert.equal(dup[0]!.line, 2);
});

test('wrong types and shapes', () => {
  const cases: Array<[unknown, RegExp]> = [
    ['just a string', /^: must be a mapping, got the string/],
    [{ ...makeSpec(), nodes: 'n1' }, /^nodes: must be a list, got the string "n1"$/],
    [{ ...makeSpec(), nodes: [] }, /^nodes: must list at least one node$/],
    [{ ...makeSpec(), nodes: [42] }, /^nodes\[0\]: must be a mapping, got number 42$/],
    [{ ...makeSpec(), ssh: { authorizedKeys: [] } }, /^ssh\.authorizedKeys: must list at least one public key$/],
    [{ ...makeSpec(), ssh: { authorizedKeys: ['-----BEGIN OPENSSH PRIVATE KEY-----'] } }, /private key; give the public key/],
    [{ ...makeSpec(), ssh: { authorizedKeys: ['ssh-dss AAAAB3NzaC1kc3MAAACBAP'] } }, /unsupported key type "ssh-dss"/],
    [{ ...makeSpec(), ssh: { authorizedKeys: [`${KEY}\nssh-ed25519 AAAA injected`] } }, /must be a single line/],
    [{ ...makeSpec(), ssh: { user: 'root', authorizedKeys: [KEY] } }, /^ssh\.user: must not be root/],
    [{ ...makeSpec(), name: 'has space' }, /^name: "has space" is not a valid cluster name/],
    [{ ...makeSpec(), network: { cidr: '10.0.0.1/24' } }, /^network\.cidr: "10\.0\.0\.1\/24" is not an IPv4 CIDR/],
    [{ ...makeSpec(), etcd: { tls: 'yes' } }, /^etcd\.tls: must be true or false, got the string "yes"$/],
    [{ ...makeSpec(), etcd: { clientPort: 2380 } }, /^etcd\.peerPort: must differ from etcd\.clientPort/],
    [{ ...makeSpec(), etcd: { heartbeatIntervalMs: 1000, electionTimeoutMs: 2000 } }, /^etcd\.electionTimeoutMs: must be at least 5 x/],
    [{ ...makeSpec(), nodes: nodes(2, () => ({ role: 'worker' })) }, /no node has role controller/],
    [{ ...makeSpec(), units: [{ name: 'x.service' }] }, /^units\[0\]: give exactly one of file or contents$/],
    [{ ...makeSpec(), units: [{ name: 'not a unit', contents: 'x' }] }, /^units\[0\]\.name: "not a unit" is not a valid unit name/],
    [{ ...makeSpec(), units: [{ file: 'missing.service' }] }, /^units\[0\]\.file: .*missing\.service: no such file$/],
    [{ ...makeSpec(), snippets: [{ contents: 'x: 1' }] }, /^snippets\[0\]\.format: is required/],
    [{ ...makeSpec(), snippets: [{ format: 'ignition', contents: '{}', nodes: ['ghost'] }] }, /^snippets\[0\]\.nodes\[0\]: "ghost" is not a node name$/],
    [{ ...makeSpec(), aws: { largeConfigUrl: 'ftp://x/' } }, /^aws\.largeConfigUrl: "ftp:\/\/x\/" is not a valid URL prefix/],
    [JSON.parse('{"name":"x","nodes":[{"name":"a"}],"ssh":{"authorizedKeys":["k"]},"__proto__":{"polluted":true}}'), /^__proto__: reserved key is not allowed$/],
  ];
  for (const [input, re] of cases) {
    const problems = problemsOf(() => loadSpecObject(input as never, '/tmp'));
    assert.ok(problems.some((p) => re.test(`${p.path}: ${p.message}`)), `${re} not in:\n${problems.map((p) => `${p.path}: ${p.message}`).join('\n')}`);
  }
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('unit files are read relative to the spec file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-spec-'));
  try {
    fs.mkdirSync(path.join(dir, 'units'));
    fs.writeFileSync(path.join(dir, 'units', 'app.service'), '[Service]\nExecStart=/bin/true\n');
    fs.writeFileSync(path.join(dir, 'cluster.yaml'), `name: rel\nnodes: [{name: a}]\nssh: {authorizedKeys: ["${KEY}"]}\nunits: [{file: units/app.service}]\n`);
    const spec = loadSpecFile(path.join(dir, 'cluster.yaml'));
    assert.deepEqual(spec.units, [{ name: 'app.service', contents: '[Service]\nExecStart=/bin/true\n', state: 'launched' }]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the examples are valid specs', () => {
  const dir = path.join(__dirname, '..', '..', 'examples');
  const specs = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  assert.ok(specs.length >= 3);
  for (const f of specs) {
    const spec = loadSpecFile(path.join(dir, f));
    assert.ok(spec.nodes.length >= 1, f);
  }
});
