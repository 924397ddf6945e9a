/**
 * Announcing one instance of a service, as a sidekick does: the record lives under an etcd
 * lease kept alive by this process, so it disappears one TTL after the process dies (SIGKILL,
 * node gone), and at once when it stops cleanly (the lease is revoked). With a health probe
 * the record is withdrawn while the endpoint fails and put back when it answers again.
 *
 * Every round (each check interval, or a third of the TTL without checks) re-reads the key:
 * a record deleted behind the announcer's back is put back; a record another announcer wrote
 * since is a conflict (two announcers for one instance) and this one gives up, newest wins.
 * A lost lease (etcd unreachable for longer than the TTL) is replaced by a new one.
 */
import type { Etcd3, IKeyValue, Lease } from 'etcd3';
import { EtcdLeaseInvalidError } from 'etcd3';
import { FlotillaError } from '../errors';
import { encodeEndpoint, endpointUrl, type Endpoint } from './endpoint';
import { probeEndpoint } from './health';
import { instanceKey } from './keys';

export interface AnnounceOptions {
  /** The services prefix (keys.ts servicesPrefix). */
  prefix: string;
  service: string;
  instance: string;
  endpoint: Endpoint;
  /** Lease TTL: how long the record outlives a killed announcer. */
  ttlSeconds: number;
  /** Probe the endpoint this often and withdraw the record while it fails; absent: no probing. */
  checkIntervalMs?: number;
  /** Per-probe deadline (default: the interval, at most 5 s). */
  checkTimeoutMs?: number;
  log?: (message: string) => void;
}

export type AnnouncerState = 'starting' | 'announced' | 'withdrawn' | 'stopped';

export class Announcer {
  readonly key: string;
  private readonly value: string;
  private readonly intervalMs: number;
  private readonly log: (m: string) => void;
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  /** mod_revision of our last put while announced; undefined while not announced. */
  private putRevision: string | undefined;
  private stateNow: AnnouncerState = 'starting';
  private stopping = false;
  private wake: (() => void) | undefined;
  private loopDone: Promise<void> = Promise.resolve();
  private lastError = '';
  private settle!: { resolve: () => void; reject: (err: Error) => void };
  /** Resolves once stop() finished; rejects when the announcer gives up (conflict). */
  readonly finished: Promise<void>;

