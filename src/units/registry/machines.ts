/** Machines: `machines/<id>`, each under its agent's lease (docs/registry.md, "Machine leases"). */
import type { IKeyValue } from 'etcd3';
import { FlotillaError } from '../../errors';
import { checkRegistryName } from '../../config/key-layout';
import { decodeMachine } from './codec';
import type { RegistryCore } from './core';
import { buf, cmp, op, rangeKvs } from './etcd';
import { KeptLease, KeptMachineLease } from './leases';
import type { MachineInfo, MachineLease, RegistryWatch, WatchEvent, WatchOptions } from './model';
import { typedWatch } from './watch';

/**
 * Announces a machine under a new lease kept alive in the background. 'conflict' if
 * the ID is held by another live registration (e.g. a previous agent whose lease has
 * not expired yet).
 */
/**
 * Registers a machine under a lease of `ttlSeconds`. The lease is declared lost after
 * `lostAfterMs` without a keepalive answer (default: the TTL less a fifth, at least
 * 500 ms): earlier than etcd can expire it, so an agent that fences on 'lost' has
 * stopped its units before the engine may place them elsewhere, yet later than an etcd
 * leader election (election timeout, 2.5 s by default for a 4 s TTL) lasts.
 */
export async function registerMachine(core: RegistryCore, info: MachineInfo, ttlSeconds: number, opts: { lostAfterMs?: number } = {}): Promise<MachineLease> {
  checkRegistryName('machine ID', info.id);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw new FlotillaError('invalid-input', `machine ${info.id}: lease TTL must be a whole number of seconds >= 1`);
  const value = JSON.stringify({
    id: info.id,
    metadata: { ...info.metadata },
    address: info.address,
    capacity: { cpus: info.capacity.cpus, memoryMiB: info.capacity.memoryMiB },
    startedAt: info.startedAt,
    version: info.version,
  });
  core.decode({ key: buf(core.k.machine(info.id)), value: buf(value) } as IKeyValue, 'machine', decodeMachine); // same checks as readers
  const lease = core.client.lease(ttlSeconds);
  lease.on('lost', () => undefined);
  const leaseId = await core.call(`grant lease for machine ${info.id}`, () => lease.grant());
  const kept = new KeptLease(lease, leaseId, ttlSeconds, `machine ${info.id}`, core, opts.lostAfterMs ?? ttlSeconds * 1000 - Math.max(500, ttlSeconds * 200));
  try {
    const key = core.k.machine(info.id);
    const res = await core.txn(`register machine ${info.id}`, {
      compare: [cmp.created(key, 'Equal', 0)],
      success: [op.put(key, value, leaseId)],
      failure: [op.get(key)],
    });
    if (!res.succeeded) {
      const held = rangeKvs(res, 0)[0];
      throw new FlotillaError('conflict', `machine ${info.id} is already registered (lease ${held?.lease ?? '?'}); a stale registration expires within its TTL`);
    }
  } catch (err) {
    await kept.revoke().catch(() => undefined);
    throw err;
  }
  return new KeptMachineLease(info.id, kept);
}

export async function listMachines(core: RegistryCore): Promise<MachineInfo[]> {
  const res = await core.range('list machines', core.k.machines);
  return core.decodeMany(res.kvs, 'machine', (_, o) => decodeMachine(o));
}

export function watchMachines(core: RegistryCore, cb: (ev: WatchEvent<MachineInfo>) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
  return typedWatch(core, core.k.machines, 'machine', (_kv, o) => decodeMachine(o), (key) => core.k.tail(key, core.k.machines), cb, opts);
}
