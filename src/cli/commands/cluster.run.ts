/**
 * `flotilla up|down|ls|status|ssh`: the implementations, loaded when a command runs
 * (declarations: cluster.ts), and the spec from flags that `chaos` and `smoke` share.
 */
import { spawnSync } from 'node:child_process';
import { generateKeyPair } from '../../ssh/keys';
import { opensshArgv } from '../../ssh/openssh';
import { FlotillaError } from '../../errors';
import { loadSpecFile } from '../../config/load';
import { CONFIG_FORMATS } from '../../config/spec';
import { nodeRunning, connectRecord, type PhaseEvent } from '../../provision/up';
import { downLocal, upLocal } from '../../provision/local/up';
import { listClusters, readRecord, resolveClusterName, PHASES, type ClusterRecord } from '../../cluster/store';
import { defaultLocalSpec } from '../../provision/local/spec-default';
import { downLibvirt, upLibvirt } from '../../provision/libvirt/up';
import { choiceOpt, intOpt, stringOpt, type CliIO, type CommandRun, type ParsedCommand } from '../command';
import { BOOT_MODES } from './constants';
import type { ResolvedSpec } from '../../config/spec';
import { EXIT_NO_STATUS, EXIT_OK, exitStatus } from '../exit-codes';
import { table } from '../format';

function fmt(s: number | undefined): string {
  return s === undefined ? '-' : `${s.toFixed(1)}s`;
}

function summary(r: ClusterRecord): string {
  const lines: string[] = [];
  const boot = r.boot?.mode === 'snapshot' ? ', restored from a snapshot template' : '';
  lines.push(`Cluster ${r.name}: ${r.nodes.length} nodes (${r.format}, ${r.platform === 'libvirt' ? 'libvirt domains, SSH on 127.0.0.1' : `local QEMU, netns ${r.netns}`}${boot})`, '');
  lines.push(
    table(
      ['NODE', 'ADDRESS', 'ROLE', 'MACHINE', 'METADATA'],
      r.nodes.map((n) => [n.name, n.address, n.etcdMember ? 'etcd+fleet' : 'fleet', n.machineId ? `${n.machineId.slice(0, 8)}...` : '-', Object.entries(n.metadata).map(([k, v]) => `${k}=${v}`).join(',') || '-']),
    ).trimEnd(),
  );
  const phases = PHASES.filter((p) => p !== 'image' && p !== 'render');
  lines.push('', 'Timeline (seconds after launch):');
  lines.push(table(['NODE', ...phases.map((p) => p.toUpperCase()), 'CPU-S'], r.nodes.map((n) => [n.name, ...phases.map((p) => fmt(r.timeline[n.name]?.[p])), fmt(r.cpuSeconds[n.name])])).trimEnd());
  lines.push('', 'Next:');
  lines.push(`  flotilla ssh --name ${r.name} ${r.nodes[0]!.name}                   # log in (pinned host key)`);
  lines.push(`  flotilla ssh --name ${r.name} ${r.nodes[0]!.name} -- etcdctl member list`);
  lines.push(`  flotilla units list-machines --cluster ${r.name}                  # etcd reached through an SSH tunnel`);
  lines.push(`  flotilla units start --cluster ${r.name} examples/units/hello.service`);
  lines.push(`  On a node, etcdctl needs: ETCDCTL_API=3 ETCDCTL_ENDPOINTS=${r.etcdEndpoints.join(',')}${r.tls ? ' ETCDCTL_CACERT=/etc/flotilla/pki/ca.crt ETCDCTL_CERT=/etc/flotilla/pki/client.crt ETCDCTL_KEY=/etc/flotilla/pki/client.key' : ''}`);
  lines.push(`  flotilla down --name ${r.name}`);
  return `${lines.join('\n')}\n`;
}

function progressPrinter(io: CliIO): (ev: PhaseEvent) => void {
  return (ev) => {
    if (ev.state === 'start') io.err(`==> ${ev.phase}\n`);
    else if (ev.state === 'done') io.err(`    ${ev.phase} done in ${ev.seconds!.toFixed(1)} s${ev.detail ? `: ${ev.detail}` : ''}\n`);
    else io.err(`    ${ev.detail ?? ''}${ev.seconds !== undefined ? ` (${ev.seconds.toFixed(1)} s)` : ''}\n`);
  };
}

/** The spec for `up`/`smoke`: --spec FILE (renamed by --name) or --nodes N generic nodes. */
export function localSpecFromFlags(p: ParsedCommand, cmd: string, defaultName: string): ResolvedSpec {
  const specFile = stringOpt(p, 'spec', cmd);
  const n = intOpt(p, 'nodes', cmd, 1, 9);
  if (specFile && n !== undefined) throw new FlotillaError('usage', `flotilla ${cmd}: give --spec or --nodes, not both`);
  const name = stringOpt(p, 'name', cmd);
  if (specFile) {
    const spec = loadSpecFile(specFile);
    return name ? { ...spec, name } : spec;
  }
  // A throwaway key passes validation; the only key a generic cluster trusts is its own, added by up.
  const spec = defaultLocalSpec(name ?? defaultName, n ?? 3, [generateKeyPair().publicKey]);
  return { ...spec, ssh: { ...spec.ssh, authorizedKeys: [] } };
}

const UP_PLATFORMS = ['local', 'libvirt'] as const;

