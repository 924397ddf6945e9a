/**
 * What a stock AMI gets at first boot on AWS, short of AWS itself:
 * - the agent archive: read back by the system's tar (order, modes, owners, bytes), reproducible;
 * - the S3 request signer: AWS's published GET Object example, and botocore's own SigV4 signer
 *   as an independent oracle on the requests the fetcher really sends;
 * - the fetcher script exactly as it goes into Debian user-data, run by a plain `node` against a
 *   local IMDSv2 + S3 stand-in on 127.0.0.1 that checks every signature with botocore and lets
 *   the role read one object only: it retries until the role appears, checks the sha512, and
 *   extracts an agent that runs; a wrong digest or a forbidden key leaves nothing behind;
 * - the setup snippets, rendered into real node documents and checked by `cloud-init schema`
 *   and `ignition-validate`, then parsed (not string-matched);
 * - the quorum rule for replaceMembers.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeDataUrl } from '../../src/config/ignition-types';
import { generateHostKey, generateKeyPair } from '../../src/ssh/keys';
import { cloudInitSchema, hasTool, ignitionValidate } from '../../src/config/validators';
import type { ResolvedSpec } from '../../src/config/spec';
import { bundleAgent } from '../../src/provision/image/bundle';
import { debCacheDir } from '../../src/cluster/state';
import { agentArchive, buildAgentArtifacts, tar, type AgentArtifacts } from '../../src/provision/pulumi/agent-archive';
import { checkReplaceMembers } from '../../src/provision/pulumi/aws';
import { CONTAINER_IMAGES, SETUP_PATHS, setupSnippets, SYSTEMCTL_SHIM, type NodeSetup } from '../../src/provision/pulumi/aws-bootstrap';
import { PROJECT_ROOT } from '../../src/provision/pulumi/dynamic';
import { renderStack, resolveStackSpec } from '../../src/provision/pulumi/plan';
import { signRequest } from '../../src/provision/pulumi/s3-fetch';
import { pyYamlLoad } from '../helpers/pyyaml';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-aws-boot-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let artifacts: AgentArtifacts;
before(async () => {
  artifacts = await buildAgentArtifacts(PROJECT_ROOT);
});

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('the agent archive', () => {
  it('holds the bundle as bin/flotilla (last, 0755) and lib/flotilla/... (0644), root-owned, byte for byte', async () => {
    const file = path.join(tmp, 'agent.tar.gz');
    fs.writeFileSync(file, artifacts.archive.data);
    const listing = run('tar', ['-tvzf', file]);
    assert.equal(listing.status, 0, listing.stderr);
    const lines = listing.stdout.trim().split('\n');
    const names = lines.map((l) => l.split(/\s+/).pop());
    assert.deepEqual(names, artifacts.archive.entries);
    assert.equal(names.at(-1), 'bin/flotilla');
    assert.ok(names.includes('lib/flotilla/node_modules/etcd3/proto/rpc.proto'), names.join(' '));
    for (const l of lines) {
      const [mode, owner] = l.split(/\s+/);
      assert.equal(owner, 'root/root', l);
      assert.equal(mode, l.endsWith('bin/flotilla') ? '-rwxr-xr-x' : '-rw-r--r--', l);
    }
    const out = path.join(tmp, 'extracted');
    fs.mkdirSync(out);
    assert.equal(run('tar', ['-xzf', file, '-C', out]).status, 0);
    const bundle = await bundleAgent(PROJECT_ROOT);
    assert.equal(fs.readFileSync(path.join(out, 'bin/flotilla'), 'utf8'), bundle.script);
    for (const [rel, data] of bundle.assets) assert.deepEqual(fs.readFileSync(path.join(out, 'lib/flotilla', rel)), data, rel);
    // Reproducible: a second bundling gives the same digest (it is in every node's user-data).
    assert.equal(agentArchive(bundle).sha512, artifacts.archive.sha512);
    assert.equal(artifacts.archive.sha512, createHash('sha512').update(artifacts.archive.data).digest('hex'));
  });

  it('writes long paths through the ustar prefix and refuses paths that escape', () => {
    const deep = `${'d'.repeat(60)}/${'e'.repeat(60)}/file.txt`;
    const file = path.join(tmp, 'long.tar');
    fs.writeFileSync(file, tar([{ path: deep, data: Buffer.from('x'), mode: 0o600 }]));
    assert.equal(run('tar', ['-tf', file]).stdout.trim(), deep);
    assert.throws(() => tar([{ path: '../etc/passwd', data: Buffer.alloc(0), mode: 0o644 }]), /not a relative path/);
    assert.throws(() => tar([{ path: '/etc/passwd', data: Buffer.alloc(0), mode: 0o644 }]), /not a relative path/);
  });
});

/** botocore's SigV4 signature for a request the fetcher sent (same time, headers and credentials); undefined without botocore. */
function botocoreSignature(req: { url: string; region: string; headers: Record<string, string>; creds: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } }): string | undefined {
  const script = [
    'import json, sys',
    'from botocore.auth import S3SigV4Auth',
    'from botocore.awsrequest import AWSRequest',
    'from botocore.credentials import Credentials',
    'r = json.load(sys.stdin)',
    "c = r['creds']",
    "creds = Credentials(c['accessKeyId'], c['secretAccessKey'], c.get('sessionToken'))",
    "req = AWSRequest(method='GET', url=r['url'], headers={k: v for k, v in r['headers'].items() if k.lower() != 'authorization'})",
    "req.context['timestamp'] = r['headers']['x-amz-date']",
    "auth = S3SigV4Auth(creds, 's3', r['region'])",
    'print(auth.signature(auth.string_to_sign(req, auth.canonical_request(req)), req))',
  ].join('\n');
  const res = spawnSync('python3', ['-c', script], { input: JSON.stringify(req), encoding: 'utf8' });
  if (res.status !== 0) return undefined;
  return res.stdout.trim();
}

