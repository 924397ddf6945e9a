/**
 * Bringing one booted VM into service, the same for `up` and `replace` on every platform:
 *
 *   kernel      the console shows output
 *   ssh         the node answers with its pinned host key and runs a command
 *   first-boot  its rendered cloud-config or Ignition finished, without errors
 *   secrets     its PKI (or only the start signal) is installed over that connection
 *
 * Every wait also watches the node's console (FirstBootWatch), so a first boot that failed ends
 * the wait within a poll, and every failure names the node and shows its console's last lines.
 */
import * as fs from 'node:fs';
import { installScript, nodePkiFiles, type ClusterPki } from '../cluster/pki';
import { nodeSshTarget, type ClusterRecord, type NodeRecord } from '../cluster/store';
import { PATHS } from '../config/node-files';
import type { ConfigFormat } from '../config/spec';
import { FlotillaError } from '../errors';
import { connectWhenReady, type NodeConnection } from '../ssh';
import { sleep } from '../util/async';
import { FirstBootFailedError, type FirstBootWatch } from './console';

export interface BootingNode {
  record: ClusterRecord;
  node: NodeRecord;
  /** The whole bring-up's deadline (epoch ms). */
  deadline: number;
  boot: FirstBootWatch;
  /** Whether the node's VM is still running (the platform knows). */
  running: () => boolean;
  /** The cluster's client key, if the caller has it read already. */
  privateKey?: string;
}

function consoleTail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no console output)';
  }
}

/** A node failure as every one should read: the node, what failed and why, its console log named and its tail shown. */
export function nodeFailure(node: Pick<NodeRecord, 'name' | 'consoleLog'>, what: string, cause?: unknown, code: 'external' | 'timeout' = 'external'): FlotillaError {
  const why = cause ? `: ${(cause as Error).message}` : '';
  return new FlotillaError(code, `node ${node.name}: ${what}${why}\nconsole log: ${node.consoleLog}\n--- last lines ---\n${consoleTail(node.consoleLog)}`, [], cause ? { cause } : undefined);
}

/** Waits until the node's console shows output. */
export async function waitKernel(b: BootingNode): Promise<void> {
  const log = b.node.consoleLog;
  while (!(fs.existsSync(log) && fs.statSync(log).size > 0)) {
    const failed = b.boot.failure();
    if (failed) throw failed;
    if (!b.running()) throw nodeFailure(b.node, 'its VM exited before the kernel printed anything');
    if (Date.now() > b.deadline) throw nodeFailure(b.node, 'no console output', undefined, 'timeout');
    await sleep(100);
  }
}

/** Waits for SSH with the pinned host key; returns the open connection (the caller closes it). */
export async function waitSsh(b: BootingNode): Promise<NodeConnection> {
  try {
    const { connection } = await connectWhenReady(nodeSshTarget(b.record, b.node, b.privateKey), b.deadline, {
      // The image reports on its console when sshd listens and the uplink has its address.
      readyHint: () => b.boot.saw(b.node.name, 'ssh'),
      abort: () => b.boot.failure() ?? (b.running() ? undefined : `its VM is not running (see ${b.node.consoleLog})`),
    });
    return connection;
  } catch (err) {
    if (FirstBootFailedError.is(err)) throw err;
    throw nodeFailure(b.node, 'never answered SSH with its pinned host key', err);
  }
}

/** The file the image's first-boot units create when the rendered config has been applied. */
export function firstBootFlag(format: ConfigFormat): string {
  return format === 'ignition' ? '/var/lib/flotilla/ignition.done' : '/var/lib/cloud/instance/boot-finished';
}

/** Waits until the node's first-boot config finished; cloud-init's own errors fail it. */
export async function waitFirstBoot(b: BootingNode, conn: NodeConnection): Promise<void> {
  const flag = firstBootFlag(b.record.format);
  const left = Math.max(10_000, b.deadline - Date.now());
  const wait = await b.boot.guard(conn.exec(`for i in $(seq ${Math.ceil(left / 500)}); do [ -e ${flag} ] && break; sleep 0.5; done; test -e ${flag}`, { timeoutMs: left + 10_000, label: 'the wait for first boot' }));
  if (wait.code !== 0) throw nodeFailure(b.node, `first-boot config did not finish (${flag} missing)`, undefined, 'timeout');
  if (b.record.format !== 'cloud-config') return;
  const res = await conn.exec('cat /run/cloud-init/result.json', { timeoutMs: 30_000 });
  let errors: string[];
  try {
    errors = (JSON.parse(res.stdout) as { v1?: { errors?: string[] } }).v1?.errors ?? [];
  } catch {
    errors = [`unreadable /run/cloud-init/result.json: ${res.stderr.trim()}`];
  }
  if (errors.length) throw nodeFailure(b.node, `cloud-init reported errors: ${errors.join('; ')}`);
}

/**
 * Installs the node's PKI as root (fed on stdin: no secret reaches a command line) and creates
 * the ready file last, which starts etcd and the agent; without TLS, only the ready file.
 */
export async function deliverSecrets(b: Pick<BootingNode, 'node'>, conn: NodeConnection, pki: ClusterPki | undefined): Promise<void> {
  const script = pki ? installScript(nodePkiFiles(pki, b.node.name), PATHS.pkiReady) : `set -eu\nmkdir -p ${PATHS.pkiDir}\ntouch ${PATHS.pkiReady}\n`;
  const r = await conn.exec('sh -s', { sudo: true, stdin: script, timeoutMs: 60_000, label: 'the secrets script' }).catch((err: unknown) => {
    throw nodeFailure(b.node, 'secret delivery failed', err);
  });
  if (r.code !== 0) throw nodeFailure(b.node, `secret delivery failed (exit ${r.code}): ${(r.stderr.trim() || r.stdout.trim()).split('\n').slice(-3).join(' | ')}`);
}
