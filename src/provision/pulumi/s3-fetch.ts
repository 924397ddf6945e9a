/**
 * The first-boot fetcher for Debian nodes on AWS: downloads the Flotilla agent archive from its
 * S3 object with the instance role's credentials, checks its sha512 against the digest in the
 * node's user-data, and extracts it (`tar`), the executable last.
 *
 * cloud-init cannot read S3 and a stock Debian AMI has no AWS CLI, so this is a small signer of
 * its own: IMDSv2 (a session token, then the role's temporary credentials) and one AWS
 * Signature Version 4 GET. It is bundled by esbuild into one script for Debian's `node` and
 * must use nothing but Node's built-ins (agent-archive.ts `fetcherScript`).
 *
 * Run: `node fetch-agent.js /etc/flotilla/agent-source.json` (flotilla-agent-install.service).
 */
import { execFileSync } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';

/** The JSON file user-data gives the fetcher. */
export interface AgentSource {
  /** `https://<bucket>.s3.<region>.amazonaws.com` (the bucket's regional domain). */
  endpoint: string;
  /** Object key, e.g. `demo/flotilla-agent.tar.gz`. */
  key: string;
  region: string;
  /** Hex sha512 of the archive. */
  sha512: string;
  /** Extraction root (the archive holds bin/flotilla and lib/flotilla/...). */
  dest: string;
  /** Instance metadata service; default http://169.254.169.254. */
  imds?: string;
  /** Attempts before giving up (instance-profile credentials can take a while to appear); default 60. */
  attempts?: number;
  /** Pause between attempts; default 3000 ms. */
  retryDelayMs?: number;
}

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** RFC 3986 encoding as SigV4 wants it, per path segment (slashes kept). */
export function encodeS3Key(key: string): string {
  return key
    .split('/')
    .map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

function sha256Hex(data: string): string {
  return createHash('sha256').update(data, 'utf8').digest('hex');
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** `20130524T000000Z` */
export function amzDate(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

export interface SignRequest {
  method: 'GET';
  host: string;
  /** Canonical (already encoded) path, e.g. `/demo/flotilla-agent.tar.gz`. */
  path: string;
  region: string;
  service?: string;
  /** Extra headers to sign (e.g. range), lowercase names. */
  headers?: Record<string, string>;
}

/**
 * The headers of a SigV4-signed request without a body (S3 style: x-amz-content-sha256 is the
 * empty payload's hash): host, x-amz-date, x-amz-content-sha256, the session token when there
 * is one, the extra headers, and Authorization.
 */
export function signRequest(req: SignRequest, creds: AwsCredentials, now: Date): Record<string, string> {
  const service = req.service ?? 's3';
  const date = amzDate(now);
  const day = date.slice(0, 8);
  const headers: Record<string, string> = {
    ...(req.headers ?? {}),
    host: req.host,
    'x-amz-content-sha256': EMPTY_SHA256,
    'x-amz-date': date,
    ...(creds.sessionToken ? { 'x-amz-security-token': creds.sessionToken } : {}),
  };
  const names = Object.keys(headers).map((n) => n.toLowerCase()).sort();
  const lower: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = v.trim().replace(/\s+/g, ' ');
  const signedHeaders = names.join(';');
  const canonical = [req.method, req.path, '', ...names.map((n) => `${n}:${lower[n]}`), '', signedHeaders, EMPTY_SHA256].join('\n');
  const scope = `${day}/${req.region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', date, scope, sha256Hex(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${creds.secretAccessKey}`, day), req.region), service), 'aws4_request');
  const signature = createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
  return { ...headers, authorization: `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope},SignedHeaders=${signedHeaders},Signature=${signature}` };
}

interface Response {
  status: number;
  body: Buffer;
}