export const up: CommandRun = async (p, io) => {
  const spec = localSpecFromFlags(p, 'up', 'local');
  const format = choiceOpt(p, 'format', 'up', CONFIG_FORMATS);
  const platform = choiceOpt(p, 'platform', 'up', UP_PLATFORMS) ?? (spec.platform === 'libvirt' ? 'libvirt' : 'local');
  if (spec.platform !== 'local' && spec.platform !== 'libvirt') throw new FlotillaError('usage', `flotilla up: spec platform is ${spec.platform}; up runs local and libvirt clusters (see docs/pulumi.md for ${spec.platform})`);
  const t0 = Date.now();
  const up = platform === 'libvirt' ? upLibvirt : upLocal;
  const boot = choiceOpt(p, 'boot', 'up', BOOT_MODES);
  const { record, already } = await up({ spec: { ...spec, platform }, ...(format ? { format } : {}), ...(boot ? { boot } : {}), progress: progressPrinter(io) });
  if (p.values.json) io.out(`${JSON.stringify({ ...record, already }, null, 2)}\n`);
  else {
    if (already) io.out(`Cluster ${record.name} is already up; nothing changed.\n\n`);
    else io.out(`Cluster ${record.name} is healthy after ${((Date.now() - t0) / 1000).toFixed(1)} s.\n\n`);
    io.out(summary(record));
  }
  return EXIT_OK;
};

export const down: CommandRun = async (p, io) => {
  const name = stringOpt(p, 'name', 'down') ?? resolveClusterName(undefined);
  // The record knows; the flag is for what an interrupted libvirt up left without one.
  const flag = choiceOpt(p, 'platform', 'down', UP_PLATFORMS);
  const platform = readRecord(name)?.platform ?? flag ?? 'local';
  if (flag && flag !== platform) throw new FlotillaError('usage', `flotilla down: cluster ${name} runs on ${platform}, not ${flag}`);
  const r = platform === 'libvirt' ? await downLibvirt(name) : await downLocal(name);
  io.out(r.existed ? `Cluster ${name}: stopped ${r.stopped.length} VM${r.stopped.length === 1 ? '' : 's'} (${r.stopped.join(', ') || 'none running'}); removed its files${platform === 'local' ? ' and namespace' : ', volumes and pools'}.\n` : `Cluster ${name}: nothing to remove.\n`);
  return EXIT_OK;
};

export const ls: CommandRun = async (p, io) => {
  const rows = listClusters().map((n) => {
    const r = readRecord(n)!;
    const up = r.nodes.filter(nodeRunning).length;
    return { name: n, nodes: r.nodes.length, running: up, format: r.format, created: r.createdAt };
  });
  io.out(p.values.json ? `${JSON.stringify(rows, null, 2)}\n` : table(['NAME', 'NODES', 'RUNNING', 'FORMAT', 'CREATED'], rows.map((r) => [r.name, String(r.nodes), String(r.running), r.format, r.created])));
  return EXIT_OK;
};

export const status: CommandRun = async (p, io) => {
  const name = resolveClusterName(stringOpt(p, 'name', 'status'));
  const r = readRecord(name);
  if (!r) throw new FlotillaError('not-found', `no local cluster named ${name}`);
  const nodes = r.nodes.map((n) => ({ name: n.name, address: n.address, running: nodeRunning(n), consoleLog: n.consoleLog }));
  let machines: Array<{ id: string; address: string; metadata: Record<string, string> }> = [];
  let registryError: string | undefined;
  if (nodes.some((n) => n.running)) {
    try {
      const conn = await connectRecord(r);
      try {
        machines = await conn.registry.listMachines();
      } finally {
        await conn.close();
      }
    } catch (err) {
      registryError = (err as Error).message;
    }
  }
  const healthy = nodes.every((n) => n.running) && machines.length === nodes.length;
  if (p.values.json) io.out(`${JSON.stringify({ name, healthy, nodes, machines, registryError }, null, 2)}\n`);
  else {
    io.out(table(['NODE', 'ADDRESS', 'QEMU', 'AGENT'], nodes.map((n) => [n.name, n.address, n.running ? 'running' : 'stopped', machines.some((m) => m.address === n.address) ? 'registered' : '-'])));
    io.out(`\n${healthy ? 'healthy' : 'NOT healthy'}: ${nodes.filter((n) => n.running).length}/${nodes.length} VMs running, ${machines.length} machines registered${registryError ? ` (etcd: ${registryError})` : ''}\n`);
  }
  // Not healthy: a VM or its agent (or etcd) failed.
  return healthy ? EXIT_OK : exitStatus('external');
};

export const ssh: CommandRun = async (p) => {
  const name = resolveClusterName(stringOpt(p, 'name', 'ssh'));
  const r = readRecord(name);
  if (!r) throw new FlotillaError('not-found', `no local cluster named ${name}`);
  const nodeName = p.positionals[0];
  if (!nodeName) throw new FlotillaError('usage', `flotilla ssh: give a node (${r.nodes.map((n) => n.name).join(', ')})`);
  const node = r.nodes.find((n) => n.name === nodeName);
  if (!node) throw new FlotillaError('not-found', `cluster ${name} has no node ${nodeName} (nodes: ${r.nodes.map((n) => n.name).join(', ')})`);
  const argv = opensshArgv({ host: '127.0.0.1', port: node.sshPort, user: r.user, keyFile: r.sshKeyFile, knownHostsFile: r.knownHostsFile, ...(r.netns ? { netns: r.netns } : {}) }, p.rest);
  const res = spawnSync(argv[0]!, argv.slice(1), { stdio: 'inherit' });
  if (res.error) throw new FlotillaError('missing-tool', `cannot run ${argv[0]}: ${res.error.message}`);
  // ssh's own status: the remote command's, or 255 when ssh failed.
  return res.status ?? EXIT_NO_STATUS;
};
