/**
 * Resilient watches (docs/registry.md, "Watches"): list, then watch from the listed
 * revision + 1; deliver each change once, in revision order; after a failure etcd does
 * not resume from, list again and deliver a fresh snapshot. `typedWatch` turns one into a
 * stream of decoded `WatchEvent`s.
 */
import type { IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import { FlotillaError } from '../../errors';
import type { Json } from './codec';
import type { RegistryCore } from './core';
import { buf, keyOf, prefixEnd, warn } from './etcd';
import { sleep } from '../../util/async';
import type { RegistryWatch, WatchEvent, WatchOptions } from './model';

export interface RawHandlers {
  snapshot(kvs: IKeyValue[], revision: string): void;
  event(type: 'put' | 'delete', kv: IKeyValue, revision: string): void;
}

/**
 * List, then watch from the listed revision + 1, so nothing falls between. Each event is
 * delivered once: events at or below the last delivered revision are dropped, and on
 * a reconnect etcd3 is told to resume after the last delivered revision (it would
 * otherwise resume after the last header it saw, which can skip events still queued).
 * When etcd cancels the watch (compaction, or any error etcd3 does not retry), it
 * lists again, delivers a fresh snapshot and watches from there.
 */
export class ResilientWatch {
  private watcher: Watcher | undefined;
  private lastRev = 0n;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = 100;

  constructor(
    private readonly core: RegistryCore,
    private readonly key: string,
    private readonly isPrefix: boolean,
    private readonly h: RawHandlers,
    private readonly onError: (err: Error) => void,
    /** The snapshot handler needs only the revision, not the keys. */
    private readonly revisionOnly = false,
  ) {}

  /** Lists and starts watching; rejects if the first listing fails. */
  async start(): Promise<void> {
    this.core.track(this);
    try {
      await this.listAndWatch();
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** @internal Registry.close() */
  shutdown(): Promise<void> {
    return this.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.core.untrack(this);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const w = this.watcher;
    this.watcher = undefined;
    if (w) {
      await Promise.race([w.cancel().catch(() => undefined), sleep(1000)]);
      w.removeAllListeners();
    }
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.onError(err as Error);
    }
  }

  private async listAndWatch(): Promise<void> {
    // A consumer that wants only the revision (watchAll) lists nothing: the whole prefix,
    // bodies included, can be far beyond a gRPC message; others list in pages.
    const res = this.revisionOnly
      ? await this.core.call(`list ${this.key}`, () => this.core.client.kv.range({ key: buf(this.key), range_end: prefixEnd(this.key), count_only: true }))
      : this.isPrefix
        ? await this.core.rangeAll(`list ${this.key}`, this.key)
        : await this.core.call(`list ${this.key}`, () => this.core.client.kv.range({ key: buf(this.key) }));
    if (this.closed) return;
    this.lastRev = BigInt(res.header.revision);
    this.safely(() => this.h.snapshot(this.revisionOnly ? [] : res.kvs, res.header.revision));
    const builder = this.core.client.watch();
    if (this.isPrefix) builder.prefix(this.key);
    else builder.key(this.key);
    const w = builder.startRevision(String(this.lastRev + 1n)).watcher();
    this.watcher = w;
    w.on('data', (r: IWatchResponse) => this.onData(w, r));
    w.on('disconnected', () => {
      (w.request as { start_revision?: string | number }).start_revision = String(this.lastRev + 1n);
    });
    w.on('error', (err: Error) => this.onWatchError(w, err));
  }

  private onData(w: Watcher, res: IWatchResponse): void {
    if (w !== this.watcher || this.closed) return;
    const floor = this.lastRev;
    let top = floor;
    for (const ev of res.events) {
      const rev = BigInt(ev.kv.mod_revision);
      if (rev <= floor) continue;
      if (rev > top) top = rev;
      const type = ev.type === 'Delete' ? 'delete' : 'put';
      this.safely(() => this.h.event(type, ev.kv, ev.kv.mod_revision));
    }
    this.lastRev = top;
    this.retryDelay = 100;
  }

  private onWatchError(w: Watcher, err: Error): void {
    if (w !== this.watcher || this.closed) return;
    w.removeAllListeners();
    this.watcher = undefined;
    this.onError(new FlotillaError('external', `etcd at ${this.core.endpoints.join(',')}: watch on ${this.key} ended (${err.message.replace(/:\s*$/, '')}); listing again`, [], { cause: err }));
    this.scheduleResync();
  }

  private scheduleResync(): void {
    if (this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.listAndWatch().catch((err: Error) => {
        this.onError(err);
        this.retryDelay = Math.min(this.retryDelay * 2, 2000);
        this.scheduleResync();
      });
    }, this.retryDelay);
  }
}

/** A typed watch over `base`: decoded items, delete ids from `idOf`, malformed values to `opts.onError`. */
export async function typedWatch<T>(
  core: RegistryCore,
  base: string,
  what: string,
  decode: (kv: IKeyValue, o: Json) => T,
  idOf: (key: string) => string,
  cb: (ev: WatchEvent<T>) => void,
  opts: WatchOptions,
): Promise<RegistryWatch> {
  const onError = opts.onError ?? warn;
  const decodeOrReport = (kv: IKeyValue): T | undefined => {
    try {
      return core.decode(kv, what, (o) => decode(kv, o));
    } catch (err) {
      onError(err as Error);
      return undefined;
    }
  };
  const w = new ResilientWatch(core, base, true, {
    snapshot: (kvs, revision) => {
      const items: T[] = [];
      for (const kv of kvs) {
        const item = decodeOrReport(kv);
        if (item !== undefined) items.push(item);
      }
      cb({ type: 'snapshot', items, revision });
    },
    event: (type, kv, revision) => {
      if (type === 'delete') {
        cb({ type: 'delete', id: idOf(keyOf(kv)), revision });
        return;
      }
      const item = decodeOrReport(kv);
      if (item !== undefined) cb({ type: 'put', item, revision });
    },
  }, onError);
  await w.start();
  return { close: () => w.close() };
}
