import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { cli, cliProcess } from '../helpers/cli';
import { testPublicKey } from '../helpers/spec';

const EXAMPLES = path.join(__dirname, '..', '..', 'examples');
const KEY = testPublicKey();

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-cli-'));
}

function listFiles(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
}

test('render --out writes one set of files per node, validated, with secrets kept private', async () => {
  const out = path.join(tmp(), 'out');
  try {
    const r = cliProcess(['render', '--spec', path.join(EXAMPLES, 'three-node.yaml'), '--out', out, '--validate']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^NODE +FORMAT +BYTES +USER-DATA +ENCODING +VALIDATED BY$/m);
    assert.match(r.stdout, /^core1 +cloud-config +\d+ +\d+ +plain +cloud-init schema$/m);
    assert.deepEqual(listFiles(out), [
      'core1.meta-data', 'core1.network-config', 'core1.user-data',
      'core2.meta-data', 'core2.network-config', 'core2.user-data',
      'core3.meta-data', 'core3.network-config', 'core3.user-data',
      'host-keys.json', 'secrets.json',
    ]);
    assert.equal(fs.statSync(path.join(out, 'secrets.json')).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.join(out, 'core1.user-data')).mode & 0o777, 0o600);
    const keys1 = fs.readFileSync(path.join(out, 'host-keys.json'), 'utf8');
    // Rendering again reuses the secrets: host keys stay pinned.
    const again = await cli('render', '--spec', path.join(EXAMPLES, 'three-node.yaml'), '--out', out, '--format', 'ignition', '--json');
    assert.equal(again.code, 0, again.stderr);
    assert.equal(fs.readFileSync(path.join(out, 'host-keys.json'), 'utf8'), keys1);
    const report = JSON.parse(again.stdout) as { nodes: Array<{ node: string; format: string; files: string[] }> };
    assert.deepEqual(report.nodes.map((n) => [n.node, n.format]), [['core1', 'ignition'], ['core2', 'ignition'], ['core3', 'ignition']]);
    assert.ok(fs.existsSync(path.join(out, 'core2.ign')));
  } finally {
    fs.rmSync(path.dirname(out), { recursive: true, force: true });
  }
});

test('render --node prints one node; unknown node is a clear error', async () => {
  const r = await cli('render', '--spec', path.join(EXAMPLES, 'five-node-ignition.yaml'), '--node', 'wrk1');
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { ignition: { version: string } }).ignition.version, '3.3.0');
  assert.match(r.stderr, /host key in this output is not saved/);
  const bad = await cli('render', '--spec', path.join(EXAMPLES, 'five-node-ignition.yaml'), '--node', 'wrk9');
  assert.equal(bad.code, 3);
  assert.match(bad.stderr, /no node named "wrk9" in cluster fleet5 \(nodes: ctl1, ctl2, ctl3, wrk1, wrk2\)/);
});

