/**
 * The `discovery` suite: services announced in etcd are present and their endpoints answer.
 *
 * Key layout (src/discovery; what `flotilla announce` writes, or a unit's ExecStartPost with etcdctl):
 *
 *   <discovery prefix>/<service>/<machine or instance>  →  {"host": "10.99.0.12", "port": 8080,
 *                                                            "protocol": "tcp" | "http", "path": "/health"}
 *
 * The prefix defaults to `<registry prefix>services/` (`/flotilla/<cluster>/services/`).
 * `protocol` defaults to tcp (a connection is accepted); http means GET `path` (default /)
 * answers with a status below 500. Probes run from a node, through its SSH connection
 * (direct-tcpip), so cluster-internal addresses work even when the host cannot route there:
 * from the node the instance's key names (machine ID or node name), else the first node.
 */
import * as http from 'node:http';
import { parseAnnouncements, type ServiceInstance } from '../../discovery/endpoint';
import type { VerifyCluster } from '../cluster';
import { CheckFailed, CheckSkipped, expect, type Check, type CheckContext } from '../types';

export type { ServiceInstance };
/** The discovery module's parser (src/discovery/endpoint.ts): one schema for announcers and verify. */
export { parseAnnouncements };

async function announcements(cluster: VerifyCluster): Promise<{ instances: ServiceInstance[]; problems: string[] }> {
  const prefix = cluster.inventory.discovery.prefix;
  const etcd = await cluster.etcd();
  const kvs = await etcd.getAll().prefix(prefix).strings();
  return parseAnnouncements(prefix, kvs);
}

/** Which node probes an instance: the one the instance key names (node name, machine ID or address), else the first reachable. */
function prober(cluster: VerifyCluster, inst: ServiceInstance): string {
  const byKey = cluster.nodes.find((n) => n.name === inst.instance || n.machineId === inst.instance || n.address === inst.host);
  if (byKey) return byKey.name;
  for (const n of cluster.nodes) {
    try {
      cluster.conn(n);
      return n.name;
    } catch {
      /* next */
    }
  }
  return cluster.nodes[0]!.name;
}

async function probe(cluster: VerifyCluster, inst: ServiceInstance, ctx: CheckContext): Promise<string | undefined> {
  const node = prober(cluster, inst);
  const timeout = Math.max(500, Math.min(5000, ctx.deadline - Date.now()));
  let ch;
  try {
    ch = await cluster.conn(node).connectTcp(inst.host, inst.port, timeout);
  } catch (err) {
    return `${inst.service}/${inst.instance} ${inst.host}:${inst.port} (probed from ${node}): ${(err as Error).message}`;
  }
  if (inst.protocol === 'tcp') {
    ch.close();
    return undefined;
  }
  const channel = ch;
  return new Promise<string | undefined>((resolve) => {
    const req = http.request({ host: inst.host, port: inst.port, path: inst.path, method: 'GET', createConnection: () => channel as never, timeout, headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => {
        channel.close();
        resolve((res.statusCode ?? 0) < 500 ? undefined : `${inst.service}/${inst.instance} http://${inst.host}:${inst.port}${inst.path} answered ${res.statusCode}`);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeout} ms`)));
    req.on('error', (e) => {
      channel.close();
      resolve(`${inst.service}/${inst.instance} http://${inst.host}:${inst.port}${inst.path}: ${e.message}`);
    });
    req.end();
  });
}

export function discoverySuite(cluster: VerifyCluster): Check[] {
  const suite = 'discovery';
  const expected = cluster.inventory.discovery.services;
  return [
    {
      suite,
      id: 'discovery.announced',
      name: 'expected services announced in etcd',
      retry: true,
      run: async () => {
        const { instances, problems } = await announcements(cluster);
        const names = new Set(instances.map((i) => i.service));
        const missing = expected.filter((s) => !names.has(s));
        if (instances.length === 0 && expected.length === 0 && problems.length === 0) throw new CheckSkipped(`no services announced under ${cluster.inventory.discovery.prefix} and none expected`);
        expect(missing.length === 0 && problems.length === 0, [...(missing.length ? [`not announced: ${missing.join(', ')}`] : []), ...problems].join('; '));
        return `${names.size} services, ${instances.length} instances announced`;
      },
    },
    {
      suite,
      id: 'discovery.endpoints',
      name: 'announced endpoints answer',
      retry: true,
      run: async (ctx) => {
        const { instances } = await announcements(cluster);
        if (instances.length === 0) throw new CheckSkipped('no services announced');
        const failures = (await Promise.all(instances.map((i) => probe(cluster, i, ctx)))).filter((x): x is string => x !== undefined);
        if (failures.length) throw new CheckFailed(failures.join('; '));
        return `${instances.length} endpoints answer`;
      },
    },
  ];
}
