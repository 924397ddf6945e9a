/**
 * Leases kept alive in the background: the machine registrations agents hold, and the
 * leases under which leadership and rollout locks live (docs/registry.md, "Machine leases").
 */
import { EventEmitter } from 'node:events';
import type { Lease } from 'etcd3';
import { FlotillaError } from '../../errors';
import type { RegistryCore } from './core';
import { sleep } from '../../util/async';
import type { MachineLease } from './model';

/**
 * An etcd lease kept alive in the background. Emits 'lost' once when it can no longer
 * be trusted: etcd says it expired, or no keepalive has been answered for a whole TTL
 * (etcd3 alone would wait two TTLs). On loss the lease is revoked, best effort, so
 * that anything it holds disappears now rather than at expiry.
 */
export class KeptLease extends EventEmitter {
  private done = false;
  private lastOk = Date.now();
  private probing = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly lease: Lease,
    readonly leaseId: string,
    readonly ttlSeconds: number,
    private readonly what: string,
    private readonly core: RegistryCore,
    /** Declared lost after this long without a keepalive answer (default: the TTL). */
    lostAfterMs = ttlSeconds * 1000,
  ) {
    super();
    lease.on('lost', (err) => this.markLost(err.message));
    lease.on('keepaliveSucceeded', () => {
      this.lastOk = Date.now();
    });
    const overdueMs = (ttlSeconds * 1000) / 3 + 300;
    this.timer = setInterval(() => {
      const silent = Date.now() - this.lastOk;
      if (silent > lostAfterMs) return this.markLost(`no keepalive answered for ${(lostAfterMs / 1000).toFixed(1)} s (TTL ${ttlSeconds} s)`);
      // etcd3 keeps alive every TTL/3; after an outage (an etcd leader election) its next try
      // can come a third of a TTL late. Probe at once instead, so a short outage is bridged.
      if (silent > overdueMs && !this.probing) {
        this.probing = true;
        Promise.race([this.lease.keepaliveOnce().then(() => (this.lastOk = Date.now())), sleep(1000)])
          .catch(() => undefined)
          .finally(() => (this.probing = false));
      }
      return undefined;
    }, Math.min(lostAfterMs / 10, 100));
    this.timer.unref();
    core.track(this);
  }

  get alive(): boolean {
    return !this.done;
  }

  markLost(reason: string): void {
    if (this.done) return;
    this.finish();
    this.lease.revoke().catch(() => undefined);
    this.emit('lost', new FlotillaError('external', `${this.what}: lease ${this.leaseId} lost: ${reason}`));
  }

  /** Revokes the lease: what it holds disappears at once. No 'lost' follows. */
  async revoke(): Promise<void> {
    this.finish();
    await this.core.call(`revoke lease ${this.leaseId}`, () => this.lease.revoke());
  }

  /** @internal Registry.close() */
  shutdown(): void {
    this.release();
  }

  /** Stops keepalives without revoking: what the lease holds disappears after its TTL. */
  release(): void {
    if (this.done) return;
    this.finish();
    this.lease.release();
  }

  private finish(): void {
    this.done = true;
    clearInterval(this.timer);
    this.core.untrack(this);
  }
}

/** The registry's MachineLease: a KeptLease with the machine it registers. */
export class KeptMachineLease implements MachineLease {
  private readonly events = new EventEmitter();

  /** @internal */
  constructor(
    readonly machineId: string,
    private readonly kept: KeptLease,
  ) {
    kept.on('lost', (err: FlotillaError) => this.events.emit('lost', err));
  }

  get leaseId(): string {
    return this.kept.leaseId;
  }
  get ttlSeconds(): number {
    return this.kept.ttlSeconds;
  }
  /** False once lost, revoked or released. */
  get alive(): boolean {
    return this.kept.alive;
  }
  /** Fires once if the lease can no longer be kept; the agent should stop its units' reporting and register again. */
  on(event: 'lost', listener: (err: FlotillaError) => void): this {
    this.events.on(event, listener);
    return this;
  }
  /** Deregisters now: the machine key and its states vanish. */
  revoke(): Promise<void> {
    return this.kept.revoke();
  }
  /** Stops keepalives only (as a crash would): everything vanishes after the TTL. */
  release(): void {
    this.kept.release();
  }
}