test('bad input: precise error, exit 2, nothing written', async () => {
  const dir = tmp();
  try {
    const bad: Array<[string, string, RegExp]> = [
      ['syntax.yaml', 'name: x\nnodes: [\n', /syntax\.yaml:\d+:\d+: /],
      ['unknown.yaml', `name: x\nnodes: [{name: a}]\nssh: {authorizedKeys: ["${KEY}"]}\nplatfrom: aws\n`, /unknown\.yaml:4:1: platfrom: unknown field \(did you mean "platform"\?\)/],
      ['type.yaml', `name: x\nnodes: [{name: a, cpus: many}]\nssh: {authorizedKeys: ["${KEY}"]}\n`, /type\.yaml:2:\d+: nodes\[0\]\.cpus: must be a whole number/],
      ['dup.yaml', `name: x\nnodes: [{name: a}, {name: a}]\nssh: {authorizedKeys: ["${KEY}"]}\n`, /dup\.yaml:2:\d+: nodes\[1\]\.name: duplicate name "a"/],
      ['host.yaml', `name: x\nnodes: [{name: "-a-"}]\nssh: {authorizedKeys: ["${KEY}"]}\n`, /host\.yaml:2:\d+: nodes\[0\]\.name: "-a-" is not a valid node name/],
      ['key.yaml', 'name: x\nnodes: [{name: a}]\nssh: {authorizedKeys: ["ssh-ed25519 notbase64!"]}\n', /key\.yaml:3:\d+: ssh\.authorizedKeys\[0\]: malformed public key data/],
      ['hostile.yaml', `name: x\nnodes: [{name: "a\\nhostname: evil"}]\nssh: {authorizedKeys: ["${KEY}"]}\n`, /hostile\.yaml:2:\d+: nodes\[0\]\.name: "a\\nhostname: evil" is not a valid node name/],
    ];
    for (const [file, text, re] of bad) {
      fs.writeFileSync(path.join(dir, file), text);
      const out = path.join(dir, `out-${file}`);
      const r = await cli('render', '--spec', path.join(dir, file), '--out', out);
      assert.equal(r.code, 2, `${file}: ${r.stderr}`);
      assert.match(r.stderr, re, file);
      assert.equal(fs.existsSync(out), false, `${file}: nothing may be written`);
    }
    // The real process maps the same error to the same exit status.
    const p = cliProcess(['render', '--spec', path.join(dir, 'dup.yaml'), '--out', path.join(dir, 'o')]);
    assert.equal(p.code, 2);
    assert.match(p.stderr, /duplicate name "a"/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a failure in one node leaves an existing output directory untouched', async () => {
  const dir = tmp();
  try {
    const spec = path.join(dir, 'c.yaml');
    fs.writeFileSync(spec, `name: keep\nnodes: [{name: a}, {name: b}]\nssh: {authorizedKeys: ["${KEY}"]}\n`);
    const out = path.join(dir, 'out');
    assert.equal((await cli('render', '--spec', spec, '--out', out)).code, 0);
    const before = Object.fromEntries(listFiles(out).map((f) => [f, fs.readFileSync(path.join(out, f), 'utf8')]));
    // A snippet that only breaks node b: node a renders, but nothing may be written.
    fs.writeFileSync(spec, `name: keep\nnodes: [{name: a}, {name: b}]\nssh: {authorizedKeys: ["${KEY}"]}\nsnippets: [{format: cloud-config, nodes: [b], contents: "runcmd: ["}]\n`);
    const r = await cli('render', '--spec', spec, '--out', out);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /snippets\[0\]\.contents:\d+: cloud-config snippet is not valid YAML/);
    const after = Object.fromEntries(listFiles(out).map((f) => [f, fs.readFileSync(path.join(out, f), 'utf8')]));
    assert.deepEqual(after, before);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('usage errors exit 2 and every command has --help', async () => {
  assert.equal((await cli('render')).code, 2);
  assert.match((await cli('render')).stderr, /--spec is required/);
  assert.equal((await cli('render', '--spec', 'x', '--bogus')).code, 2);
  assert.equal((await cli('nonsense')).code, 2);
  assert.equal((await cli('render', '--spec', path.join(EXAMPLES, 'single-node.yaml'), '--format', 'butane', '--out', '/tmp/x')).code, 2);
  for (const c of ['render', 'validate', 'convert']) {
    const h = await cli(c, '--help');
    assert.equal(h.code, 0);
    assert.match(h.stdout, new RegExp(`^Usage: flotilla ${c}`));
  }
  const top = cliProcess(['--help']);
  assert.equal(top.code, 0);
  assert.match(top.stdout, /render +Render every node's first-boot config/);
});

test('AWS: cloud-config over 16 KiB is gzipped; Ignition becomes a verified stub; neither fitting fails', async () => {
  const dir = tmp();
  try {
    // Incompressible-ish content: hex of hashes, ~30 KB per unit file.
    const big = (seed: string, n: number) => Array.from({ length: n }, (_, i) => createHash('sha256').update(`${seed}${i}`).digest('hex')).join('\n');
    fs.writeFileSync(path.join(dir, 'big.service'), `[Service]\nExecStart=/bin/true\n# ${'x'.repeat(30_000)}\n`);
    const spec = (format: string, extra = '') => `name: big\nformat: ${format}\nplatform: aws\nnodes: [{name: a}]\nssh: {authorizedKeys: ["${KEY}"]}\nunits: [{file: big.service}]\n${extra}`;
    fs.writeFileSync(path.join(dir, 'cc.yaml'), spec('cloud-config'));
    let r = await cli('render', '--spec', path.join(dir, 'cc.yaml'), '--out', path.join(dir, 'cc'), '--json');
    assert.equal(r.code, 0, r.stderr);
    let rep = (JSON.parse(r.stdout) as { nodes: Array<{ encoding: string; renderedBytes: number; userDataBytes: number }> }).nodes[0]!;
    assert.equal(rep.encoding, 'gzip');
    assert.ok(rep.renderedBytes > 16_384 && rep.userDataBytes <= 16_384, JSON.stringify(rep));
    assert.equal(gunzipSync(fs.readFileSync(path.join(dir, 'cc', 'a.ec2-user-data.gz'))).toString(), fs.readFileSync(path.join(dir, 'cc', 'a.user-data'), 'utf8'));

    fs.writeFileSync(path.join(dir, 'ign.yaml'), spec('ignition', 'aws: {largeConfigUrl: "s3://flotilla-configs/big/"}\n'));
    r = await cli('render', '--spec', path.join(dir, 'ign.yaml'), '--out', path.join(dir, 'ign'), '--json', '--validate');
    assert.equal(r.code, 0, r.stderr);
    rep = (JSON.parse(r.stdout) as { nodes: typeof rep[] }).nodes[0]!;
    assert.equal(rep.encoding, 'ignition-stub');
    const stub = JSON.parse(fs.readFileSync(path.join(dir, 'ign', 'a.ec2-user-data.ign'), 'utf8')) as { ignition: { config: { replace: { source: string; verification: { hash: string } } } } };
    const full = fs.readFileSync(path.join(dir, 'ign', 'a.ign'));
    assert.equal(stub.ignition.config.replace.source, 's3://flotilla-configs/big/a.ign');
    assert.equal(stub.ignition.config.replace.verification.hash, `sha512-${createHash('sha512').update(full).digest('hex')}`);

    fs.writeFileSync(path.join(dir, 'nourl.yaml'), spec('ignition'));
    r = await cli('render', '--spec', path.join(dir, 'nourl.yaml'), '--out', path.join(dir, 'nourl'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /node a: Ignition config is \d+ bytes, over EC2's 16384-byte user-data limit.*set aws\.largeConfigUrl/);
    assert.equal(fs.existsSync(path.join(dir, 'nourl')), false);

    fs.writeFileSync(path.join(dir, 'huge.service'), `[Service]\nExecStart=/bin/true\n# ${big('h', 2000)}\n`);
    fs.writeFileSync(path.join(dir, 'huge.yaml'), spec('cloud-config').replace('big.service', 'huge.service'));
    r = await cli('render', '--spec', path.join(dir, 'huge.yaml'), '--out', path.join(dir, 'huge'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /node a: cloud-config is \d+ bytes \(\d+ gzip-compressed\), over EC2's 16384-byte user-data limit/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('validate detects each kind and runs the right checks', async () => {
  const dir = tmp();
  try {
    const out = path.join(dir, 'out');
    assert.equal((await cli('render', '--spec', path.join(EXAMPLES, 'three-node.yaml'), '--out', out)).code, 0);
    // Another cluster's secrets are never mixed in: same directory, different cluster is refused.
    const mixed = await cli('render', '--spec', path.join(EXAMPLES, 'five-node-ignition.yaml'), '--out', out);
    assert.equal(mixed.code, 4);
    assert.match(mixed.stderr, /secrets belong to cluster "demo", not "fleet5"/);
    assert.equal((await cli('render', '--spec', path.join(EXAMPLES, 'five-node-ignition.yaml'), '--out', path.join(dir, 'out5'))).code, 0);
    fs.writeFileSync(path.join(dir, 'bad.service'), '[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=yes\nMachineOf=a.service\n');
    fs.writeFileSync(path.join(dir, 'typo.yaml'), '#cloud-config\npackages_update: true\n');
    const files = [path.join(EXAMPLES, 'three-node.yaml'), path.join(out, 'core1.user-data'), path.join(out, 'core1.network-config'), path.join(dir, 'out5', 'ctl1.ign'), path.join(EXAMPLES, 'units', 'hello.service')];
    const ok = await cli('validate', ...files, '--json');
    assert.equal(ok.code, 0, ok.stdout);
    const kinds = (JSON.parse(ok.stdout) as Array<{ kind: string; checks: string[] }>).map((r) => [r.kind, r.checks.join('+')]);
    assert.deepEqual(kinds, [
      ['cluster-spec', 'flotilla'],
      ['cloud-config', 'flotilla+cloud-init schema'],
      ['network-config', 'flotilla'],
      ['ignition', 'flotilla+ignition-validate'],
      ['unit', 'flotilla'],
    ]);
    const bad = await cli('validate', path.join(dir, 'bad.service'), path.join(dir, 'typo.yaml'));
    assert.equal(bad.code, 2);
    assert.match(bad.stdout, /bad\.service:5: X-Fleet\.MachineOf: MachineOf cannot be combined with Global=true/);
    assert.match(bad.stdout, /typo\.yaml:2:1: packages_update: unknown cloud-config key \(did you mean "package_update"\?\)/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
