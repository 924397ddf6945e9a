/**
 * Rolling updates of a submitted unit (fleet #960, #760, #1266): replace its body, then
 * restart its running copies a batch of machines at a time (`maxUnavailable`), each batch
 * waiting until every copy is active with the new content for `minReadyMs` and the
 * health command passes, before the next. A failed batch stops the rollout, and can roll
 * it back the same way.
 *
 * The client drives, not the engine: the health command runs where the operator is (it
 * checks the service from outside, as its clients would), a long wait never holds up
 * placement of other units, and the engine stays a reconciler with no workflows. The
 * progress lives in etcd (`Rollout`, registry/rollouts.ts): the engine gives each copy the content
 * the record names for its machine, so an interrupted `update` leaves every copy as it
 * was, and `resume` or `rollback` carries on from the record. A lease-held lock keeps
 * two clients from driving one rollout.
 */
import { execFile } from 'node:child_process';
import * as os from 'node:os';
import { FlotillaError } from '../errors';
import { sleep } from '../util/async';
import type { Rollout, RolloutOptions, RolloutStore, UnitState } from './registry';
import { unitNameInfo } from './unit-file';

export const DEFAULT_ROLLOUT_OPTIONS: RolloutOptions = { maxUnavailable: 1, timeoutMs: 60_000, minReadyMs: 1000, rollbackOnFailure: false };

export interface DriveOptions {
  /** Progress lines for the user. */
  log?: (line: string) => void;
  /** Stops driving (the record stays as it is; resume later). */
  signal?: AbortSignal;
  /** Names this client in the rollout lock. */
  driverId?: string;
  /** Lease TTL of the lock (a dead driver lets go after it). */
  lockTtlSeconds?: number;
}

export interface RolloutOutcome {
  rollout: Rollout;
  /** The rollout reached `done` (or, for a rollback, `rolled-back`). */
  ok: boolean;
}

const TERMINAL = new Set(['done', 'rolled-back']);

/** Replaces `name`'s body with `text` and drives the rolling update to its end. */
export async function updateUnit(registry: RolloutStore, name: string, text: string, options: RolloutOptions, opts: DriveOptions = {}): Promise<RolloutOutcome | undefined> {
  const started = await registry.beginRollout(name, text, options);
  if (!started) return undefined;
  opts.log?.(`${name}: updating ${started.fromHash.slice(0, 12)} -> ${started.toHash.slice(0, 12)}, ${options.maxUnavailable} at a time`);
  return driveRollout(registry, name, opts);
}

export interface TemplateUpdate {
  /** Every unit that now has the new content (the template itself first, then instances by name). */
  updated: string[];
  /** The unit whose update failed, with its outcome; the ones after it were not touched. */
  failed?: { unit: string; outcome: RolloutOutcome };
  /** With rollbackOnFailure: units put back to their old content after the failure. */
  reverted: string[];
}

/**
 * Updates a template and every submitted instance of it (each instance carries its own
 * copy of the text): the template job first (it never runs), then each instance's rolling
 * update in name order. A failed instance stops the rest; with `rollbackOnFailure` it is
 * rolled back and the units already updated get their old content back, newest first,
 * the same rolling way. `instanceProblem` checks the new text under each instance's name
 * before anything changes (specifiers in [X-Fleet] expand per instance).
 */
