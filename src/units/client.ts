/**
 * fleetctl's operations as a typed library: what `flotilla units <verb>` calls.
 * Unit files are checked (syntax and [X-Fleet]) before anything reaches etcd.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError, throwIfProblems, type Problem } from '../errors';
import { readTextFile } from '../util/fs';
// The model alone: importing the registry's index would load etcd3 and gRPC for `validate` and `units verify`.
import { ROLLOUT_IN_PROGRESS, type DesiredState, type Job, type MachineInfo, type Placement, type RolloutPhase, type UnitHealth, type UnitState } from './registry/model';
import type { Registry } from './registry';
import { parseUnitFile, unitNameInfo, unitNameProblem, type UnitFile } from './unit-file';
import { avoidReason, checkUnitPolicy, type UnitPolicy } from './unit-policy';
import { checkMachineOfCycles, checkXFleet, instantiate, TEMPLATE_CHECK_INSTANCE, type XFleetOptions } from './xfleet';
import { sleep } from '../util/async';

export interface CheckedUnit {
  name: string;
  text: string;
  options: XFleetOptions;
  policy: UnitPolicy;
  /** What fleet accepted but did not do as the author likely hoped; see checkXFleet. */
  warnings: Problem[];
}

/** Parses and checks one unit file; every problem names file:line. */
export function checkUnitText(name: string, text: string, file = name): CheckedUnit {
  const { unit, problems } = inspectUnit(name, text, file);
  throwIfProblems(problems, `${file}: invalid unit`);
  return unit!;
}

/** Problems and warnings of a unit file, for `flotilla validate` and `units verify`. */
export function checkUnitFile(file: string, text: string): { problems: Problem[]; warnings: Problem[] } {
  const { problems, warnings } = inspectUnit(path.basename(file), text, file);
  return { problems, warnings };
}

/** Every problem and warning of one unit file; the checked unit when it has no problem. */
function inspectUnit(name: string, text: string, file: string): { unit?: CheckedUnit; problems: Problem[]; warnings: Problem[] } {
  const nameProblem = unitNameProblem(name);
  if (nameProblem) return { problems: [{ path: '', message: nameProblem, file }], warnings: [] };
  let unit: UnitFile;
  try {
    unit = parseUnitFile(text, name, { file });
  } catch (err) {
    if (!FlotillaError.is(err)) throw err;
    return { problems: err.problems.length ? [...err.problems] : [{ path: '', message: err.message, file }], warnings: [] };
  }
  const { options, problems, warnings } = checkXFleet(unit);
  const { policy, problems: policyProblems } = checkUnitPolicy(unit, options);
  const located = { problems: [...problems, ...policyProblems].map((p) => ({ ...p, file })), warnings: warnings.map((w) => ({ ...w, file })) };
  return located.problems.length ? located : { ...located, unit: { name, text, options, policy, warnings: located.warnings } };
}

/**
 * Reads unit files (or names of instances of templates in `files`' directories, as
 * fleetctl did: `start web@1.service` uses `web@.service` from the same directory).
 * Warnings go to `opts.onWarning` (also those of refused files, to fix both at once).
 */
export function readUnitArgs(args: readonly string[], opts: UnitCheckOptions = {}): CheckedUnit[] {
  const units: CheckedUnit[] = [];
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  for (const arg of args) {
    try {
      const name = path.basename(arg);
      const info = unitNameInfo(name);
      let text: string;
      if (fs.existsSync(arg)) text = readTextFile(arg);
      else if (info.kind === 'instance') {
        const templateFile = path.join(path.dirname(arg), info.template!);
        if (!fs.existsSync(templateFile)) throw new FlotillaError('not-found', `${arg}: no such file, and no template ${templateFile}`);
        const tpl: UnitFile = parseUnitFile(readTextFile(templateFile), info.template!, { file: templateFile });
        instantiate(tpl, name);
        text = readTextFile(templateFile);
      } else throw new FlotillaError('not-found', `${arg}: no such file`);
      const found = inspectUnit(name, text, arg);
      problems.push(...found.problems, ...(opts.strict ? found.warnings : []));
      warnings.push(...found.warnings);
      if (found.unit) units.push(found.unit);
    } catch (err) {
      if (!FlotillaError.is(err)) throw err;
      problems.push(...(err.problems.length ? err.problems : [{ path: '', message: err.message, file: arg }]));
    }
  }
  if (!opts.strict) for (const w of warnings) opts.onWarning?.(w);
  throwIfProblems(problems, opts.strict && warnings.length ? 'invalid unit files (--strict: warnings count as errors)' : 'invalid unit files');
  // Templates' options were read as their stand-in instance, so cycles between templates show there.
  const cycles = checkMachineOfCycles(units.map((u) => ({ name: checkedName(u.name), options: u.options })));
  throwIfProblems(cycles, 'invalid unit files');
  return units;
}