const HAVE_BOTOCORE = spawnSync('python3', ['-c', 'import botocore'], { encoding: 'utf8' }).status === 0;

describe('the S3 request signer', () => {
  it("reproduces AWS's published GET Object example (SigV4, single chunk)", () => {
    const h = signRequest(
      { method: 'GET', host: 'examplebucket.s3.amazonaws.com', path: '/test.txt', region: 'us-east-1', headers: { range: 'bytes=0-9' } },
      { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
      new Date('2013-05-24T00:00:00Z'),
    );
    assert.equal(
      h.authorization,
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    );
  });

  it('agrees with botocore on a session-token request with an encoded key', { skip: HAVE_BOTOCORE ? false : 'python3 botocore not installed' }, () => {
    const creds = { accessKeyId: 'ASIAEXAMPLEKEY000001', secretAccessKey: 'c2VjcmV0L2tleS9mb3IvdGVzdGluZy9vbmx5+/=', sessionToken: 'IQoJb3JpZ2luX2VjEXAMPLE//token==' };
    const h = signRequest({ method: 'GET', host: 'flotilla-demo-x.s3.eu-west-1.amazonaws.com', path: '/demo/a%20b%2Bc/flotilla-agent.tar.gz', region: 'eu-west-1' }, creds, new Date('2026-11-22T03:04:05Z'));
    const sig = /Signature=([0-9a-f]{64})$/.exec(h.authorization!)![1];
    assert.equal(botocoreSignature({ url: 'https://flotilla-demo-x.s3.eu-west-1.amazonaws.com/demo/a%20b%2Bc/flotilla-agent.tar.gz', region: 'eu-west-1', headers: h, creds }), sig);
  });
});

/**
 * IMDSv2 and S3 on 127.0.0.1. S3 answers only correctly signed GETs (checked with botocore) of
 * the one object the role may read, as the role policy allows; IMDS has no role for the first
 * `roleDelay` credential requests (an instance profile takes a moment to appear).
 */
class FakeAws {
  readonly server: http.Server;
  port = 0;
  readonly creds = { accessKeyId: 'ASIAFAKEINSTANCEROLE', secretAccessKey: 'fake/secret+key=for-tests', sessionToken: 'FAKE-SESSION-TOKEN//x==' };
  readonly s3Requests: Array<{ path: string; headers: Record<string, string>; verdict: string }> = [];
  roleRequests = 0;
  constructor(
    readonly objectKey: string,
    readonly body: Buffer,
    /** IMDS answers "no role" until this many role requests have been made. */
    public roleDelay: number,
  ) {
    this.server = http.createServer((req, res) => this.handle(req, res));
  }
  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }
  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '';
    const token = req.headers['x-aws-ec2-metadata-token'];
    if (req.method === 'PUT' && url === '/latest/api/token') {
      if (!req.headers['x-aws-ec2-metadata-token-ttl-seconds']) return void res.writeHead(400).end();
      return void res.writeHead(200).end('IMDS-TOKEN');
    }
    if (url.startsWith('/latest/meta-data/')) {
      // IMDSv2 only (the instances set httpTokens: required).
      if (token !== 'IMDS-TOKEN') return void res.writeHead(401).end();
      if (url === '/latest/meta-data/iam/security-credentials/') {
        this.roleRequests++;
        if (this.roleRequests <= this.roleDelay) return void res.writeHead(404).end();
        return void res.writeHead(200).end('flotilla-demo-node1-role');
      }
      if (url === '/latest/meta-data/iam/security-credentials/flotilla-demo-node1-role') {
        return void res.writeHead(200).end(JSON.stringify({ Code: 'Success', AccessKeyId: this.creds.accessKeyId, SecretAccessKey: this.creds.secretAccessKey, Token: this.creds.sessionToken, Expiration: '2099-01-01T00:00:00Z' }));
      }
      return void res.writeHead(404).end();
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    const sig = /Signature=([0-9a-f]{64})$/.exec(headers.authorization ?? '')?.[1];
    const expected = botocoreSignature({ url: `http://${headers.host}${url}`, region: 'eu-west-1', headers, creds: this.creds });
    let verdict: string;
    if (req.method !== 'GET' || !sig || sig !== expected) verdict = 'SignatureDoesNotMatch';
    else if (url !== `/${this.objectKey}`) verdict = 'AccessDenied';
    else verdict = 'ok';
    this.s3Requests.push({ path: url, headers, verdict });
    if (verdict !== 'ok') return void res.writeHead(403).end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${verdict}</Code></Error>`);
    res.writeHead(200, { 'content-type': 'application/gzip' }).end(this.body);
  }
}

function runNode(args: string[], cwd: string, bin = process.execPath, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // A plain node, as on the instance: no tsx, no repository on the module path.
    const child = spawn(bin, args, { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Debian 12's nodejs 18 (what the AMI installs), unpacked from the image build's .deb cache with
 * its libraries and the builtins Debian keeps in /usr/share/nodejs, behind a wrapper that runs it
 * in a private mount namespace where that directory is the unpacked one. Undefined when the
 * .debs are not there.
 */
function debianNode18(): { what: string; bin: string; env: NodeJS.ProcessEnv } | undefined {
  const debs = debCacheDir();
  const wanted = ['nodejs_', 'libnode108_', 'libuv1_', 'libicu72_', 'libnghttp2-14_', 'libbrotli1_', 'libc-ares2_'];
  let names: string[];
  try {
    names = fs.readdirSync(debs);
  } catch {
    return undefined;
  }
  const files = wanted.map((w) => names.find((f) => f.startsWith(w) && f.endsWith('_amd64.deb')));
  if (files.some((f) => f === undefined)) return undefined;
  const root = path.join(tmp, 'debian-node18');
  for (const f of [...files, ...names.filter((n) => n.startsWith('node-') && n.endsWith('_all.deb'))]) {
    if (run('dpkg-deb', ['-x', path.join(debs, f!), root]).status !== 0) return undefined;
  }
  const bin = path.join(tmp, 'debian-node18.sh');
  fs.writeFileSync(
    bin,
    [
      '#!/bin/sh',
      `exec unshare --mount --propagation private sh -c 'mount -t tmpfs tmpfs /usr/share && mkdir /usr/share/nodejs && mount --bind "$0/usr/share/nodejs" /usr/share/nodejs && LD_LIBRARY_PATH="$0/usr/lib/x86_64-linux-gnu" exec "$0/usr/bin/node" "$@"' '${root}' "$@"`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  const v = spawnSync(bin, ['-e', 'process.stdout.write(process.version)'], { encoding: 'utf8' });
  if (v.status !== 0 || !v.stdout.startsWith('v18.')) return undefined;
  return { what: `Debian 12's nodejs ${v.stdout.trim()}`, bin, env: {} };
}

describe('the fetcher script from user-data, in a plain node, against IMDSv2 and S3 stand-ins on 127.0.0.1', { skip: HAVE_BOTOCORE ? false : 'python3 botocore not installed (the stand-in checks signatures with it)' }, () => {
  const key = 'demo/flotilla-agent.tar.gz';
  let fake: FakeAws;
  let script: string;
  before(async () => {
    fake = new FakeAws(key, artifacts.archive.data, 2);
    await fake.start();
    script = path.join(tmp, 'fetch-agent.js');
    fs.writeFileSync(script, artifacts.fetcher, { mode: 0o755 });
  });
  after(() => fake.stop());

  function source(dest: string, over: Record<string, unknown> = {}): string {
    const file = path.join(tmp, `source-${path.basename(dest)}.json`);
    fs.writeFileSync(file, JSON.stringify({ endpoint: `http://127.0.0.1:${fake.port}`, imds: `http://127.0.0.1:${fake.port}`, key, region: 'eu-west-1', sha512: artifacts.archive.sha512, dest, attempts: 4, retryDelayMs: 20, ...over }));
    return file;
  }

  /** Node.js builds to run the fetcher with: this host's, and Debian 12's own nodejs 18 (what the AMI installs) when its .debs are in the image build's cache. */
  const debianNode = debianNode18();
  const nodes: Array<{ what: string; bin: string; env: NodeJS.ProcessEnv } | { what: string; skip: string }> = [
    { what: `this host's node ${process.version}`, bin: process.execPath, env: {} },
    debianNode ?? { what: "Debian 12's nodejs 18", skip: `Debian's nodejs .debs are not in ${debCacheDir()} (flotilla image build puts them there)` },
  ];
  for (const n of nodes) {
    it(`with ${n.what}: waits for the role, fetches with a signature S3 accepts, checks the sha512 and extracts an agent that runs`, { skip: 'skip' in n ? n.skip : false }, async () => {
      if ('skip' in n) return;
      const dest = path.join(tmp, `usr-local-${nodes.indexOf(n)}`);
      const roleRequestsBefore = fake.roleRequests;
      const s3Before = fake.s3Requests.length;
      fake.roleDelay = roleRequestsBefore + 2;
      const r = await runNode([script, source(dest)], tmp, n.bin, n.env);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fake.roleRequests - roleRequestsBefore, 3, 'two attempts without a role, then one with it');
      assert.match(r.stderr, /attempt 1\/4: no instance role yet/);
      const s3 = fake.s3Requests.slice(s3Before);
      assert.deepEqual(s3.map((q) => [q.path, q.verdict]), [[`/${key}`, 'ok']]);
      assert.equal(s3[0]!.headers['x-amz-security-token'], fake.creds.sessionToken);
      assert.match(r.stdout, /sha512 ok\) extracted under/);
      assert.equal(fs.statSync(path.join(dest, 'bin/flotilla')).mode & 0o777, 0o755);
      assert.ok(fs.existsSync(path.join(dest, 'lib/flotilla/node_modules/etcd3/proto/rpc.proto')));
      assert.deepEqual(fs.readdirSync(dest).sort(), ['bin', 'lib'], 'no temporary file left');
      // The bundle reads its files from /usr/local/lib/flotilla: run it where the instance would
      // have it, with the extracted tree mounted on /usr/local in a private mount namespace.
      const v = run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount --bind '${dest}' /usr/local && '${n.bin}' /usr/local/bin/flotilla --version`]);
      assert.equal(v.status, 0, v.stderr);
      assert.match(v.stdout, /^flotilla /);
    });
  }

  it('refuses an archive whose sha512 differs from user-data, leaving nothing extracted', async () => {
    fake.roleDelay = 0;
    const dest = path.join(tmp, 'bad-digest');
    const r = await runNode([script, source(dest, { sha512: 'ab'.repeat(64), attempts: 2 })], tmp);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /fetch-agent: sha512 mismatch for demo\/flotilla-agent\.tar\.gz: expected abab.*, got [0-9a-f]{128}/);
    assert.equal(fs.existsSync(path.join(dest, 'bin')), false);
  });

  it('fails with S3 error code for an object the role may not read', async () => {
    fake.roleDelay = 0;
    const dest = path.join(tmp, 'denied');
    const r = await runNode([script, source(dest, { key: 'demo/node2.ign', attempts: 1 })], tmp);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /HTTP 403 AccessDenied/);
    assert.equal(fs.existsSync(path.join(dest, 'bin')), false);
  });
});

function structure(format: 'cloud-config' | 'ignition', nodeCount = 4): ResolvedSpec {
  return resolveStackSpec({ name: 'demo', platform: 'aws', nodeCount, format }, [generateKeyPair('admin').publicKey]);
}

function renderWith(format: 'cloud-config' | 'ignition', setup: NodeSetup, joining: string[] = []): Map<string, string> {
  const base = structure(format);
  const agent = { bucket: 'flotilla-demo-x', key: 'demo/flotilla-agent.tar.gz', region: 'eu-west-1', regionalDomainName: 'flotilla-demo-x.s3.eu-west-1.amazonaws.com', sha512: artifacts.archive.sha512 };
  const snippets = setupSnippets(base, { setup, agent, fetcher: artifacts.fetcher, createSudoGroup: setup === 'podman' });
  const spec = resolveStackSpec({ name: 'demo', platform: 'aws', nodeCount: 4, format }, [generateKeyPair('admin').publicKey], { snippets, largeConfigUrl: 's3://flotilla-demo-x/demo/' });
  const keys = Object.fromEntries(spec.nodes.map((n) => [n.name, generateHostKey(n.name)]));
  return new Map(renderStack(spec, keys, { joining }).map((r) => [r.rendered.node, r.rendered.userData]));
}

/** An EnvironmentFile's variables. */
function envVars(text: string): Record<string, string> {
  return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

const ALL_MEMBERS = 'node1=https://10.99.0.11:2380,node2=https://10.99.0.12:2380,node3=https://10.99.0.13:2380';

type CloudConfig = { packages?: string[]; package_update?: boolean; runcmd?: string[][]; write_files: Array<{ path: string; content: string; permissions: string }> };
type Ign = {
  passwd?: { groups?: Array<{ name: string }>; users?: Array<{ name: string; groups?: string[] }> };
  storage: { files: Array<{ path: string; mode?: number; contents: { source: string; verification?: { hash: string } } }>; directories?: Array<{ path: string; mode: number }> };
  systemd: { units: Array<{ name: string; enabled?: boolean; contents?: string; dropins?: Array<{ name: string; contents: string }> }> };
};

/** `Key=value` lines of a unit or drop-in, in order. */
function unitLines(text: string): Array<[string, string]> {
  return text
    .split('\n')
    .filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]);
}

describe('setup snippets rendered into node documents', () => {
  it('Debian: packages, masked Debian etcd, the fetcher with its source, install unit required by fleetd; valid cloud-config', { skip: hasTool('cloud-init') ? false : 'cloud-init not installed' }, () => {
    const docs = renderWith('cloud-config', 'debian-packages');
    for (const [node, text] of docs) {
      assert.deepEqual(cloudInitSchema(text), { ok: true, tool: 'cloud-init schema', messages: [] }, node);
      const doc = pyYamlLoad(text) as CloudConfig;
      assert.deepEqual([doc.package_update, doc.packages], [true, ['etcd-server', 'etcd-client', 'nodejs']]);
      const file = (p: string) => doc.write_files.find((f) => f.path === p);
      assert.equal(file('/etc/systemd/system/etcd.service')?.content, '', 'an empty unit file masks Debian etcd');
      assert.equal(file(SETUP_PATHS.fetcher)?.content, artifacts.fetcher);
      assert.equal(file(SETUP_PATHS.fetcher)?.permissions, '0755');
      assert.deepEqual(JSON.parse(file(SETUP_PATHS.agentSource)!.content), {
        endpoint: 'https://flotilla-demo-x.s3.eu-west-1.amazonaws.com',
        key: 'demo/flotilla-agent.tar.gz',
        region: 'eu-west-1',
        sha512: artifacts.archive.sha512,
        dest: '/usr/local',
      });
      const install = unitLines(file('/etc/systemd/system/flotilla-agent-install.service')!.content);
      assert.deepEqual(install.filter(([k]) => ['Type', 'ExecStart', 'ConditionPathExists'].includes(k)), [
        ['ConditionPathExists', '!/usr/local/bin/flotilla'],
        ['Type', 'oneshot'],
        ['ExecStart', `/usr/bin/node ${SETUP_PATHS.fetcher} ${SETUP_PATHS.agentSource}`],
      ]);
      assert.deepEqual(unitLines(file('/etc/systemd/system/flotilla-fleetd.service.d/10-agent-install.conf')!.content), [['Requires', 'flotilla-agent-install.service'], ['After', 'flotilla-agent-install.service']]);
      assert.deepEqual(doc.runcmd, [['systemctl', 'enable', '--now', ...(node === 'node4' ? [] : ['flotilla-etcd.path']), 'flotilla-fleetd.path']]);
      if (node !== 'node4') assert.equal(envVars(file('/etc/flotilla/etcd.env')!.content).ETCD_INITIAL_CLUSTER_STATE, 'new');
    }
  });

  for (const runtime of ['docker', 'podman'] as const) {
    it(`${runtime === 'docker' ? 'Flatcar' : 'Fedora CoreOS'}: archive from S3 by sha512, unpack unit, etcd and agent in ${runtime}; valid Ignition`, { skip: hasTool('ignition-validate') ? false : 'ignition-validate not installed' }, () => {
      const docs = renderWith('ignition', runtime, ['node2']);
      for (const [node, text] of docs) {
        assert.deepEqual(ignitionValidate(text), { ok: true, tool: 'ignition-validate', messages: [] }, node);
        const doc = JSON.parse(text) as Ign;
        const archive = doc.storage.files.find((f) => f.path === SETUP_PATHS.optArchive)!;
        assert.deepEqual(archive.contents, { source: 's3://flotilla-demo-x/demo/flotilla-agent.tar.gz', verification: { hash: `sha512-${artifacts.archive.sha512}` } });
        const shim = doc.storage.files.find((f) => f.path === SETUP_PATHS.systemctlShim)!;
        assert.equal(decodeDataUrl(shim.contents.source)!.toString(), SYSTEMCTL_SHIM);
        assert.equal(shim.mode, 0o755);
        assert.deepEqual(doc.storage.directories?.map((d) => [d.path, d.mode]), [['/var/lib/flotilla/etcd', 0o700], ['/var/lib/flotilla/fleetd', 0o755], ['/opt/flotilla/shim', 0o755]]);
        const unit = (n: string) => doc.systemd.units.find((u) => u.name === n);
        assert.deepEqual(unitLines(unit('flotilla-agent-install.service')!.contents!).find(([k]) => k === 'ExecStart'), ['ExecStart', '/usr/bin/tar -xzf /opt/flotilla/agent.tar.gz -C /opt/flotilla --no-same-owner']);
        const fleetd = unit('flotilla-fleetd.service')!;
        assert.ok(fleetd.contents, 'the base unit is kept; the drop-in overrides ExecStart');
        const fl = unitLines(fleetd.dropins![0]!.contents);
        const exec = fl.filter(([k]) => k === 'ExecStart').map(([, v]) => v);
        assert.equal(exec[0], '', 'ExecStart reset before the container command');
        const argv = exec[1]!.split(' ');
        assert.equal(argv[0], `/usr/bin/${runtime}`);
        assert.deepEqual(argv.slice(argv.indexOf(CONTAINER_IMAGES.node)), [CONTAINER_IMAGES.node, 'node', '/usr/local/bin/flotilla', 'fleetd', '--config', '/etc/flotilla/fleetd.json']);
        for (const m of ['/opt/flotilla/lib/flotilla:/usr/local/lib/flotilla:ro', '/opt/flotilla/shim/systemctl:/usr/local/sbin/systemctl:ro', '/run/systemd/system:/run/systemd/system', '/etc/flotilla:/etc/flotilla:ro']) {
          assert.equal(argv[argv.indexOf(m) - 1], '-v', m);
        }
        assert.ok(argv.includes('--privileged') && argv[argv.indexOf('--pid') + 1] === 'host' && argv[argv.indexOf('--network') + 1] === 'host');
        assert.deepEqual(fl.filter(([k]) => k === 'Requires').map(([, v]) => v), ['flotilla-agent-install.service', ...(runtime === 'docker' ? ['docker.service'] : [])]);
        const etcd = unit('flotilla-etcd.service');
        if (node === 'node4') assert.equal(etcd, undefined, 'workers run no etcd');
        else {
          const run = unitLines(etcd!.dropins![0]!.contents).filter(([k]) => k === 'ExecStart').map(([, v]) => v)[1]!.split(' ');
          const envFiles = run.flatMap((a, i) => (a === '--env-file' ? [run[i + 1]] : []));
          assert.deepEqual(envFiles, ['/etc/flotilla/etcd.env']);
          const env = envVars(decodeDataUrl(doc.storage.files.find((f) => f.path === '/etc/flotilla/etcd.env')!.contents.source)!.toString());
          assert.deepEqual([env.ETCD_INITIAL_CLUSTER_STATE, env.ETCD_INITIAL_CLUSTER], [node === 'node2' ? 'existing' : 'new', ALL_MEMBERS], `${node} joins only when replacing`);
          assert.deepEqual(run.slice(-2), [CONTAINER_IMAGES.etcd, '/usr/local/bin/etcd']);
          assert.ok(run.includes('/etc/flotilla/pki:/etc/flotilla/pki:ro') && run.includes('/var/lib/flotilla/etcd:/var/lib/flotilla/etcd'));
          assert.ok(unitLines(etcd!.dropins![0]!.contents).some(([k, v]) => k === 'Type' && v === 'simple'));
        }
        assert.deepEqual(doc.passwd?.groups, runtime === 'podman' ? [{ name: 'sudo' }] : undefined, 'Fedora CoreOS gets the sudo group the user is put in');
      }
    });
  }

  it('Debian, replacing node2: its etcd.env joins the running cluster of the same members; valid cloud-config', { skip: hasTool('cloud-init') ? false : 'cloud-init not installed' }, () => {
    const docs = renderWith('cloud-config', 'debian-packages', ['node2']);
    for (const [node, text] of docs) {
      if (node === 'node4') continue;
      const doc = pyYamlLoad(text) as CloudConfig;
      const env = envVars(doc.write_files.find((f) => f.path === '/etc/flotilla/etcd.env')!.content);
      assert.deepEqual([env.ETCD_INITIAL_CLUSTER_STATE, env.ETCD_INITIAL_CLUSTER], [node === 'node2' ? 'existing' : 'new', ALL_MEMBERS], node);
      if (node === 'node2') assert.equal(cloudInitSchema(text).ok, true);
    }
  });
});

const HAVE_SYSTEMD_ANALYZE = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).status === 0;

/** Writes units and drop-ins under `dir` and runs `systemd-analyze verify` on `units` there; its messages. */
function systemdVerify(dir: string, files: Array<{ rel: string; contents: string }>, units: string[]): string[] {
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(dir, f.rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, f.rel), f.contents);
  }
  // The trailing colon keeps systemd's own unit directories after ours (for network-online.target and the like).
  const r = spawnSync('systemd-analyze', ['verify', ...units], { cwd: dir, encoding: 'utf8', env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` } });
  return `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() !== '');
}

/** What systemd-analyze may say here, where neither the binaries nor docker.service exist: nothing about the unit texts themselves. */
const ABSENT_ON_THIS_HOST = /(Command \/usr\/(local\/)?bin\/\S+ is not executable|Unit docker\.service not found)/;

describe('the units and drop-ins, read by systemd', { skip: HAVE_SYSTEMD_ANALYZE ? false : 'systemd-analyze not installed' }, () => {
  it('Debian: no unknown keys or bad settings; an empty etcd.service is masked', () => {
    const doc = pyYamlLoad(renderWith('cloud-config', 'debian-packages', ['node2']).get('node2')!) as CloudConfig;
    const files = doc.write_files.filter((f) => f.path.startsWith('/etc/systemd/system/')).map((f) => ({ rel: f.path.slice('/etc/systemd/system/'.length), contents: f.content }));
    const dir = path.join(tmp, 'units-debian');
    const out = systemdVerify(dir, files, ['flotilla-fleetd.service', 'flotilla-etcd.service', 'flotilla-agent-install.service', 'flotilla-etcd.path', 'flotilla-fleetd.path']);
    assert.deepEqual(out.filter((l) => !ABSENT_ON_THIS_HOST.test(l)), [], out.join('\n'));
    assert.deepEqual(systemdVerify(dir, [], ['etcd.service']), ['Unit etcd.service is masked.']);
    // The checker does flag mistakes: an unknown key is reported.
    assert.match(systemdVerify(dir, [{ rel: 'typo.service', contents: '[Service]\nExecStrat=/bin/true\n' }], ['typo.service']).join('\n'), /Unknown key 'ExecStrat'/);
  });

  for (const runtime of ['docker', 'podman'] as const) {
    it(`${runtime}: the container drop-ins over the base units read cleanly`, () => {
      const doc = JSON.parse(renderWith('ignition', runtime, ['node2']).get('node2')!) as Ign;
      const files = doc.systemd.units.flatMap((u) => [
        ...(u.contents ? [{ rel: u.name, contents: u.contents }] : []),
        ...(u.dropins ?? []).map((d) => ({ rel: `${u.name}.d/${d.name}`, contents: d.contents })),
      ]);
      const out = systemdVerify(path.join(tmp, `units-${runtime}`), files, ['flotilla-fleetd.service', 'flotilla-etcd.service', 'flotilla-agent-install.service']);
      assert.deepEqual(out.filter((l) => !ABSENT_ON_THIS_HOST.test(l)), [], out.join('\n'));
    });
  }
});

describe('replaceMembers', () => {
  it('takes members only, and no more at once than etcd tolerates missing', () => {
    const three = structure('cloud-config', 4);
    assert.deepEqual(checkReplaceMembers(three, ['node2']), ['node2']);
    assert.throws(() => checkReplaceMembers(three, ['node4']), /"node4" is not an etcd member of cluster demo \(members: node1, node2, node3\)/);
    assert.throws(() => checkReplaceMembers(three, ['node1', 'node2']), /replacing 2 of 3 etcd members at once would lose quorum \(at most 1\)/);
    assert.throws(() => checkReplaceMembers(three, ['node1', 'node1']), /named twice/);
    assert.throws(() => checkReplaceMembers(structure('cloud-config', 1), ['node1']), /a one-member cluster cannot: make a new stack/);
    assert.deepEqual(checkReplaceMembers(resolveStackSpec({ name: 'demo', platform: 'aws', spec: { name: 'demo', nodes: [1, 2, 3, 4, 5].map((i) => ({ name: `n${i}`, role: 'controller' as const })), ssh: { authorizedKeys: [] }, etcd: { members: ['n1', 'n2', 'n3', 'n4', 'n5'] } } }, [generateKeyPair('a').publicKey]), ['n1', 'n2']), ['n1', 'n2']);
  });
});
