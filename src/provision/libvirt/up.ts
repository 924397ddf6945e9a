/**
 * `flotilla up --platform libvirt`: the flow of src/provision/up.ts (render, SSH with pinned
 * host keys, first boot, PKI delivery, etcd, agents; the same cluster record, so `status`, `ssh`,
 * `units --cluster`, `verify --cluster` and `down` work), with every node a domain that Flotilla's
 * driver (driver.ts) defines on the system libvirtd.
 *
 * Networking stays on 127.0.0.1 of this host (the project's network rule), so no namespace, no
 * libvirt network and no bridge are needed: SSH through QEMU user-mode forwards
 * 127.0.0.1:(sshPortBase + i) -> guest:22 (restrict=on), and the cluster L2 as the unicast UDP
 * star of domain-xml.ts (node 1's QEMU hub, one 127.0.0.1 link per other node).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../../errors';
import { clusterDir } from '../../cluster/store';
import { upCluster, type LaunchedNode, type Launcher, type UpOptions, type UpResult } from '../up';
import { readRecord } from '../../cluster/store';
import { clusterLinks, defaultPorts, domainName } from './domain-xml';
import { defineAndStart, destroy, firstBootDocs, libvirtDir, libvirtPidFile, list, nodeImageOf, type LibvirtNodeDesc } from './driver';
import { saveLibvirtNode } from './replace-node';
import { DEFAULT_URI, virsh } from './virsh';

export interface LibvirtUpOptions extends UpOptions {
  /** libvirt connection (default qemu:///system). */
  uri?: string;
  /** First 127.0.0.1 TCP port for SSH forwards (default derived from the cluster name). */
  sshPortBase?: number;
  /** First 127.0.0.1 UDP port of the cluster L2 links (default derived from the cluster name). */
  linkPortBase?: number;
}

/** Fails with what to do when libvirtd does not answer on `uri`. */
export async function checkLibvirtd(uri: string): Promise<void> {
  try {
    await virsh(['version'], { uri, timeoutMs: 20_000 });
  } catch (err) {
    if (FlotillaError.is(err) && err.code === 'missing-tool') throw err;
    throw new FlotillaError(
      'external',
      `libvirtd does not answer on ${uri}: ${(err as Error).message}\nStart it (as root: virtlogd -d; libvirtd -d). Flotilla's domains need no libvirt network: do not start 'default'.`,
      [],
      { cause: err },
    );
  }
}

export function libvirtLauncher(o: Pick<LibvirtUpOptions, 'uri' | 'sshPortBase' | 'linkPortBase'> = {}): Launcher {
  const uri = o.uri ?? DEFAULT_URI;
  return {
    platform: 'libvirt',
    preflight: () => checkLibvirtd(uri),
    async launch({ spec, rendered, image, accel, boot, progress }) {
      if (boot === 'snapshot') progress({ phase: 'launch', state: 'info', detail: 'snapshot boot is not implemented for libvirt yet: its domains boot fresh' });
      const left = await list({ cluster: spec.name, uri });
      if (left.length > 0) {
        throw new FlotillaError('conflict', `cluster ${spec.name} already has libvirt domains (${left.map((d) => d.domain).join(', ')}); run 'flotilla down --platform libvirt --name ${spec.name}' first`);
      }
      const ports = defaultPorts(spec.name);
      const sshPortBase = o.sshPortBase ?? ports.sshPortBase;
      const links = clusterLinks(spec.nodes.length, o.linkPortBase ?? ports.linkPortBase);
      const descs: LibvirtNodeDesc[] = spec.nodes.map((n, i) => {
        const r = rendered.find((x) => x.node === n.name);
        if (!r) throw new FlotillaError('internal', `node ${n.name} was not rendered`);
        return {
          cluster: spec.name,
          node: n.name,
          uri,
          image: nodeImageOf(image),
          accel,
          cpus: Math.min(2, n.cpus),
          memoryMiB: n.memoryMiB,
          firstBoot: firstBootDocs(r),
          sshPort: sshPortBase + i,
          primaryMac: n.primaryMac,
          cluster0: { mac: n.clusterMac, ...links[i]! },
        };
      });
      const nodes: LaunchedNode[] = [];
      try {
        for (const d of descs) {
          const steps: string[] = [];
          const t0 = Date.now();
          const info = await defineAndStart(d, (step, s) => steps.push(`${step} ${s.toFixed(2)}`));
          // How this domain was made, for `flotilla replace` to make its successor the same way.
          saveLibvirtNode(d);
          progress({ phase: 'launch', state: 'info', seconds: (Date.now() - t0) / 1000, detail: `${d.node}: domain ${info.domain} ${info.state} (${steps.join(', ')} s)` });
          nodes.push({ name: d.node, sshPort: d.sshPort, consoleLog: info.consoleLog, pidFile: libvirtPidFile(info.domain), domain: info.domain, launchedAt: info.startedAt ?? Date.now() });
        }
      } catch (err) {
        // Nothing half-made: the nodes started so far go again (defineAndStart undid its own).
        for (const n of nodes) await destroy(spec.name, n.name, { uri, graceMs: 0 }).catch(() => undefined);
        // As the local launcher does: no record was written, so keys and secrets go too.
        fs.rmSync(path.join(libvirtDir(), spec.name), { recursive: true, force: true });
        fs.rmSync(clusterDir(spec.name), { recursive: true, force: true });
        throw err;
      }
      const type = accel === 'kvm' ? 'kvm' : 'qemu (TCG)';
      return {
        nodes,
        detail: `${nodes.length} libvirt domains, type ${type}, on ${uri}; SSH on 127.0.0.1:${sshPortBase}-${sshPortBase + nodes.length - 1}; cluster L2: UDP links on 127.0.0.1`,
      };
    },
  };
}

export function upLibvirt(opts: LibvirtUpOptions): Promise<UpResult> {
  return upCluster(opts, libvirtLauncher(opts));
}

/**
 * Removes a libvirt cluster: every domain of it libvirt knows (by Flotilla's metadata, so also
 * those of an `up` that died before writing its record), their volumes, pools and files, and the
 * cluster's record, keys and secrets. Safe to repeat.
 */
export async function downLibvirt(name: string, o: { uri?: string } = {}): Promise<{ stopped: string[]; existed: boolean }> {
  const uri = o.uri ?? DEFAULT_URI;
  domainName(name, 'x'); // a cluster name that is not a label cannot have domains, nor a safe path
  const record = readRecord(name);
  if (record && record.platform !== 'libvirt') throw new FlotillaError('conflict', `cluster ${name} runs on platform ${record.platform}, not libvirt`);
  const dir = clusterDir(name);
  const files = path.join(libvirtDir(), name);
  const existedOnDisk = fs.existsSync(dir) || fs.existsSync(files);
  await checkLibvirtd(uri);
  const nodes = new Set([...(record?.nodes.map((n) => n.name) ?? []), ...(await list({ cluster: name, uri })).map((d) => d.node)]);
  const stopped: string[] = [];
  for (const node of nodes) {
    // Hard power-off: the node's disk goes away with it, nothing on it is kept.
    const r = await destroy(name, node, { uri, graceMs: 0 });
    if (r.domain) stopped.push(node);
  }
  fs.rmSync(files, { recursive: true, force: true });
  fs.rmSync(dir, { recursive: true, force: true });
  return { stopped, existed: existedOnDisk || nodes.size > 0 };
}
