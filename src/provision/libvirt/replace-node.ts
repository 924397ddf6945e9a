/**
 * The libvirt platform's part of `flotilla replace`: undefine one node's domain with its volumes
 * and pool, then define and start a fresh domain for it through the driver — a new overlay on
 * the chosen image, the newly rendered first boot, the same SSH forward, MACs and cluster L2
 * links. What a node's domain was made with is kept beside the record (`libvirt.json`, written
 * by `up`), so the new domain is wired exactly like the old one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import { writeFileAtomic } from '../../util/fs';
import { nodeDir } from '../../cluster/store';
import { getImage } from '../image';
import type { NodeMachinery } from '../replace';
import { defineAndStart, destroy, firstBootDocs, libvirtPidFile, nodeImageOf, type LibvirtNodeDesc } from './driver';

/** A node's domain description without its first-boot documents (those hold secrets and change per boot). */
export type SavedLibvirtNode = Omit<LibvirtNodeDesc, 'firstBoot'>;

export function savedNodeFile(cluster: string, node: string): string {
  return path.join(nodeDir(cluster, node), 'libvirt.json');
}

export function saveLibvirtNode(desc: LibvirtNodeDesc): void {
  const { firstBoot: _firstBoot, ...saved } = desc;
  fs.mkdirSync(path.dirname(savedNodeFile(desc.cluster, desc.node)), { recursive: true, mode: 0o700 });
  writeFileAtomic(savedNodeFile(desc.cluster, desc.node), `${JSON.stringify(saved, null, 2)}\n`, 0o600);
}

export function readLibvirtNode(cluster: string, node: string): SavedLibvirtNode {
  const file = savedNodeFile(cluster, node);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new FlotillaError('not-found', `cluster ${cluster}: ${file} is missing (the cluster was brought up by an older Flotilla, which did not keep how node ${node}'s domain was made); replace needs it`);
    }
    throw err;
  }
  let saved: SavedLibvirtNode;
  try {
    saved = JSON.parse(text) as SavedLibvirtNode;
  } catch (err) {
    throw new FlotillaError('invalid-input', `${file}: not JSON (${(err as Error).message}); replace needs how node ${node}'s domain was made`);
  }
  if (saved.cluster !== cluster || saved.node !== node) throw new FlotillaError('invalid-input', `${file}: describes ${saved.cluster}/${saved.node}, not ${cluster}/${node}`);
  return saved;
}

export const libvirtMachinery: NodeMachinery = {
  platform: 'libvirt',

  currentImage(record, node) {
    const saved = readLibvirtNode(record.name, node.name);
    // The image cache keeps each image in a directory named by its id (kernel beside the disk).
    return getImage(path.basename(path.dirname(saved.image.kernel)));
  },

  async destroy(record, node) {
    const saved = readLibvirtNode(record.name, node.name);
    const r = await destroy(record.name, node.name, { ...(saved.uri ? { uri: saved.uri } : {}), ...(saved.stateDir ? { stateDir: saved.stateDir } : {}), graceMs: 3000 });
    return { stopped: r.domain };
  },

  async launch({ record, node, spec, rendered, image, accel }) {
    const saved = readLibvirtNode(record.name, node.name);
    const n = spec.nodes.find((x) => x.name === node.name);
    if (!n) throw new FlotillaError('internal', `node ${node.name} is not in the spec`);
    const desc: LibvirtNodeDesc = {
      ...saved,
      image: nodeImageOf(image),
      accel,
      cpus: Math.min(2, n.cpus),
      memoryMiB: n.memoryMiB,
      // A new machine: a new domain UUID, so the guest's machine ID (derived from it) is new too.
      generation: (saved.generation ?? 0) + 1,
      firstBoot: firstBootDocs(rendered),
    };
    const info = await defineAndStart(desc);
    saveLibvirtNode(desc);
    return { launchedAt: info.startedAt ?? Date.now(), pidFile: libvirtPidFile(info.domain), consoleLog: info.consoleLog };
  },
};