function checkedName(name: string): string {
  const info = unitNameInfo(name);
  return info.kind === 'template' ? `${info.prefix}@${TEMPLATE_CHECK_INSTANCE}.${info.type}` : name;
}

/** A unit's name is a plain name or a path: submit files, act on names. */
function isFileArg(arg: string): boolean {
  return arg.includes('/') || fs.existsSync(arg);
}

export interface UnitRow {
  unit: string;
  machine: string | undefined;
  /** Machine address, for display. */
  address: string | undefined;
  desiredState: DesiredState;
  active: string;
  sub: string;
  /** The job's content (what new copies get). */
  hash: string;
  /** The content this copy is assigned (differs from `hash` while a rolling update has not reached it). */
  copyHash: string | undefined;
  /**
   * Why the unit is not placed, when it is not; for a placed copy, why it moved when it did
   * (a failure elsewhere, a machine gone).
   */
  reason: string | undefined;
  /** Recent failures of this content on machines the engine avoids for it now. */
  failures: Array<Pick<UnitHealth, 'machineId' | 'failures' | 'lastResult' | 'avoidUntil'>>;
  /** A rolling update in progress. */
  rollout: { phase: RolloutPhase; toHash: string; fromHash: string } | undefined;
}

export interface UnitCheckOptions {
  /** Warnings refuse the unit too. */
  strict?: boolean;
  /** Told each warning of a unit that is accepted. */
  onWarning?: (warning: Problem) => void;
}

export class UnitsClient {
  constructor(
    readonly registry: Registry,
    private readonly checks: UnitCheckOptions = {},
  ) {}

  /** Submits files (idempotent for the same content); returns the unit names. */
  async submit(args: readonly string[], desiredState?: DesiredState): Promise<Array<{ name: string; created: boolean }>> {
    const units = readUnitArgs(args, this.checks);
    const out: Array<{ name: string; created: boolean }> = [];
    for (const u of units) {
      const r = await this.registry.submitUnit(u.name, u.text, desiredState ? { desiredState } : {});
      out.push({ name: u.name, created: r.created });
    }
    return out;
  }

  /** Names from args: files are submitted first (fleetctl start FILE), plain names must exist. */
  private async resolve(args: readonly string[]): Promise<string[]> {
    const files = args.filter(isFileArg);
    const names = args.filter((a) => !isFileArg(a));
    if (files.length) await this.submit(files);
    for (const n of names) {
      if (!(await this.registry.getUnit(n))) {
        // fleetctl started instances of submitted templates.
        const info = unitNameInfo(n);
        const tpl = info.kind === 'instance' ? await this.registry.getUnit(info.template!) : undefined;
        if (!tpl) throw new FlotillaError('not-found', `unit ${n} is not submitted${info.kind === 'instance' ? ` (nor its template ${info.template})` : ''}`);
        const text = tpl.text;
        const checked = checkUnitText(n, text);
        if (this.checks.strict) throwIfProblems(checked.warnings, `${n}: --strict: warnings count as errors`);
        for (const w of checked.warnings) this.checks.onWarning?.(w);
        await this.registry.submitUnit(n, text);
      }
    }
    return [...files.map((f) => path.basename(f)), ...names];
  }

  async setState(args: readonly string[], state: DesiredState): Promise<string[]> {
    for (const a of args) {
      const info = unitNameInfo(path.basename(a));
      if (info.kind === 'template' && state !== 'inactive') {
        throw new FlotillaError('invalid-input', `${a} is a template: ${state === 'launched' ? 'start' : 'load'} an instance such as ${info.prefix}@1.${info.type}`);
      }
    }
    const names = await this.resolve(args);
    for (const n of names) await this.registry.setDesiredState(n, state);
    return names;
  }

  async destroy(names: readonly string[]): Promise<Array<{ name: string; existed: boolean }>> {
    const out: Array<{ name: string; existed: boolean }> = [];
    for (const n of names) out.push({ name: n, existed: await this.registry.destroyUnit(n) });
    return out;
  }