export async function updateTemplate(
  registry: RolloutStore,
  template: string,
  text: string,
  options: RolloutOptions,
  opts: DriveOptions & { checkInstance?: (name: string, text: string) => void } = {},
): Promise<TemplateUpdate> {
  const info = unitNameInfo(template);
  if (info.kind !== 'template') throw new FlotillaError('invalid-input', `${template} is not a template unit`);
  const jobs = await registry.listUnits();
  const instances = jobs.filter((j) => { const i = unitNameInfo(j.name); return i.kind === 'instance' && i.template === template; }).map((j) => j.name).sort();
  const units = [...(jobs.some((j) => j.name === template) ? [template] : []), ...instances];
  if (units.length === 0) throw new FlotillaError('not-found', `neither ${template} nor any instance of it is submitted`);
  for (const u of instances) opts.checkInstance?.(u, text);
  const oldText = new Map<string, string>();
  for (const u of units) {
    const unit = await registry.getUnit(u);
    if (unit) oldText.set(u, unit.text);
  }
  const updated: string[] = [];
  for (const u of units) {
    const outcome = await updateUnit(registry, u, text, options, opts);
    if (!outcome || outcome.ok) {
      updated.push(u);
      continue;
    }
    const reverted: string[] = [];
    if (options.rollbackOnFailure) {
      for (const back of [...updated].reverse()) {
        opts.log?.(`${back}: putting the old content back`);
        const r = await updateUnit(registry, back, oldText.get(back)!, { ...options, rollbackOnFailure: false }, opts);
        if (r && !r.ok) throw new FlotillaError('external', `rolling ${back} back failed: ${r.rollout.error ?? r.rollout.phase}; ${template} instances now have mixed contents`);
        reverted.push(back);
      }
    }
    return { updated: options.rollbackOnFailure ? [] : updated, failed: { unit: u, outcome }, reverted };
  }
  return { updated, reverted: [] };
}

/** Continues a rollout that was interrupted or stopped by a failure. */
export async function resumeRollout(registry: RolloutStore, name: string, opts: DriveOptions = {}): Promise<RolloutOutcome> {
  return driveRollout(registry, name, opts, 'resume');
}

/** Puts the old content back on every copy, a batch at a time, and drops the new content. */
export async function rollBack(registry: RolloutStore, name: string, opts: DriveOptions = {}): Promise<RolloutOutcome> {
  return driveRollout(registry, name, opts, 'rollback');
}

async function driveRollout(registry: RolloutStore, name: string, opts: DriveOptions, action: 'update' | 'resume' | 'rollback' = 'update'): Promise<RolloutOutcome> {
  const log = opts.log ?? (() => undefined);
  let r = await registry.getRollout(name);
  if (!r) throw new FlotillaError('not-found', `unit ${name} has no rolling update (start one with flotilla units update FILE)`);
  if (TERMINAL.has(r.phase)) {
    if (action === 'update') return { rollout: r, ok: r.phase === 'done' };
    throw new FlotillaError('conflict', `the rolling update of ${name} is finished (${r.phase}); nothing to ${action}`);
  }
  const lock = await registry.lockRollout(name, opts.driverId ?? `${os.hostname()}:${process.pid}`, opts.lockTtlSeconds ?? 10);
  try {
    r = (await registry.getRollout(name))!; // re-read under the lock
    if (action === 'rollback' && r.phase !== 'rolling-back') {
      r = await registry.saveRollout({ ...r, phase: 'rolling-back' });
      log(`${name}: rolling back to ${r.fromHash.slice(0, 12)}`);
    } else if (action === 'resume' && r.phase === 'failed') {
      const { error: _dropped, ...rest } = r;
      r = await registry.saveRollout({ ...rest, phase: 'rolling' });
      log(`${name}: resuming the update to ${r.toHash.slice(0, 12)}`);
    }
    return await runBatches(registry, r, log, opts.signal, () => lock.alive);
  } finally {
    await lock.release().catch(() => undefined);
  }
}

