/**
 * `flotilla units ...` against the registry: the implementations, loaded when a command
 * runs (declarations: units.ts), and the connection other host commands share.
 */
import { FlotillaError, formatProblem, type Problem } from '../../errors';
import { readTextFile } from '../../util/fs';
import { UnitsClient, checkUnitFile, checkUnitText, readUnitArgs, type UnitRow } from '../../units/client';
import { Registry, type Rollout } from '../../units/registry';
import { DEFAULT_ROLLOUT_OPTIONS, resumeRollout, rollBack, updateTemplate, updateUnit, type RolloutOutcome } from '../../units/rollout';
import { avoidReason } from '../../units/unit-policy';
import { connectRecord } from '../../provision/up';
import { readRecord } from '../../cluster/store';
import { intOpt, stringOpt, type CommandRun, type ParsedCommand, type CliIO } from '../command';
import { EXIT_OK, exitStatus } from '../exit-codes';
import { table } from '../format';
import { flagOrEnv, registryFromFlags } from './etcd-flags';
import { unitNameInfo } from '../../units/unit-file';

const opt = flagOrEnv;

export interface Connection {
  registry: Registry;
  close(): Promise<void>;
}

/**
 * The registry from flags or FLOTILLA_* variables; without endpoints, `--cluster NAME`
 * naming a local cluster connects through an SSH tunnel to one of its etcd members.
 */
export async function connectFromArgs(p: ParsedCommand, cmd: string): Promise<Connection> {
  const endpoints = opt(p, 'endpoints', 'FLOTILLA_ENDPOINTS');
  const cluster = opt(p, 'cluster', 'FLOTILLA_CLUSTER');
  if (!endpoints) {
    const record = cluster ? readRecord(cluster) : undefined;
    if (record) return connectRecord(record);
    throw new FlotillaError('usage', `flotilla ${cmd}: no etcd endpoints: pass --endpoints or set FLOTILLA_ENDPOINTS${cluster ? ` (no local cluster named ${cluster})` : ', or --cluster NAME of a local cluster'}`);
  }
  return registryFromFlags(p, cmd, endpoints);
}

async function withClient<T>(p: ParsedCommand, cmd: string, fn: (c: UnitsClient) => Promise<T>, io?: CliIO): Promise<T> {
  const conn = await connectFromArgs(p, cmd);
  try {
    const checks = { strict: Boolean(p.values.strict), ...(io ? { onWarning: (w: Problem) => io.err(`warning: ${formatProblem(w)}\n`) } : {}) };
    return await fn(new UnitsClient(conn.registry, checks));
  } finally {
    await conn.close();
  }
}

function needArgs(p: ParsedCommand, cmd: string, what: string): string[] {
  if (p.positionals.length === 0) throw new FlotillaError('usage', `flotilla units ${cmd}: give at least one ${what}`);
  return p.positionals;
}

function printJsonOr(io: CliIO, p: ParsedCommand, data: unknown, text: () => string): void {
  io.out(p.values.json ? `${JSON.stringify(data, null, 2)}\n` : text());
}

/** Seconds (may be fractional) from a flag, in ms. */
function secondsOpt(p: ParsedCommand, name: string, cmd: string, fallbackMs: number): number {
  const v = stringOpt(p, name, cmd);
  if (v === undefined) return fallbackMs;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new FlotillaError('usage', `flotilla ${cmd}: --${name} must be a number of seconds (got "${v}")`);
  return Math.round(n * 1000);
}

