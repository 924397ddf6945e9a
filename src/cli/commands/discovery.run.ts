/** `flotilla announce` (on the host) and `flotilla services`: the implementations, loaded when a command runs (declarations: discovery.ts). */
import { FlotillaError } from '../../errors';
import { endpointUrl, type AnnouncedInstance } from '../../discovery/endpoint';
import { checkName, servicesPrefix } from '../../discovery/keys';
import { listServices, watchServices, type ServiceEvent } from '../../discovery/services';
import type { CliIO, CommandRun } from '../command';
import { EXIT_OK } from '../exit-codes';
import { table } from '../format';
import { announceRun, connectDiscovery } from './announce.run';
import { connectFromArgs } from './units.run';

function instanceJson(i: AnnouncedInstance) {
  return { service: i.service, instance: i.instance, host: i.host, port: i.port, protocol: i.protocol, ...(i.protocol === 'http' ? { path: i.path } : {}), url: endpointUrl(i), key: i.key, lease: i.lease };
}

function printEvent(io: CliIO, json: boolean, e: ServiceEvent): void {
  if (json) {
    const line = e.type === 'up' ? { event: 'up', ...instanceJson(e.instance) } : e.type === 'down' ? { event: 'down', service: e.service, instance: e.instance, key: e.key } : { event: 'problem', message: e.message };
    io.out(`${JSON.stringify(line)}\n`);
  } else if (e.type === 'up') io.out(`+ ${e.instance.service}/${e.instance.instance} ${endpointUrl(e.instance)}\n`);
  else if (e.type === 'down') io.out(`- ${e.service}/${e.instance}\n`);
  else io.err(`warning: ${e.message}\n`);
}

/** `announce` on the host: connection flags reach local clusters too (through SSH), as for `flotilla units`. */
export const announce: CommandRun = announceRun(connectFromArgs);

export const services: CommandRun = async (p, io) => {
  if (p.positionals.length > 1) throw new FlotillaError('usage', `flotilla services: give at most one SERVICE (got ${p.positionals.join(' ')})`);
  const service = p.positionals[0] === undefined ? undefined : checkName('SERVICE', p.positionals[0], 'usage');
  const json = Boolean(p.values.json);
  const conn = await connectDiscovery(p, 'services', connectFromArgs);
  try {
    const prefix = servicesPrefix(conn.registry.prefix);
    if (p.values.watch) {
      const stop = new Promise<void>((resolve) => {
        process.once('SIGTERM', () => resolve());
        process.once('SIGINT', () => resolve());
      });
      const watch = await watchServices(conn.registry.etcd, prefix, service, (e) => printEvent(io, json, e), (err) => io.err(`warning: ${err.message}\n`));
      await stop;
      await watch.close();
      return EXIT_OK;
    }
    const { instances, problems } = await listServices(conn.registry.etcd, prefix, service);
    if (json) io.out(`${JSON.stringify({ prefix, instances: instances.map(instanceJson), problems }, null, 2)}\n`);
    else {
      for (const m of problems) io.err(`warning: ${m}\n`);
      if (instances.length === 0 && service === undefined) io.err(`no services announced under ${prefix}\n`);
      if (instances.length) io.out(table(['SERVICE', 'INSTANCE', 'ENDPOINT'], instances.map((i) => [i.service, i.instance, endpointUrl(i)])));
    }
    if (service !== undefined && instances.length === 0) throw new FlotillaError('not-found', `no instance of ${service} is announced under ${prefix}`);
    return EXIT_OK;
  } finally {
    await conn.close();
  }
};