/** The batches of one phase (rolling or rolling-back) until it finishes or fails. */
async function runBatches(registry: RolloutStore, start: Rollout, log: (line: string) => void, signal: AbortSignal | undefined, locked: () => boolean): Promise<RolloutOutcome> {
  let r = start;
  const name = r.unit;
  for (;;) {
    if (signal?.aborted) throw new FlotillaError('timeout', `update of ${name} interrupted; its progress is kept: flotilla units rollout resume ${name} (or rollback)`);
    if (!locked()) throw new FlotillaError('external', `lost the rollout lock of ${name} (etcd unreachable?); resume it later`);
    if (r.phase === 'failed') return { rollout: r, ok: false };
    const forward = r.phase === 'rolling';
    const target = forward ? r.toHash : r.fromHash;
    const job = await registry.getUnit(name);
    if (!job) throw new FlotillaError('not-found', `unit ${name} was destroyed during its update`);
    const copies = (await registry.listSchedule()).filter((a) => a.unit === name);
    const confirmed = new Set(r.steps.filter((s) => s.ok && s.hash === target).map((s) => s.machineId));
    // Switched but not seen ready yet (an interrupted batch); then those not switched yet. A copy
    // the engine placed with the target content (new, or never touched) needs no restart.
    const waiting = copies.filter((a) => !confirmed.has(a.machineId) && r.hashOn[a.machineId] === target);
    const pending = copies.filter((a) => r.hashOn[a.machineId] !== target && a.hash !== target);
    if (job.desiredState !== 'launched' || (waiting.length === 0 && pending.length === 0)) {
      // Nothing runs (or every copy is confirmed): the engine gives every copy the job's content.
      r = await registry.saveRollout({ ...r, phase: forward ? 'done' : 'rolled-back' });
      log(`${name}: ${forward ? 'update done' : 'rolled back'}: ${copies.length} cop${copies.length === 1 ? 'y' : 'ies'} on ${target.slice(0, 12)}`);
      return { rollout: r, ok: forward };
    }
    const batch = [...waiting, ...pending].slice(0, r.options.maxUnavailable).map((a) => a.machineId);
    const switchNow = batch.filter((m) => r.hashOn[m] !== target);
    if (switchNow.length) {
      const hashOn = { ...r.hashOn };
      for (const m of switchNow) hashOn[m] = target;
      r = await registry.saveRollout({ ...r, hashOn });
    }
    log(`${name}: restarting on ${batch.join(', ')} with ${target.slice(0, 12)} (${confirmed.size}/${copies.length} done)`);
    const results = await waitReady(registry, name, target, batch, r.options, signal);
    const steps = results.map((x) => ({ machineId: x.machineId, hash: target, ok: x.ok, detail: x.detail, at: new Date().toISOString() }));
    for (const s of steps) log(`${name}: ${s.machineId}: ${s.ok ? 'ready' : 'FAILED'}: ${s.detail}`);
    const failed = steps.filter((s) => !s.ok);
    // Re-read: the engine does not write the record, but a resumed or aborted client might have.
    const latest = (await registry.getRollout(name))!;
    if (latest.revision !== r.revision) throw new FlotillaError('conflict', `the rollout of ${name} was changed by another client; stopping`);
    if (failed.length === 0) {
      r = await registry.saveRollout({ ...r, steps: [...r.steps, ...steps] });
      continue;
    }
    const error = `${failed.map((s) => `${s.machineId}: ${s.detail}`).join('; ')}`;
    if (forward && r.options.rollbackOnFailure) {
      r = await registry.saveRollout({ ...r, steps: [...r.steps, ...steps], phase: 'rolling-back', error });
      log(`${name}: rolling back to ${r.fromHash.slice(0, 12)} after: ${error}`);
      const back = await runBatches(registry, r, log, signal, locked);
      return { rollout: back.rollout, ok: false };
    }
    r = await registry.saveRollout({ ...r, steps: [...r.steps, ...steps], phase: 'failed', error });
    log(`${name}: stopped: ${error}`);
    return { rollout: r, ok: false };
  }
}

interface Readiness {
  machineId: string;
  ok: boolean;
  detail: string;
}

/**
 * Waits until the copy on each machine is active with `hash` for `minReadyMs` without a
 * break and the health command passes, or fails: the copy reports `failed`, or the
 * deadline passes. State reports come from a watch, so a brief crash between polls is
 * not missed.
 */
