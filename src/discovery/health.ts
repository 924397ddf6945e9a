/**
 * The announcer's health probe, run where the service runs: tcp = a connection is accepted;
 * http = GET path answers 2xx or 3xx. Stricter than the verify suite (status below 500),
 * so whatever an announcer keeps announced also passes `flotilla verify --suite discovery`.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import type { Endpoint } from './endpoint';

/** Resolves undefined when healthy, else why not. Never rejects. */
export function probeEndpoint(ep: Endpoint, timeoutMs: number): Promise<string | undefined> {
  return ep.protocol === 'http' ? probeHttp(ep, timeoutMs) : probeTcp(ep, timeoutMs);
}

function probeTcp(ep: Endpoint, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: ep.host, port: ep.port });
    const timer = setTimeout(() => finish(`tcp ${ep.host}:${ep.port}: no connection within ${timeoutMs} ms`), timeoutMs);
    function finish(result: string | undefined): void {
      clearTimeout(timer);
      sock.destroy();
      resolve(result);
    }
    sock.once('connect', () => finish(undefined));
    sock.once('error', (err) => finish(`tcp ${ep.host}:${ep.port}: ${err.message}`));
  });
}

function probeHttp(ep: Endpoint, timeoutMs: number): Promise<string | undefined> {
  const url = `http://${net.isIP(ep.host) === 6 ? `[${ep.host}]` : ep.host}:${ep.port}${ep.path}`;
  return new Promise((resolve) => {
    let done = false;
    const finish = (result: string | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      resolve(result);
    };
    const req = http.get({ host: ep.host, port: ep.port, path: ep.path, agent: false, headers: { connection: 'close' } }, (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      finish(status >= 200 && status < 400 ? undefined : `GET ${url} answered ${status}`);
    });
    const timer = setTimeout(() => finish(`GET ${url}: no answer within ${timeoutMs} ms`), timeoutMs);
    req.once('error', (err) => finish(`GET ${url}: ${err.message}`));
  });
}
