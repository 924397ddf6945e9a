/**
 * Reading announcements: a listing, and a watch that reports instances appearing, changing
 * and disappearing. The watch lists first and then follows etcd from the next revision; if
 * the watch breaks (e.g. its revision was compacted), it lists again and reports the
 * difference, so the caller's picture never misses a change.
 */
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { FlotillaError } from '../errors';
import { parseAnnouncements, type AnnouncedInstance } from './endpoint';
import { serviceKeyPrefix } from './keys';

export interface ServiceListing {
  instances: AnnouncedInstance[];
  /** Malformed entries under the prefix, each naming its key. */
  problems: string[];
  /** The etcd revision the listing was read at. */
  revision: string;
}

function raw(kvs: readonly IKeyValue[]) {
  return kvs.map((kv) => ({ key: kv.key.toString(), value: kv.value.toString(), lease: kv.lease, modRevision: kv.mod_revision }));
}

/** Every instance under `prefix`, or of one service. */
export async function listServices(client: Etcd3, prefix: string, service?: string): Promise<ServiceListing> {
  const under = service === undefined ? prefix : serviceKeyPrefix(prefix, service);
  let res;
  try {
    res = await client.getAll().prefix(under).exec();
  } catch (err) {
    throw new FlotillaError('external', `listing ${under}: ${(err as Error).message}`, [], { cause: err });
  }
  return { ...parseAnnouncements(prefix, raw(res.kvs)), revision: res.header.revision };
}

export type ServiceEvent =
  | { type: 'up'; instance: AnnouncedInstance }
  | { type: 'down'; service: string; instance: string; key: string }
  /** A malformed entry (the message names its key). */
  | { type: 'problem'; message: string };

export interface ServiceWatch {
  close(): Promise<void>;
}

/**
 * Calls `onEvent` with an `up` for every instance present now, then for every change;
 * `onError` hears about a broken watch (it is re-established by listing again).
 */
export async function watchServices(client: Etcd3, prefix: string, service: string | undefined, onEvent: (e: ServiceEvent) => void, onError: (err: Error) => void = () => undefined): Promise<ServiceWatch> {
  const under = service === undefined ? prefix : serviceKeyPrefix(prefix, service);
  const known = new Map<string, AnnouncedInstance>();
  let watcher: Watcher | undefined;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;

  const apply = (kvs: readonly IKeyValue[]): void => {
    for (const kv of raw(kvs)) {
      const { instances, problems } = parseAnnouncements(prefix, [kv]);
      const inst = instances[0];
      if (!inst) {
        // A record overwritten with junk is gone as far as a reader can tell.
        remove(kv.key);
        for (const message of problems) onEvent({ type: 'problem', message });
        continue;
      }
      const before = known.get(inst.key);
      known.set(inst.key, inst);
      if (!before || before.modRevision !== inst.modRevision) onEvent({ type: 'up', instance: inst });
    }
  };
  const remove = (key: string): void => {
    const before = known.get(key);
    if (!before) return;
    known.delete(key);
    onEvent({ type: 'down', service: before.service, instance: before.instance, key });
  };

  const start = async (): Promise<void> => {
    const listing = await client.getAll().prefix(under).exec();
    if (closed) return;
    const present = new Set(listing.kvs.map((kv) => kv.key.toString()));
    for (const key of [...known.keys()]) if (!present.has(key)) remove(key);
    apply(listing.kvs);
    const w = await client.watch().prefix(under).startRevision(String(BigInt(listing.header.revision) + 1n)).create();
    if (closed) {
      await w.cancel().catch(() => undefined);
      return;
    }
    watcher = w;
    w.on('put', (kv: IKeyValue) => apply([kv]));
    w.on('delete', (kv: IKeyValue) => remove(kv.key.toString()));
    w.on('error', (err: Error) => {
      if (closed || watcher !== w) return;
      watcher = undefined;
      w.removeAllListeners();
      onError(new FlotillaError('external', `watch on ${under} ended (${err.message}); listing again`, [], { cause: err }));
      restart();
    });
  };
  const restart = (): void => {
    retry = setTimeout(() => {
      start().catch((err: Error) => {
        onError(err);
        restart();
      });
    }, 500);
  };

  try {
    await start();
  } catch (err) {
    throw new FlotillaError('external', `watching ${under}: ${(err as Error).message}`, [], { cause: err });
  }
  return {
    async close() {
      closed = true;
      if (retry) clearTimeout(retry);
      const w = watcher;
      watcher = undefined;
      if (w) await w.cancel().catch(() => undefined);
    },
  };
}