async function waitReady(registry: RolloutStore, unit: string, hash: string, machines: string[], options: RolloutOptions, signal: AbortSignal | undefined): Promise<Readiness[]> {
  const deadline = Date.now() + options.timeoutMs;
  const latest = new Map<string, UnitState>();
  const activeSince = new Map<string, number>();
  const failedWith = new Map<string, string>();
  const wanted = new Set(machines);
  const see = (st: UnitState): void => {
    if (st.unit !== unit || !wanted.has(st.machineId)) return;
    latest.set(st.machineId, st);
    const mine = st.hash === hash;
    if (mine && st.active === 'active') {
      if (!activeSince.has(st.machineId)) activeSince.set(st.machineId, Date.now());
    } else activeSince.delete(st.machineId);
    if (mine && st.active === 'failed') failedWith.set(st.machineId, `failed (${st.result ?? st.sub})`);
  };
  const watch = await registry.watchStates((ev) => {
    if (ev.type === 'snapshot') for (const st of ev.items) see(st);
    else if (ev.type === 'put') see(ev.item);
    else {
      const [machineId] = ev.id.split('/');
      if (machineId && wanted.has(machineId)) activeSince.delete(machineId);
    }
  });
  const machinesInfo = new Map((await registry.listMachines()).map((m) => [m.id, m]));
  const done = new Map<string, Readiness>();
  const lastHealth = new Map<string, string>();
  try {
    while (done.size < machines.length) {
      if (signal?.aborted) throw new FlotillaError('timeout', `update of ${unit} interrupted; its progress is kept: flotilla units rollout resume ${unit} (or rollback)`);
      const now = Date.now();
      for (const m of machines) {
        if (done.has(m)) continue;
        const failure = failedWith.get(m);
        if (failure) {
          done.set(m, { machineId: m, ok: false, detail: failure });
          continue;
        }
        const since = activeSince.get(m);
        if (since !== undefined && now - since >= options.minReadyMs) {
          if (!options.healthCmd) {
            done.set(m, { machineId: m, ok: true, detail: `active for ${options.minReadyMs} ms` });
            continue;
          }
          const h = await runHealthCmd(options.healthCmd, { unit, machineId: m, address: machinesInfo.get(m)?.address ?? '', hash }, Math.max(1000, deadline - Date.now()));
          // Still active all along? A crash during the check voids it.
          if (h.ok && activeSince.get(m) === since) {
            done.set(m, { machineId: m, ok: true, detail: `active, health command passed` });
            continue;
          }
          lastHealth.set(m, h.detail);
        }
        if (now >= deadline) {
          const st = latest.get(m);
          const seen = st ? `${st.active}/${st.sub}${st.hash === hash ? '' : ` with content ${st.hash.slice(0, 12)}`}` : 'no state reported';
          const health = lastHealth.get(m);
          done.set(m, { machineId: m, ok: false, detail: `not ready within ${options.timeoutMs} ms (last: ${seen}${health ? `; health command: ${health}` : ''})` });
        }
      }
      if (done.size < machines.length) await sleep(100, signal);
    }
  } finally {
    await watch.close();
  }
  return machines.map((m) => done.get(m)!);
}

/** Runs the health command with the copy's whereabouts in its environment. */
function runHealthCmd(cmd: string, copy: { unit: string; machineId: string; address: string; hash: string }, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    execFile(
      '/bin/sh',
      ['-c', cmd],
      {
        timeout: Math.min(timeoutMs, 30_000),
        env: { ...process.env, FLOTILLA_UNIT: copy.unit, FLOTILLA_MACHINE_ID: copy.machineId, FLOTILLA_MACHINE_ADDRESS: copy.address, FLOTILLA_UNIT_HASH: copy.hash },
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ ok: true, detail: 'passed' });
        const out = `${stderr || stdout}`.trim().split('\n').pop() ?? '';
        const why = (err as NodeJS.ErrnoException & { killed?: boolean }).killed ? 'timed out' : `exited with status ${typeof err.code === 'number' ? err.code : err.code ?? '?'}`;
        resolve({ ok: false, detail: `${why}${out ? `: ${out.slice(0, 200)}` : ''}` });
      },
    );
  });
}