function describeRollout(r: Rollout): string {
  const lines = [
    `● ${r.unit}: ${r.phase} ${r.fromHash.slice(0, 12)} -> ${r.toHash.slice(0, 12)} (started ${r.startedAt}, updated ${r.updatedAt})`,
    `   options: ${r.options.maxUnavailable} at a time, timeout ${r.options.timeoutMs / 1000} s, min ready ${r.options.minReadyMs / 1000} s${r.options.healthCmd ? `, health command ${JSON.stringify(r.options.healthCmd)}` : ''}${r.options.rollbackOnFailure ? ', rollback on failure' : ''}`,
    ...r.steps.map((s) => `   ${s.at}  ${s.machineId}  ${s.hash.slice(0, 12)}  ${s.ok ? 'ready ' : 'FAILED'}  ${s.detail}`),
    ...(r.error ? [`   error: ${r.error}`] : []),
  ];
  return `${lines.join('\n')}\n`;
}

/** Prints the outcome; a rollout that did not finish is an error (exit 6) naming where it stands. */
function finishRollout(io: CliIO, p: ParsedCommand, outcome: RolloutOutcome): number {
  printJsonOr(io, p, outcome.rollout, () => describeRollout(outcome.rollout));
  if (outcome.ok) return EXIT_OK;
  throw rolloutFailure(outcome.rollout);
}

function rolloutFailure(r: Rollout): FlotillaError {
  const next = r.phase === 'rolled-back' ? 'the old content runs everywhere again' : r.phase === 'failed' ? `fix and run: flotilla units rollout resume ${r.unit} (or rollback)` : '';
  return new FlotillaError('external', `rolling update of ${r.unit} failed: ${r.error ?? r.phase}; ${next}`);
}

/** `units rollout resume|rollback UNIT`. */
export function rolloutVerb(verb: 'resume' | 'rollback'): CommandRun {
  return async (p, io) => {
    const [name] = needArgs(p, `rollout ${verb}`, 'unit name');
    return withClient(p, `units rollout ${verb}`, async (c) => {
      const drive = verb === 'resume' ? resumeRollout : rollBack;
      return finishRollout(io, p, await drive(c.registry, name!, { log: (l) => io.err(`${l}\n`) }));
    });
  };
}

function statusText(r: UnitRow): string {
  return [
    `● ${r.unit}`,
    `   Desired: ${r.desiredState}`,
    `   Machine: ${r.machine ? `${r.machine}${r.address ? ` (${r.address})` : ''}` : '-'}`,
    `    Active: ${r.active} (${r.sub})`,
    `   Content: ${r.hash.slice(0, 12)}${r.copyHash && r.copyHash !== r.hash ? ` (this copy: ${r.copyHash.slice(0, 12)})` : ''}`,
    ...(r.rollout ? [`   Rollout: ${r.rollout.phase} ${r.rollout.fromHash.slice(0, 12)} -> ${r.rollout.toHash.slice(0, 12)}`] : []),
    ...(r.machine ? (r.reason ? [`     Moved: ${r.reason}`] : []) : r.reason ? [`  Not placed: ${r.reason}`] : []),
    ...r.failures.map((f) => `  Failures: ${avoidReason(f)}`),
    '',
  ].join('\n');
}

/** `units load|start|stop|unload`: set the units' desired state, then (unless --no-block) wait for it. */
export function stateVerb(verb: string, state: 'inactive' | 'loaded' | 'launched'): CommandRun {
  return async (p, io) => {
    const args = needArgs(p, verb, 'unit name or file');
    return withClient(p, `units ${verb}`, async (c) => {
      const names = await c.setState(args, state);
      if (!p.values['no-block'] && state !== 'inactive') {
        const timeoutMs = Number(stringOpt(p, 'block-attempts', `units ${verb}`) ?? 30) * 1000;
        const rows = await c.waitFor(names, (rows) => names.every((n) => rows.some((r) => r.unit === n && r.machine && (state === 'loaded' || r.active === 'active'))), timeoutMs);
        printJsonOr(io, p, rows, () => rows.map((r) => `Unit ${r.unit} ${state === 'launched' ? 'launched' : 'loaded'} on ${r.machine}${r.address ? `/${r.address}` : ''}\n`).join(''));
      } else {
        printJsonOr(io, p, names, () => names.map((n) => `Unit ${n} ${state}\n`).join(''));
      }
      return EXIT_OK;
    }, io);
  };
}