function request(url: string, method: string, headers: Record<string, string>, timeoutMs = 30_000): Promise<Response> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, { method, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** The instance role's temporary credentials through IMDSv2 (token first: the instances require it). */
export async function instanceCredentials(imds: string): Promise<AwsCredentials> {
  const token = await request(`${imds}/latest/api/token`, 'PUT', { 'x-aws-ec2-metadata-token-ttl-seconds': '300' });
  if (token.status !== 200) throw new Error(`IMDSv2 token: HTTP ${token.status}`);
  const auth = { 'x-aws-ec2-metadata-token': token.body.toString('utf8').trim() };
  const roles = await request(`${imds}/latest/meta-data/iam/security-credentials/`, 'GET', auth);
  const role = roles.body.toString('utf8').split('\n')[0]?.trim();
  if (roles.status !== 200 || !role) throw new Error(`no instance role yet (HTTP ${roles.status}): is the instance profile attached?`);
  const res = await request(`${imds}/latest/meta-data/iam/security-credentials/${encodeURIComponent(role)}`, 'GET', auth);
  if (res.status !== 200) throw new Error(`credentials of role ${role}: HTTP ${res.status}`);
  const c = JSON.parse(res.body.toString('utf8')) as { Code?: string; AccessKeyId?: string; SecretAccessKey?: string; Token?: string };
  if (c.Code !== 'Success' || !c.AccessKeyId || !c.SecretAccessKey) throw new Error(`credentials of role ${role}: ${c.Code ?? 'no code'}`);
  return { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, ...(c.Token ? { sessionToken: c.Token } : {}) };
}

/** One signed GET of the object; the body if S3 answers 200, else an error naming the status and S3's code. */
export async function getObject(src: Pick<AgentSource, 'endpoint' | 'key' | 'region'>, creds: AwsCredentials, now: Date = new Date()): Promise<Buffer> {
  const base = new URL(src.endpoint);
  const p = `/${encodeS3Key(src.key)}`;
  const headers = signRequest({ method: 'GET', host: base.host, path: p, region: src.region }, creds, now);
  const res = await request(`${base.protocol}//${base.host}${p}`, 'GET', headers);
  if (res.status !== 200) {
    const code = /<Code>([^<]*)<\/Code>/.exec(res.body.toString('utf8'))?.[1];
    throw new Error(`GET ${src.endpoint}${p}: HTTP ${res.status}${code ? ` ${code}` : ''}`);
  }
  return res.body;
}

/** Fetches and checks the archive, retrying while the role or the network is not ready. */
export async function fetchVerified(src: AgentSource, log: (line: string) => void = () => undefined): Promise<Buffer> {
  if (!/^[0-9a-f]{128}$/.test(src.sha512)) throw new Error(`agent source: sha512 must be 128 hex digits, got ${JSON.stringify(src.sha512)}`);
  const attempts = src.attempts ?? 60;
  const delay = src.retryDelayMs ?? 3000;
  let last: Error | undefined;
  for (let i = 1; i <= attempts; i++) {
    try {
      const creds = await instanceCredentials(src.imds ?? 'http://169.254.169.254');
      const body = await getObject(src, creds);
      const got = createHash('sha512').update(body).digest('hex');
      if (got !== src.sha512) throw new Error(`sha512 mismatch for ${src.key}: expected ${src.sha512}, got ${got}`);
      return body;
    } catch (err) {
      last = err as Error;
      log(`attempt ${i}/${attempts}: ${last.message}`);
      if (i < attempts) await new Promise((r) => setTimeout(r, delay));
    }
  }
  throw last ?? new Error('no attempt made');
}

/** Extracts a checked archive under `dest` with the system's tar (files keep the archive's order: the executable last). */
export function extract(archive: Buffer, dest: string): void {
  fs.mkdirSync(dest, { recursive: true });
  const tmp = path.join(dest, `.flotilla-agent-${process.pid}.tar.gz`);
  fs.writeFileSync(tmp, archive, { mode: 0o600 });
  try {
    execFileSync('tar', ['-xzf', tmp, '-C', dest, '--no-same-owner'], { stdio: ['ignore', 'inherit', 'inherit'] });
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

export function readSource(file: string): AgentSource {
  const s = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<AgentSource>;
  for (const k of ['endpoint', 'key', 'region', 'sha512', 'dest'] as const) {
    if (typeof s[k] !== 'string' || s[k] === '') throw new Error(`${file}: ${k} is required`);
  }
  return s as AgentSource;
}

export async function main(argv: string[]): Promise<number> {
  const file = argv[0];
  if (!file) {
    process.stderr.write('usage: fetch-agent SOURCE.json\n');
    return 2;
  }
  try {
    const src = readSource(file);
    const body = await fetchVerified(src, (l) => process.stderr.write(`fetch-agent: ${l}\n`));
    extract(body, src.dest);
    process.stdout.write(`fetch-agent: ${src.key} (${body.length} bytes, sha512 ok) extracted under ${src.dest}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`fetch-agent: ${(err as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
