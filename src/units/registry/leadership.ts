/**
 * Engine leadership (docs/registry.md, "Leadership and fencing"): one key, `engine/leader`,
 * held under the leader's lease; its create revision is the fence every engine write
 * compares against, so a deposed leader's writes fail.
 */
import type { IKeyValue, ITxnResponse, IWatchResponse } from 'etcd3';
import { EventEmitter } from 'node:events';
import { FlotillaError } from '../../errors';
import type { RegistryKeys } from '../../config/key-layout';
import { decodeLeader } from './codec';
import type { RegistryCore } from './core';
import { cmp, now, op, rangeKvs, warn } from './etcd';
import { sleep } from '../../util/async';
import { KeptLease } from './leases';
import type { CampaignOptions, Fence, LeaderInfo, Leadership } from './model';
import { ResilientWatch } from './watch';

/** The registry's Leadership: the leader key's fence, the lease under it and a watch on the key. */
export class EngineLeadership implements Leadership {
  private readonly events = new EventEmitter();
  private state: 'leading' | 'lost' | 'resigned' = 'leading';
  private watch: ResilientWatch | undefined;

  /** @internal */
  constructor(
    readonly candidateId: string,
    readonly fence: Fence,
    private readonly kept: KeptLease,
    private readonly core: RegistryCore,
  ) {
    kept.on('lost', (err: FlotillaError) => this.lose(err));
    core.track(this);
  }

  get leaseId(): string {
    return this.kept.leaseId;
  }
  get isLeader(): boolean {
    return this.state === 'leading';
  }

  /** Fires once when leadership ends other than by resign(): lease lost, or the leader key deleted or replaced. */
  on(event: 'lost', listener: (err: FlotillaError) => void): this {
    this.events.on(event, listener);
    return this;
  }

  /** @internal Watches the leader key so that its deletion or replacement ends leadership at once. */
  async watchKey(k: RegistryKeys): Promise<void> {
    const mine = (kv: IKeyValue | undefined): boolean => kv !== undefined && kv.create_revision === this.fence.createRevision;
    this.watch = new ResilientWatch(this.core, k.leader, false, {
      snapshot: (kvs) => {
        if (!mine(kvs[0])) this.lose(new FlotillaError('conflict', `engine leadership of ${this.candidateId} ended: leader key ${k.leader} no longer ours`));
      },
      event: (type, kv) => {
        if (type === 'delete' || !mine(kv)) this.lose(new FlotillaError('conflict', `engine leadership of ${this.candidateId} ended: leader key ${k.leader} ${type === 'delete' ? 'deleted' : 'replaced'}`));
      },
    }, warn);
    await this.watch.start();
  }

  /** Gives leadership up: deletes the leader key (if still ours) and revokes the lease. */
  async resign(): Promise<void> {
    if (this.state === 'resigned') return;
    const wasLeading = this.state === 'leading';
    this.state = 'resigned';
    this.core.untrack(this);
    await this.watch?.close();
    if (wasLeading) {
      await this.core.call('resign', () =>
        this.core.client.kv.txn({ compare: [cmp.created(this.fence.key, 'Equal', this.fence.createRevision)], success: [op.del(this.fence.key)] }),
      );
    }
    if (this.kept.alive) await this.kept.revoke();
  }

  /** @internal Registry.close(): stop without deleting anything (like a crash). */
  async shutdown(): Promise<void> {
    if (this.state === 'leading') this.state = 'resigned';
    this.core.untrack(this);
    await this.watch?.close();
    this.kept.release();
  }

  private lose(err: FlotillaError): void {
    if (this.state !== 'leading') return;
    this.state = 'lost';
    this.core.untrack(this);
    void this.watch?.close();
    if (this.kept.alive) this.kept.markLost(err.message);
    this.events.emit('lost', err);
  }
}

/**
 * Waits until `candidateId` holds `engine/leader` (created under a fresh lease when
 * absent), then returns the leadership with its fence. Rejects with 'timeout' on
 * abort, or 'external' when etcd fails.
 */
export async function campaign(core: RegistryCore, candidateId: string, opts: CampaignOptions = {}): Promise<Leadership> {
  if (typeof candidateId !== 'string' || candidateId.length === 0 || candidateId.length > 256) throw new FlotillaError('invalid-input', 'campaign: bad candidate ID');
  const ttl = opts.ttlSeconds ?? 10;
  if (!Number.isInteger(ttl) || ttl < 1) throw new FlotillaError('invalid-input', 'campaign: TTL must be a whole number of seconds >= 1');
  const key = core.k.leader;
  const aborted = (): void => {
    if (opts.signal?.aborted) throw new FlotillaError('timeout', `campaign of ${candidateId} aborted`);
  };
  for (;;) {
    aborted();
    const lease = core.client.lease(ttl);
    lease.on('lost', () => undefined);
    const leaseId = await core.call('grant leader lease', () => lease.grant());
    const value = JSON.stringify({ candidateId, leaseId, since: now() });
    let res: ITxnResponse;
    try {
      res = await core.txn(`campaign ${candidateId}`, {
        compare: [cmp.created(key, 'Equal', 0)],
        success: [op.put(key, value, leaseId)],
        failure: [op.get(key)],
      });
    } catch (err) {
      await lease.revoke().catch(() => undefined);
      throw err;
    }
    if (res.succeeded) {
      const kept = new KeptLease(lease, leaseId, ttl, `engine leadership of ${candidateId}`, core);
      const leadership = new EngineLeadership(candidateId, { key, createRevision: res.header.revision }, kept, core);
      try {
        await leadership.watchKey(core.k);
      } catch (err) {
        await leadership.resign().catch(() => undefined);
        throw err;
      }
      return leadership;
    }
    await lease.revoke().catch(() => undefined);
    const holder = rangeKvs(res, 0)[0];
    if (holder) await waitForChange(core, key, holder.mod_revision, ttl * 1000, opts.signal);
  }
}

/** Resolves when `key` changes after `revision`, after `timeoutMs`, or on abort. */
async function waitForChange(core: RegistryCore, key: string, revision: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  const w = core.client.watch().key(key).startRevision(String(BigInt(revision) + 1n)).watcher();
  let onAbort: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve) => {
      w.on('data', (r: IWatchResponse) => {
        if (r.events.length > 0) resolve();
      });
      w.on('error', () => resolve());
      timer = setTimeout(resolve, timeoutMs);
      onAbort = resolve;
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  } finally {
    if (timer) clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
    await Promise.race([w.cancel().catch(() => undefined), sleep(1000)]);
    w.removeAllListeners();
  }
}

/** Who leads now, if anyone. */
export async function getLeader(core: RegistryCore): Promise<LeaderInfo | undefined> {
  const kv = await core.getKv(core.k.leader);
  if (!kv) return undefined;
  return core.decode(kv, 'leader record', (o) => decodeLeader(o, kv.create_revision));
}