export const submit: CommandRun = async (p, io) => {
  const files = needArgs(p, 'submit', 'unit file');
  return withClient(p, 'units submit', async (c) => {
    const res = await c.submit(files);
    printJsonOr(io, p, res, () => res.map((r) => `Unit ${r.name} ${r.created ? 'submitted' : 'already submitted (same content)'}\n`).join(''));
    return EXIT_OK;
  }, io);
};

export const restart: CommandRun = async (p, io) => {
  const names = needArgs(p, 'restart', 'unit name');
  return withClient(p, 'units restart', async (c) => {
    await c.setState(names, 'loaded');
    await c.waitFor(names, (rows) => rows.every((r) => r.active !== 'active'), 30_000);
    await c.setState(names, 'launched');
    const rows = await c.waitFor(names, (rows) => names.every((n) => rows.some((r) => r.unit === n && r.active === 'active')), 30_000);
    printJsonOr(io, p, rows, () => rows.map((r) => `Unit ${r.unit} restarted on ${r.machine}\n`).join(''));
    return EXIT_OK;
  });
};

export const destroy: CommandRun = async (p, io) => {
  const names = needArgs(p, 'destroy', 'unit name');
  return withClient(p, 'units destroy', async (c) => {
    const res = await c.destroy(names);
    printJsonOr(io, p, res, () => res.map((r) => `${r.existed ? 'Destroyed' : 'Not found:'} ${r.name}\n`).join(''));
    // Every unit is destroyed either way; one that was never submitted is reported as not found.
    return res.every((r) => r.existed) ? EXIT_OK : exitStatus('not-found');
  });
};

export const cat: CommandRun = async (p, io) => {
  const [name] = needArgs(p, 'cat', 'unit name');
  return withClient(p, 'units cat', async (c) => {
    io.out(await c.cat(name!));
    return EXIT_OK;
  });
};

export const status: CommandRun = async (p, io) => {
  const names = needArgs(p, 'status', 'unit name');
  return withClient(p, 'units status', async (c) => {
    const rows = (await c.listUnits()).filter((r) => names.includes(r.unit));
    const missing = names.filter((n) => !rows.some((r) => r.unit === n));
    if (missing.length) throw new FlotillaError('not-found', `not submitted: ${missing.join(', ')}`);
    printJsonOr(io, p, rows, () => rows.map(statusText).join('\n'));
    return EXIT_OK;
  });
};

export const listUnits: CommandRun = async (p, io) => {
  return withClient(p, 'units list-units', async (c) => {
    const rows = await c.listUnits();
    printJsonOr(io, p, rows, () =>
      table(
        ['UNIT', 'MACHINE', 'ACTIVE', 'SUB', 'REASON'],
        rows.map((r) => [r.unit, r.machine ? `${p.values.full ? r.machine : r.machine.slice(0, 8)}...${r.address ? `/${r.address}` : ''}` : '-', r.active, r.sub, r.reason ?? '']),
      ),
    );
    return EXIT_OK;
  });
};

export const listUnitFiles: CommandRun = async (p, io) => {
  return withClient(p, 'units list-unit-files', async (c) => {
    const rows = await c.listUnitFiles();
    printJsonOr(io, p, rows, () => table(['UNIT', 'HASH', 'DSTATE', 'STATE', 'TARGET'], rows.map((r) => [r.name, r.hash.slice(0, 7), r.desiredState, r.state, r.target ?? '-'])));
    return EXIT_OK;
  });
};

export const listMachines: CommandRun = async (p, io) => {
  return withClient(p, 'units list-machines', async (c) => {
    const rows = await c.listMachines();
    printJsonOr(io, p, rows, () =>
      table(
        ['MACHINE', 'IP', 'METADATA', 'CPUS', 'MEMORY'],
        rows.map((m) => [
          p.values.full ? m.id : `${m.id.slice(0, 8)}...`,
          m.address,
          Object.entries(m.metadata).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join(',') || '-',
          String(m.capacity.cpus),
          `${m.capacity.memoryMiB} MiB`,
        ]),
      ),
    );
    return EXIT_OK;
  });
};

