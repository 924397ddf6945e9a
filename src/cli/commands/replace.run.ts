/** `flotilla replace`: the implementation, loaded when the command runs (declaration: replace.ts). */
import { FlotillaError } from '../../errors';
import { loadSpecFile } from '../../config/load';
import { readRecord, resolveClusterName } from '../../cluster/store';
import { localMachinery } from '../../provision/local/replace-node';
import { libvirtMachinery } from '../../provision/libvirt/replace-node';
import { replaceNodes, type ReplaceEvent } from '../../provision/replace';
import { choiceOpt, intOpt, stringOpt, type CliIO, type CommandRun } from '../command';
import { BOOT_MODES } from './constants';
import { EXIT_OK } from '../exit-codes';
import { table } from '../format';
import { verifyReplaced } from '../../verify/verify';

function progressPrinter(io: CliIO): (ev: ReplaceEvent) => void {
  return (ev) => {
    const who = ev.node ? `${ev.node}: ` : '';
    if (ev.state === 'start') io.err(`==> ${who}${ev.step}\n`);
    else if (ev.state === 'done') io.err(`    ${who}${ev.step} done in ${ev.seconds!.toFixed(1)} s${ev.detail ? `: ${ev.detail}` : ''}\n`);
    else io.err(`    ${who}${ev.detail ?? ''}${ev.seconds !== undefined ? ` (${ev.seconds.toFixed(1)} s)` : ''}\n`);
  };
}

/** Parses --nodes a,b,c: names only, no empties, no repeats. */
export function parseNodeList(text: string): string[] {
  const names = text.split(',').map((n) => n.trim());
  const bad = names.filter((n) => !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(n));
  if (bad.length) throw new FlotillaError('usage', `flotilla replace: --nodes: not a node name: ${bad.map((b) => JSON.stringify(b)).join(', ')}`);
  if (new Set(names).size !== names.length) throw new FlotillaError('usage', 'flotilla replace: --nodes: a node is named twice');
  return names;
}

export const run: CommandRun = async (p, io) => {
  const cmd = 'replace';
  const name = resolveClusterName(stringOpt(p, 'name', cmd));
  const nodesText = stringOpt(p, 'nodes', cmd);
  if (nodesText !== undefined && p.values.all) throw new FlotillaError('usage', 'flotilla replace: give --nodes or --all, not both');
  if (nodesText === undefined && !p.values.all) throw new FlotillaError('usage', 'flotilla replace: say which nodes: --nodes node1,node2 or --all');
  const nodes = nodesText !== undefined ? parseNodeList(nodesText) : undefined;
  const record = readRecord(name);
  if (!record) throw new FlotillaError('not-found', `no cluster named ${name} (see 'flotilla ls')`);
  const specPath = stringOpt(p, 'spec', cmd);
  const drainSeconds = intOpt(p, 'drain-timeout', cmd, 10, 3600);
  const boot = choiceOpt(p, 'boot', cmd, BOOT_MODES);
  const t0 = Date.now();
  const r = await replaceNodes(
    {
      name,
      ...(specPath ? { spec: loadSpecFile(specPath) } : {}),
      ...(nodes ? { nodes } : {}),
      image: choiceOpt(p, 'image', cmd, ['current', 'rebuild'] as const) ?? 'current',
      ...(boot ? { boot } : {}),
      ...(p.values.verify === true ? { verify: verifyReplaced } : {}),
      ...(drainSeconds ? { drainTimeoutMs: drainSeconds * 1000 } : {}),
      progress: progressPrinter(io),
    },
    record.platform === 'libvirt' ? libvirtMachinery : localMachinery,
  );
  if (p.values.json) {
    io.out(`${JSON.stringify({ cluster: name, order: r.order, replaced: r.replaced, seconds: (Date.now() - t0) / 1000 }, null, 2)}\n`);
    return EXIT_OK;
  }
  io.out(`Cluster ${name}: replaced ${r.replaced.length} node${r.replaced.length === 1 ? '' : 's'} in ${((Date.now() - t0) / 1000).toFixed(1)} s (order ${r.order.join(' -> ')}).\n\n`);
  io.out(
    table(
      ['NODE', 'SECONDS', 'ETCD MEMBER', 'MACHINE', 'MOVED UNITS', 'IMAGE'],
      r.replaced.map((x) => [
        x.node,
        x.seconds.toFixed(1),
        x.oldMemberId || x.newMemberId ? `${x.oldMemberId ?? '-'} -> ${x.newMemberId ?? '-'}` : '-',
        x.oldMachineId || x.newMachineId ? `${x.oldMachineId?.slice(0, 8) ?? '-'} -> ${x.newMachineId?.slice(0, 8) ?? '-'}` : '-',
        x.movedUnits.join(',') || '-',
        x.image.slice(0, 12),
      ]),
    ),
  );
  io.out('\nHost keys were kept (same node identity); etcd certificates were reused (same name and address).\n');
  return EXIT_OK;
};