  async cat(name: string): Promise<string> {
    const u = await this.registry.getUnit(name);
    if (!u) throw new FlotillaError('not-found', `unit ${name} is not submitted`);
    return u.text;
  }

  /** One row per unit and machine it is on (global units: one per machine), plus unplaced units. */
  async listUnits(): Promise<UnitRow[]> {
    const snap = await this.registry.snapshot();
    const machines = new Map<string, MachineInfo>(snap.machines.map((m) => [m.id, m]));
    const states = new Map<string, UnitState>(snap.states.map((s) => [`${s.unit}\0${s.machineId}`, s]));
    const placements = new Map<string, Placement>(snap.placements.map((p) => [p.unit, p]));
    const now = Date.now();
    const failuresOf = new Map<string, UnitRow['failures']>();
    for (const h of snap.health) {
      if (Date.parse(h.avoidUntil) <= now) continue;
      failuresOf.set(h.unit, [...(failuresOf.get(h.unit) ?? []), { machineId: h.machineId, failures: h.failures, lastResult: h.lastResult, avoidUntil: h.avoidUntil }]);
    }
    const rollouts = new Map(snap.rollouts.filter((r) => ROLLOUT_IN_PROGRESS.includes(r.phase)).map((r) => [r.unit, { phase: r.phase, toHash: r.toHash, fromHash: r.fromHash }]));
    const rows: UnitRow[] = [];
    for (const job of snap.jobs) {
      const assigned = snap.schedule.filter((a) => a.unit === job.name);
      const failures = failuresOf.get(job.name) ?? [];
      const rollout = rollouts.get(job.name);
      if (assigned.length === 0) {
        const reason = placements.get(job.name)?.reason ?? (failures.length ? failures.map(avoidReason).join('; ') : undefined);
        rows.push({ unit: job.name, machine: undefined, address: undefined, desiredState: job.desiredState, active: job.desiredState === 'inactive' ? 'inactive' : '-', sub: '-', hash: job.hash, copyHash: undefined, reason, failures, rollout });
      }
      for (const a of assigned) {
        const st = states.get(`${job.name}\0${a.machineId}`);
        // Worth showing: a move (and why); the ordinary reasons (least loaded, kept, global) are not.
        const moved = a.reason !== undefined && (a.reason.startsWith('moved from') || a.reason === 'machine gone') ? a.reason : undefined;
        rows.push({
          unit: job.name,
          machine: a.machineId,
          address: machines.get(a.machineId)?.address,
          desiredState: job.desiredState,
          active: st?.active ?? '-',
          sub: st?.sub ?? '-',
          hash: job.hash,
          copyHash: a.hash,
          reason: moved ?? (failures.length ? failures.map(avoidReason).join('; ') : undefined),
          failures,
          rollout,
        });
      }
    }
    return rows;
  }

  async listUnitFiles(): Promise<Array<Job & { state: string; target: string | undefined }>> {
    const rows = await this.listUnits();
    const jobs = await this.registry.listUnits();
    return jobs.map((j) => {
      const mine = rows.filter((r) => r.unit === j.name && r.machine);
      const state = mine.length === 0 ? 'inactive' : mine.every((r) => r.active === 'active') ? 'launched' : 'loaded';
      return { ...j, state, target: mine.length ? mine.map((r) => r.machine!).join(',') : undefined };
    });
  }

  listMachines(): Promise<MachineInfo[]> {
    return this.registry.listMachines();
  }

  /** Waits until every named unit reports `active` (launched) or `predicate` holds. */
  async waitFor(names: readonly string[], predicate: (rows: UnitRow[]) => boolean, timeoutMs: number): Promise<UnitRow[]> {
    const deadline = Date.now() + timeoutMs;
    let rows: UnitRow[] = [];
    while (Date.now() < deadline) {
      rows = (await this.listUnits()).filter((r) => names.includes(r.unit));
      if (predicate(rows)) return rows;
      await sleep(100);
    }
    const detail = rows.map((r) => `${r.unit} ${r.machine ?? '-'} ${r.active}/${r.sub}${r.reason ? ` (${r.reason})` : ''}`).join('; ');
    throw new FlotillaError('timeout', `units did not reach the expected state in ${timeoutMs} ms: ${detail || 'no rows'}`);
  }
}