export const update: CommandRun = async (p, io) => {
  const files = needArgs(p, 'update', 'unit file');
  if (files.length !== 1) throw new FlotillaError('usage', 'flotilla units update: give exactly one unit file');
  const [unit] = readUnitArgs(files, { onWarning: (w) => io.err(`warning: ${formatProblem(w)}\n`) });
  const options = {
    maxUnavailable: intOpt(p, 'max-unavailable', 'units update', 1, 10_000) ?? DEFAULT_ROLLOUT_OPTIONS.maxUnavailable,
    timeoutMs: secondsOpt(p, 'timeout', 'units update', DEFAULT_ROLLOUT_OPTIONS.timeoutMs),
    minReadyMs: secondsOpt(p, 'min-ready', 'units update', DEFAULT_ROLLOUT_OPTIONS.minReadyMs),
    rollbackOnFailure: Boolean(p.values['rollback-on-failure']),
    ...(stringOpt(p, 'health-cmd', 'units update') ? { healthCmd: stringOpt(p, 'health-cmd', 'units update')! } : {}),
  };
  return withClient(p, 'units update', async (c) => {
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      if (unitNameInfo(unit!.name).kind === 'template') {
        const t = await updateTemplate(c.registry, unit!.name, unit!.text, options, {
          log: (l) => io.err(`${l}\n`),
          signal: abort.signal,
          checkInstance: (name, text) => void checkUnitText(name, text, `${files[0]} (as ${name})`),
        });
        printJsonOr(io, p, t, () => `${t.updated.map((u) => `Unit ${u} updated\n`).join('')}${t.reverted.map((u) => `Unit ${u} put back to its old content\n`).join('')}`);
        if (t.failed) throw rolloutFailure(t.failed.outcome.rollout);
        return EXIT_OK;
      }
      const outcome = await updateUnit(c.registry, unit!.name, unit!.text, options, { log: (l) => io.err(`${l}\n`), signal: abort.signal });
      if (!outcome) {
        printJsonOr(io, p, { unit: unit!.name, changed: false }, () => `Unit ${unit!.name} already has this content\n`);
        return EXIT_OK;
      }
      return finishRollout(io, p, outcome);
    } finally {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    }
  });
};

export const rolloutStatus: CommandRun = async (p, io) => {
  const names = needArgs(p, 'rollout status', 'unit name');
  return withClient(p, 'units rollout status', async (c) => {
    const found: Rollout[] = [];
    for (const n of names) {
      const r = await c.registry.getRollout(n);
      if (!r) throw new FlotillaError('not-found', `unit ${n} has no rolling update`);
      found.push(r);
    }
    printJsonOr(io, p, found, () => found.map(describeRollout).join('\n'));
    return EXIT_OK;
  });
};

export const verify: CommandRun = async (p, io) => {
  const files = needArgs(p, 'verify', 'unit file');
  const results = files.map((f) => ({ file: f, ...checkUnitFile(f, readTextFile(f)) }));
  const strict = Boolean(p.values.strict);
  printJsonOr(io, p, results, () =>
    results
      .map((r) => {
        const verdict = r.problems.length || (strict && r.warnings.length) ? 'invalid ' : r.warnings.length ? 'warnings' : 'ok      ';
        return `${verdict} ${r.file}\n${r.problems.map((x) => `  ${formatProblem(x)}\n`).join('')}${r.warnings.map((w) => `  warning: ${formatProblem(w)}\n`).join('')}`;
      })
      .join(''),
  );
  return results.every((r) => r.problems.length === 0 && !(strict && r.warnings.length > 0)) ? EXIT_OK : exitStatus('invalid-input');
};
