/**
 * A TCP tunnel through an SSH connection: a listener on 127.0.0.1 (this namespace) whose
 * connections are forwarded to host:port as seen from the node (fleetctl's --tunnel).
 * Used to reach etcd on a node of a cluster whose network is inside its own namespace.
 */
import * as net from 'node:net';
import type { Client } from 'ssh2';

export interface Tunnel {
  /** Local port on 127.0.0.1. */
  port: number;
  close(): Promise<void>;
}

export async function openTunnel(client: Client, remoteHost: string, remotePort: number): Promise<Tunnel> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((local) => {
    sockets.add(local);
    local.on('close', () => sockets.delete(local));
    local.on('error', () => local.destroy());
    client.forwardOut('127.0.0.1', 0, remoteHost, remotePort, (err, remote) => {
      if (err) {
        local.destroy();
        return;
      }
      remote.on('error', () => local.destroy());
      local.pipe(remote).pipe(local);
      local.on('close', () => remote.destroy());
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
