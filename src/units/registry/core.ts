/**
 * The connection every registry module works through: the etcd3 client, the key layout
 * for this prefix, and the shared plumbing (etcd failures as FlotillaError('external'),
 * paged prefix reads, decoding stored values, fences, and the set of leases, watches and
 * leaderships that Registry.close() shuts down).
 */
import { Etcd3, type IKeyValue, type IOptions, type IRangeResponse, type ITxnRequest, type ITxnResponse } from 'etcd3';
import { FlotillaError } from '../../errors';
import { registryKeys, type RegistryKeys } from '../../config/key-layout';
import { asObject, type Json } from './codec';
import { buf, keyOf, prefixEnd, text } from './etcd';
import type { Fence, RegistryOptions } from './model';

/** What Registry.close() shuts down. */
export interface Tracked {
  shutdown(): void | Promise<void>;
}

/** Keys per range reply; with values of a few hundred bytes, far below 4 MiB. Bodies are never listed. */
const RANGE_PAGE = 2000;

/** etcd3's watch reconnect backoff: 100 ms doubling to 1 s (its default grows to 30 s). */
type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;
function cappedBackoff(duration: number): WatchBackoff {
  return { duration, next: () => cappedBackoff(Math.min(duration * 2, 1000)) };
}

/**
 * etcd3 puts a circuit breaker in front of each host (open for 5 s after 3 failures),
 * so that calls skip a failing member. With a single endpoint there is nothing to skip
 * to: the breaker only keeps refusing calls for 5 s after etcd is back. One endpoint
 * therefore gets this pass-through policy instead (etcd3 only calls `execute`).
 */
type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;
const passThroughPolicy = (): HostPolicy => {
  const noEvent = (): { dispose(): void } => ({ dispose: () => undefined });
  const policy = {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> => fn({ signal: new AbortController().signal }),
  };
  return policy as unknown as HostPolicy;
};

export class RegistryCore {
  readonly client: Etcd3;
  readonly prefix: string;
  readonly endpoints: readonly string[];
  /** Every key under `prefix` (src/config/key-layout.ts). */
  readonly k: RegistryKeys;
  /** Leases, watches and leaderships to shut down on close(). */
  private readonly live = new Set<Tracked>();
  /** Set by Registry.close(); calls after it fail with 'internal'. */
  closed = false;
  private readonly pageSize: number;

  constructor(opts: RegistryOptions, prefix: string) {
    this.prefix = prefix;
    this.pageSize = opts.pageSize ?? RANGE_PAGE;
    this.endpoints = [...opts.endpoints];
    this.k = registryKeys(prefix);
    const requestTimeoutMs = opts.requestTimeoutMs ?? 5000;
    const toBuf = (v: Buffer | string | undefined): Buffer | undefined => (v === undefined ? undefined : Buffer.isBuffer(v) ? v : Buffer.from(v));
    this.client = new Etcd3({
      hosts: [...opts.endpoints],
      ...(opts.tls
        ? { credentials: { rootCertificate: toBuf(opts.tls.ca)!, privateKey: toBuf(opts.tls.key), certChain: toBuf(opts.tls.cert) } }
        : {}),
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + requestTimeoutMs }),
      faultHandling: { watchBackoff: cappedBackoff(100), ...(opts.endpoints.length === 1 ? { host: passThroughPolicy } : {}) },
    });
  }

  /** Runs an etcd call, turning its failure into FlotillaError('external'). */
  async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new FlotillaError('internal', `registry: ${what} after close()`);
    try {
      return await fn();
    } catch (err) {
      if (FlotillaError.is(err)) throw err;
      throw new FlotillaError('external', `etcd at ${this.endpoints.join(',')}: ${what}: ${(err as Error).message}`, [], { cause: err });
    }
  }

  track(x: Tracked): void {
    this.live.add(x);
  }
  untrack(x: Tracked): void {
    this.live.delete(x);
  }
  /** What is live now, in the order it started. */
  tracked(): Tracked[] {
    return [...this.live];
  }

  txn(what: string, req: ITxnRequest): Promise<ITxnResponse> {
    return this.call(what, () => this.client.kv.txn(req));
  }

  range(what: string, prefix: string, revision?: string): Promise<IRangeResponse> {
    return this.rangeAll(what, prefix, revision);
  }

  /**
   * Everything under `prefix` at one revision, read in pages of `pageSize`
   * keys: one reply must stay under gRPC's 4 MiB message limit (10,000 states and
   * assignments are more than that).
   */
  async rangeAll(what: string, prefix: string, revision?: string): Promise<IRangeResponse> {
    const end = prefixEnd(prefix);
    let first: IRangeResponse | undefined;
    const kvs: IKeyValue[] = [];
    let from = buf(prefix);
    for (;;) {
      const rev = revision ?? first?.header.revision;
      const res: IRangeResponse = await this.call(what, () => this.client.kv.range({ key: from, range_end: end, limit: this.pageSize, ...(rev ? { revision: rev } : {}) }));
      first ??= res;
      kvs.push(...res.kvs);
      const last = res.kvs[res.kvs.length - 1];
      if (!res.more || !last) break;
      from = Buffer.concat([last.key, Buffer.from([0])]);
    }
    return { ...first, kvs, more: false, count: String(kvs.length) };
  }

  async getKv(key: string): Promise<IKeyValue | undefined> {
    const res = await this.call(`get ${key}`, () => this.client.kv.range({ key: buf(key) }));
    return res.kvs[0];
  }

  /** Decodes a stored value, or throws naming the key. */
  decode<T>(kv: IKeyValue, what: string, fn: (o: Json) => T): T {
    try {
      return fn(asObject(JSON.parse(text(kv))));
    } catch (err) {
      throw new FlotillaError('external', `etcd key ${keyOf(kv)} holds a malformed ${what}: ${(err as Error).message}`, [], { cause: err });
    }
  }

  decodeMany<T>(kvs: IKeyValue[], what: string, fn: (kv: IKeyValue, o: Json) => T): T[] {
    return kvs.map((kv) => this.decode(kv, what, (o) => fn(kv, o)));
  }

  checkFence(fence: Fence): void {
    if (fence.key !== this.k.leader) throw new FlotillaError('internal', `fence for ${fence.key} used with registry prefix ${this.prefix}`);
  }

  /** Explains why a fenced transaction failed, from the leader key read in its failure branch. */
  fencedOut(fence: Fence, leaderKv: IKeyValue | undefined, what: string): FlotillaError {
    const now = leaderKv ? `now created at revision ${leaderKv.create_revision}` : 'now absent';
    return new FlotillaError('conflict', `${what}: not the engine leader any more (leadership from revision ${fence.createRevision}; leader key ${now})`);
  }
}
