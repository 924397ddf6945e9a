/**
 * Per-cluster TLS for etcd: a CA, and per member a server and a peer certificate (SANs:
 * the node's cluster address, its name and 127.0.0.1), plus one client certificate that
 * fleetd and etcdctl present. ECDSA P-256 keys, made with the host's `openssl`.
 * Private keys stay in the cluster's state directory (0600) and reach nodes after boot
 * over the pinned SSH connection, never through user-data.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { FlotillaError } from '../errors';
import { PKI } from '../config/node-files';
import type { ResolvedSpec } from '../config/spec';
import { writeFileAtomic } from '../util/fs';

export interface Pem {
  cert: string;
  key: string;
}

export interface ClusterPki {
  ca: Pem;
  client: Pem;
  /** Per etcd member. */
  members: Record<string, { server: Pem; peer: Pem }>;
}

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 30_000 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      reject(
        new FlotillaError(missing ? 'missing-tool' : 'external', missing ? 'openssl is not installed; run scripts/setup-host.sh' : `openssl ${args[0]} failed: ${stderr.trim() || err.message}`),
      );
    });
  });
}

async function issue(dir: string, name: string, subject: string, ext: string, ca?: { cert: string; key: string }, days = 3650): Promise<Pem> {
  const key = path.join(dir, `${name}.key`);
  await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], dir);
  const extFile = path.join(dir, `${name}.ext`);
  fs.writeFileSync(extFile, ext);
  if (!ca) {
    await openssl(['req', '-x509', '-new', '-key', key, '-sha256', '-days', String(days), '-subj', subject, '-extensions', 'v3', '-config', extFile, '-out', path.join(dir, `${name}.crt`)], dir);
  } else {
    const csr = path.join(dir, `${name}.csr`);
    await openssl(['req', '-new', '-key', key, '-subj', subject, '-out', csr], dir);
    await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-sha256', '-days', String(days), '-extfile', extFile, '-extensions', 'v3', '-out', path.join(dir, `${name}.crt`)], dir);
  }
  return { cert: fs.readFileSync(path.join(dir, `${name}.crt`), 'utf8'), key: fs.readFileSync(key, 'utf8') };
}

const CA_EXT = '[req]\ndistinguished_name=dn\n[dn]\n[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n';

function leafExt(usage: 'serverAuth' | 'clientAuth' | 'serverAuth,clientAuth', sans: string[]): string {
  const alt = sans.length ? `subjectAltName=${sans.join(',')}\n` : '';
  return `[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=${usage}\n${alt}`;
}

/** Generates the cluster's CA and certificates (in a temp dir, removed afterwards). */
export async function generatePki(spec: ResolvedSpec): Promise<ClusterPki> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-pki-'));
  try {
    const ca = await issue(dir, 'ca', `/CN=flotilla-${spec.name}-ca`, CA_EXT);
    const caFiles = { cert: path.join(dir, 'ca.crt'), key: path.join(dir, 'ca.key') };
    const client = await issue(dir, 'client', `/CN=flotilla-${spec.name}-client`, leafExt('clientAuth', []), caFiles);
    const members: ClusterPki['members'] = {};
    for (const n of spec.nodes.filter((x) => x.etcdMember)) {
      const sans = [`IP:${n.address}`, 'IP:127.0.0.1', `DNS:${n.name}`, 'DNS:localhost'];
      // etcd peers authenticate each other with client auth too.
      const server = await issue(dir, `${n.name}-server`, `/CN=${n.name}`, leafExt('serverAuth,clientAuth', sans), caFiles);
      const peer = await issue(dir, `${n.name}-peer`, `/CN=${n.name}`, leafExt('serverAuth,clientAuth', sans), caFiles);
      members[n.name] = { server, peer };
    }
    return { ca, client, members };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The files a node needs in /etc/flotilla/pki, with modes. Workers get the CA and client pair only. */
export function nodePkiFiles(pki: ClusterPki, node: string): Array<{ path: string; contents: string; mode: number }> {
  const files: Array<{ path: string; contents: string; mode: number }> = [
    { path: PKI.ca, contents: pki.ca.cert, mode: 0o644 },
    { path: PKI.clientCert, contents: pki.client.cert, mode: 0o644 },
    { path: PKI.clientKey, contents: pki.client.key, mode: 0o600 },
  ];
  const m = pki.members[node];
  if (m) {
    files.push(
      { path: PKI.etcdServerCert, contents: m.server.cert, mode: 0o644 },
      { path: PKI.etcdServerKey, contents: m.server.key, mode: 0o600 },
      { path: PKI.etcdPeerCert, contents: m.peer.cert, mode: 0o644 },
      { path: PKI.etcdPeerKey, contents: m.peer.key, mode: 0o600 },
    );
  }
  return files;
}

export function writePki(file: string, pki: ClusterPki): void {
  writeFileAtomic(file, `${JSON.stringify(pki, null, 2)}\n`, 0o600);
}

export function readPki(file: string): ClusterPki | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as ClusterPki;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FlotillaError('invalid-input', `${file}: not a Flotilla PKI file: ${(err as Error).message}`);
  }
}

/**
 * A POSIX shell script that installs `files` (contents base64-encoded, so nothing in
 * them can inject commands), then creates `readyFile` last. Run as root (`sudo sh -s`).
 */
export function installScript(files: ReadonlyArray<{ path: string; contents: string; mode: number }>, readyFile: string, opts: { root?: string } = {}): string {
  const safePath = /^\/[A-Za-z0-9._/-]+$/;
  const root = opts.root ?? '';
  const lines = ['set -eu', 'umask 077'];
  for (const f of [...files.map((x) => x.path), readyFile, ...(root ? [root] : [])]) {
    if (!safePath.test(f)) throw new FlotillaError('internal', `unsafe path for secret delivery: ${JSON.stringify(f)}`);
  }
  for (const f0 of files) {
    const f = { ...f0, path: `${root}${f0.path}` };
    const tmp = `${f.path}.flotilla-tmp`;
    lines.push(`mkdir -p '${path.posix.dirname(f.path)}'`);
    lines.push(`base64 -d > '${tmp}' <<'FLOTILLA_EOF'`, Buffer.from(f.contents).toString('base64').replace(/(.{76})/g, '$1\n'), 'FLOTILLA_EOF');
    lines.push(`chmod ${f.mode.toString(8)} '${tmp}'`, `mv -f '${tmp}' '${f.path}'`);
  }
  lines.push(`touch '${root}${readyFile}'`);
  return `${lines.join('\n')}\n`;
}