  private constructor(
    private readonly client: Etcd3,
    private readonly opts: AnnounceOptions,
  ) {
    if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds < 2) throw new FlotillaError('invalid-input', `announce: TTL must be a whole number of seconds, at least 2 (got ${opts.ttlSeconds})`);
    this.key = instanceKey(opts.prefix, opts.service, opts.instance);
    this.value = encodeEndpoint(opts.endpoint);
    this.intervalMs = opts.checkIntervalMs ?? Math.max(1000, Math.floor((opts.ttlSeconds * 1000) / 3));
    this.log = opts.log ?? (() => undefined);
    this.finished = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.finished.catch(() => undefined);
  }

  /**
   * Grants the lease, runs the first probe and announces (or waits for health), then keeps
   * going in the background. Rejects if etcd cannot be reached for the first round.
   */
  static async start(client: Etcd3, opts: AnnounceOptions): Promise<Announcer> {
    const a = new Announcer(client, opts);
    try {
      await a.round();
    } catch (err) {
      await a.dropLease(true);
      throw err;
    }
    a.loopDone = a.loop();
    return a;
  }

  get state(): AnnouncerState {
    return this.stateNow;
  }

  /** The lease holding the record (decimal etcd lease ID), when one is granted. */
  get currentLease(): string | undefined {
    return this.leaseId;
  }

  /** Stops: revokes the lease, which deletes the record at once (unless another announcer has overwritten it). */
  async stop(): Promise<void> {
    if (this.stopping) return this.finished.catch(() => undefined);
    this.stopping = true;
    this.wake?.();
    await this.loopDone;
    const wasAnnounced = this.putRevision !== undefined;
    await this.dropLease(true);
    this.putRevision = undefined;
    this.stateNow = 'stopped';
    this.log(`${wasAnnounced ? 'withdrew' : 'stopped'} ${this.opts.service}/${this.opts.instance}`);
    this.settle.resolve();
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.intervalMs);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
      if (this.stopping) return;
      try {
        await this.round();
        this.lastError = '';
      } catch (err) {
        if (FlotillaError.is(err) && err.code === 'conflict') {
          this.stopping = true;
          await this.dropLease(false);
          this.putRevision = undefined;
          this.stateNow = 'stopped';
          this.settle.reject(err);
          return;
        }
        const msg = (err as Error).message;
        // Repeated failures (etcd down) are logged once until something changes.
        if (msg !== this.lastError) this.log(`${this.opts.service}/${this.opts.instance}: ${msg}; retrying every ${this.intervalMs} ms`);
        this.lastError = msg;
      }
    }
  }

  /** One round: lease, probe, then announce or withdraw. */
  private async round(): Promise<void> {
    const reason = this.opts.checkIntervalMs !== undefined ? await probeEndpoint(this.opts.endpoint, this.opts.checkTimeoutMs ?? Math.min(this.opts.checkIntervalMs, 5000)) : undefined;
    if (this.stopping) return;
    if (reason !== undefined) return this.withdraw(reason);
    try {
      await this.announce();
    } catch (err) {
      if (!(err instanceof EtcdLeaseInvalidError)) throw err;
      // The lease expired while we were away (etcd down longer than the TTL): start over with a new one.
      await this.dropLease(false);
      this.putRevision = undefined;
      await this.announce();
    }
  }

  private async ensureLease(): Promise<string> {
    if (this.lease && this.leaseId) return this.leaseId;
    const lease = this.client.lease(this.opts.ttlSeconds);
    lease.on('lost', (err: Error) => {
      if (this.lease !== lease || this.stopping) return;
      this.log(`lease ${this.leaseId} lost (${err.message}); granting a new one`);
      this.lease = undefined;
      this.leaseId = undefined;
      this.putRevision = undefined;
      this.wake?.();
    });
    try {
      this.leaseId = await lease.grant();
    } catch (err) {
      lease.release();
      throw new FlotillaError('external', `cannot grant a ${this.opts.ttlSeconds} s lease: ${(err as Error).message}`, [], { cause: err });
    }
    this.lease = lease;
    return this.leaseId;
  }

  private async current(): Promise<IKeyValue | undefined> {
    const res = await this.client.get(this.key).exec();
    return res.kvs[0];
  }

  private async announce(): Promise<void> {
    const leaseId = await this.ensureLease();
    const cur = await this.current();
    if (this.putRevision !== undefined) {
      if (cur && cur.mod_revision === this.putRevision) return;
      if (cur) {
        throw new FlotillaError('conflict', `${this.key} was written by another announcer (lease ${cur.lease}) after this one: give each announcer its own --instance`);
      }
      this.log(`${this.key} was deleted; announcing again`);
    } else if (cur && cur.value.toString() !== this.value) {
      this.log(`replacing ${this.key} (lease ${cur.lease}): ${cur.value.toString().slice(0, 120)}`);
    }
    const res = await this.client.put(this.key).value(this.value).lease(leaseId).exec();
    this.putRevision = res.header.revision;
    if (this.stateNow !== 'announced') this.log(`announced ${this.opts.service}/${this.opts.instance} ${endpointUrl(this.opts.endpoint)} (key ${this.key}, lease ${leaseId}, TTL ${this.opts.ttlSeconds} s)`);
    this.stateNow = 'announced';
  }

  private async withdraw(reason: string): Promise<void> {
    if (this.putRevision !== undefined) {
      // Only our own record: another announcer's newer one stays.
      await this.client.if(this.key, 'Mod', '==', this.putRevision).then(this.client.delete().key(this.key)).commit();
      this.putRevision = undefined;
    }
    if (this.stateNow !== 'withdrawn') this.log(`${this.stateNow === 'announced' ? 'withdrew' : 'not announcing'} ${this.opts.service}/${this.opts.instance}: unhealthy: ${reason}`);
    this.stateNow = 'withdrawn';
  }

  /** Revokes the lease (deleting a record it holds), waiting for etcd or not. Never throws. */
  private async dropLease(wait: boolean): Promise<void> {
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    if (!lease) return;
    const revoked = lease.revoke().catch((err: Error) => {
      if (wait) this.log(`revoking lease failed (${err.message}); the record expires with its TTL`);
    });
    if (wait) await revoked;
  }
}
