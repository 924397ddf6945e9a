/**
 * The [Service] settings the process runner implements, read from a unit file with
 * systemd's semantics (systemd.service(5), systemd.exec(5), systemd.kill(5),
 * systemd.time(7)). Pure: host facts come in through SpecifierContext.
 *
 * Settings that would change what runs but are not implemented are errors rather
 * than silently ignored, so a unit never behaves differently here than under systemd
 * without saying so.
 */
import { constants as osConstants } from 'node:os';
import { throwIfProblems, type Problem } from '../../errors';
import { getEntries, getList, sectionsNamed, splitWords, unitNameInfo, type UnitEntry, type UnitFile, type UnitNameInfo } from '../unit-file';
import { parseBoolean } from '../xfleet';
import { parseExecCommand, type ExecCommand } from './command-line';
import { parseAssignment } from './environment';
import { expandSpecifiers, type SpecifierContext } from './specifiers';
import { parseTimeSpan } from './time-span';

export { substituteEnvironment, type ExecCommand } from './command-line';
export { parseAssignment, parseEnvironmentFile } from './environment';
export { expandSpecifiers, type SpecifierContext } from './specifiers';
export { parseTimeSpan } from './time-span';

export type ServiceType = 'simple' | 'exec' | 'oneshot';
export type RestartPolicy = 'no' | 'always' | 'on-success' | 'on-failure' | 'on-abnormal' | 'on-abort' | 'on-watchdog';

export interface ServiceConfig {
  type: ServiceType;
  execStartPre: ExecCommand[];
  execStart: ExecCommand[];
  execStartPost: ExecCommand[];
  execStop: ExecCommand[];
  execStopPost: ExecCommand[];
  /** Environment= assignments in order (later ones win). */
  environment: Array<[string, string]>;
  environmentFiles: Array<{ path: string; optional: boolean }>;
  workingDirectory?: { path: string; optional: boolean };
  remainAfterExit: boolean;
  restart: RestartPolicy;
  restartMs: number;
  /** Undefined: the runner's default. */
  timeoutStartMs?: number;
  timeoutStopMs?: number;
  killSignal: NodeJS.Signals;
  /** Extra exit codes and signals counted as a clean exit of the main process. */
  successExitCodes: number[];
  successSignals: NodeJS.Signals[];
  startLimitBurst: number;
  /** 0 disables the start limit. */
  startLimitIntervalMs: number;
  /** Resource limits set (CPUQuota=, MemoryMax=, MemoryLimit=): the scheduler places by them; without cgroups nothing enforces them. */
  unenforcedLimits: string[];
}

const EXEC_SETTINGS = ['ExecStartPre', 'ExecStart', 'ExecStartPost', 'ExecStop', 'ExecStopPost'] as const;
const SUPPORTED_SERVICE_KEYS = new Set<string>([
  ...EXEC_SETTINGS,
  'Type',
  'Environment',
  'EnvironmentFile',
  'WorkingDirectory',
  'RemainAfterExit',
  'Restart',
  'RestartSec',
  'TimeoutSec',
  'TimeoutStartSec',
  'TimeoutStopSec',
  'KillSignal',
  'KillMode',
  'SuccessExitStatus',
  // Pre-230 names, still accepted by systemd in [Service].
  'StartLimitBurst',
  'StartLimitInterval',
]);
/**
 * Resource limits: the scheduler reserves what they ask for (src/units/unit-policy.ts), so
 * units carry them; the process runner cannot enforce them (that takes a cgroup) and says so.
 */
const RESOURCE_LIMIT_KEYS = new Set(['CPUQuota', 'MemoryMax', 'MemoryLimit']);
/** Settings about logging only: output goes to the runner's log file instead. */
const IGNORED_SERVICE_KEYS = new Set(['SyslogIdentifier', 'StandardOutput', 'StandardError']);
const RESTART_POLICIES: readonly RestartPolicy[] = ['no', 'always', 'on-success', 'on-failure', 'on-abnormal', 'on-abort', 'on-watchdog'];

/** Normalises `TERM`, `SIGTERM` or `15` to `SIGTERM`; undefined if unknown. */
export function parseSignal(value: string): NodeJS.Signals | undefined {
  const signals = osConstants.signals as Record<string, number>;
  if (/^\d+$/.test(value)) {
    const num = Number(value);
    return Object.keys(signals).find((k) => signals[k] === num) as NodeJS.Signals | undefined;
  }
  const name = value.startsWith('SIG') ? value : `SIG${value}`;
  return Object.prototype.hasOwnProperty.call(signals, name) ? (name as NodeJS.Signals) : undefined;
}

/**
 * Reads the [Service] (and start-limit settings of [Unit]) of a `.service` unit.
 * Throws FlotillaError('invalid-input') listing every problem with `file:line`.
 */
export function parseServiceConfig(unit: UnitFile, ctx: SpecifierContext = {}): ServiceConfig {
  const problems: Problem[] = [];
  const file = unit.name;
  let info: UnitNameInfo;
  try {
    info = unitNameInfo(unit.name);
  } catch (err) {
    throwIfProblems([{ path: '', file, message: (err as Error).message }], `unit ${unit.name}`);
    throw err;
  }
  const at = (e: UnitEntry, section: string, message: string): void => {
    problems.push({ path: `${section}.${e.key}`, file, line: e.line, message });
  };
  if (info.type !== 'service') problems.push({ path: '', file, message: `the process runner runs only .service units, not .${info.type}` });
  if (info.kind === 'template') problems.push({ path: '', file, message: 'a template cannot be started; start an instance such as ' + `${info.prefix}@1.${info.type}` });

  for (const s of unit.sections) {
    for (const e of s.entries) {
      if (s.name === 'Service' && !SUPPORTED_SERVICE_KEYS.has(e.key) && !IGNORED_SERVICE_KEYS.has(e.key) && !RESOURCE_LIMIT_KEYS.has(e.key)) {
        at(e, s.name, `${e.key}= is not supported by the process runner (it needs systemd)`);
      }
      if (s.name === 'Unit' && /^(Condition|Assert)/.test(e.key)) {
        at(e, s.name, `${e.key}= is not supported by the process runner (it needs systemd)`);
      }
    }
  }

  /** The last non-empty value, after specifier expansion, or undefined. */
  const single = (section: string, key: string): { value: string; entry: UnitEntry } | undefined => {
    const entries = getEntries(unit, section, key);
    const e = entries[entries.length - 1];
    if (!e || e.value === '') return undefined;
    try {
      return { value: expandSpecifiers(e.value, info, ctx), entry: e };
    } catch (err) {
      at(e, section, (err as Error).message);
      return undefined;
    }
  };
  const timeSpan = (section: string, key: string): number | undefined => {
    const v = single(section, key);
    if (!v) return undefined;
    try {
      const ms = parseTimeSpan(v.value);
      // systemd: 0 disables a timeout.
      return ms === 0 && key.startsWith('Timeout') ? Infinity : ms;
    } catch (err) {
      at(v.entry, section, (err as Error).message);
      return undefined;
    }
  };
  const bool = (section: string, key: string, fallback: boolean): boolean => {
    const v = single(section, key);
    if (!v) return fallback;
    const b = parseBoolean(v.value);
    if (b === undefined) at(v.entry, section, `${JSON.stringify(v.value)} is not a boolean`);
    return b ?? fallback;
  };

  const typeValue = single('Service', 'Type');
  let type: ServiceType = 'simple';
  if (typeValue) {
    const t = typeValue.value;
    if (t === 'simple' || t === 'exec' || t === 'oneshot') type = t;
    else if (t === 'idle') type = 'simple'; // idle only delays the start until other jobs are dispatched
    else if (t === 'forking' || t === 'notify' || t === 'notify-reload' || t === 'dbus') {
      at(typeValue.entry, 'Service', `Type=${t} is not supported by the process runner (it cannot track a daemon that forks or notifies); use Type=simple or exec with a foreground command`);
    } else at(typeValue.entry, 'Service', `unknown Type=${t}`);
  }

  const commands = (key: (typeof EXEC_SETTINGS)[number]): ExecCommand[] => {
    const out: ExecCommand[] = [];
    for (const e of getList(unit, 'Service', key)) {
      try {
        const words = splitWords(e.value).map((w) => expandSpecifiers(w, info, ctx));
        if (words.length === 0) continue;
        out.push(parseExecCommand(words, key, e.line));
      } catch (err) {
        at(e, 'Service', (err as Error).message);
      }
    }
    return out;
  };
  const [execStartPre, execStart, execStartPost, execStop, execStopPost] = EXEC_SETTINGS.map(commands) as [
    ExecCommand[],
    ExecCommand[],
    ExecCommand[],
    ExecCommand[],
    ExecCommand[],
  ];
  if (type !== 'oneshot') {
    if (execStart.length === 0) problems.push({ path: 'Service.ExecStart', file, message: `no ExecStart= (only Type=oneshot may do without one)` });
    if (execStart.length > 1) {
      problems.push({ path: 'Service.ExecStart', file, line: execStart[1]!.line, message: `more than one ExecStart= is only allowed for Type=oneshot` });
    }
  } else if (execStart.length === 0 && execStop.length === 0) {
    problems.push({ path: 'Service.ExecStart', file, message: 'neither ExecStart= nor ExecStop=' });
  }

  const environment: Array<[string, string]> = [];
  for (const e of getList(unit, 'Service', 'Environment')) {
    try {
      for (const w of splitWords(e.value)) environment.push(parseAssignment(expandSpecifiers(w, info, ctx)));
    } catch (err) {
      at(e, 'Service', (err as Error).message);
    }
  }
  const environmentFiles: Array<{ path: string; optional: boolean }> = [];
  for (const e of getList(unit, 'Service', 'EnvironmentFile')) {
    try {
      let p = expandSpecifiers(e.value, info, ctx);
      const optional = p.startsWith('-');
      if (optional) p = p.slice(1);
      if (!p.startsWith('/')) throw new Error(`EnvironmentFile= needs an absolute path, got ${JSON.stringify(p)}`);
      environmentFiles.push({ path: p, optional });
    } catch (err) {
      at(e, 'Service', (err as Error).message);
    }
  }
  let workingDirectory: ServiceConfig['workingDirectory'];
  const wd = single('Service', 'WorkingDirectory');
  if (wd) {
    let p = wd.value;
    const optional = p.startsWith('-');
    if (optional) p = p.slice(1);
    if (p === '~') {
      if (ctx.home === undefined) at(wd.entry, 'Service', 'WorkingDirectory=~ needs a home directory');
      else workingDirectory = { path: ctx.home, optional };
    } else if (!p.startsWith('/')) at(wd.entry, 'Service', `WorkingDirectory= needs an absolute path or ~, got ${JSON.stringify(p)}`);
    else workingDirectory = { path: p, optional };
  }

  let restart: RestartPolicy = 'no';
  const r = single('Service', 'Restart');
  if (r) {
    if ((RESTART_POLICIES as readonly string[]).includes(r.value)) restart = r.value as RestartPolicy;
    else at(r.entry, 'Service', `unknown Restart=${r.value} (one of ${RESTART_POLICIES.join(', ')})`);
    if (type === 'oneshot' && (restart === 'always' || restart === 'on-success')) {
      at(r.entry, 'Service', `Restart=${restart} is not allowed for Type=oneshot (use on-failure)`);
    }
  }

  let killSignal: NodeJS.Signals = 'SIGTERM';
  const ks = single('Service', 'KillSignal');
  if (ks) {
    const sig = parseSignal(ks.value);
    if (sig) killSignal = sig;
    else at(ks.entry, 'Service', `unknown signal ${ks.value}`);
  }
  const km = single('Service', 'KillMode');
  if (km && km.value !== 'control-group') {
    at(km.entry, 'Service', `KillMode=${km.value} is not supported by the process runner (it always stops the whole process group, like control-group)`);
  }

  const successExitCodes: number[] = [];
  const successSignals: NodeJS.Signals[] = [];
  for (const e of getList(unit, 'Service', 'SuccessExitStatus')) {
    for (const w of e.value.split(/\s+/).filter(Boolean)) {
      if (/^\d+$/.test(w) && Number(w) <= 255) successExitCodes.push(Number(w));
      else {
        const sig = /^\d+$/.test(w) ? undefined : parseSignal(w);
        if (sig) successSignals.push(sig);
        else at(e, 'Service', `${JSON.stringify(w)} is neither an exit status (0-255) nor a signal name`);
      }
    }
  }

  const timeoutBoth = timeSpan('Service', 'TimeoutSec');
  const restartMs = timeSpan('Service', 'RestartSec') ?? 100;
  const burstValue = single('Unit', 'StartLimitBurst') ?? single('Service', 'StartLimitBurst');
  let startLimitBurst = 5;
  if (burstValue) {
    if (/^\d+$/.test(burstValue.value)) startLimitBurst = Number(burstValue.value);
    else at(burstValue.entry, 'Unit', `StartLimitBurst=${burstValue.value} is not a number`);
  }
  const interval =
    timeSpan('Unit', 'StartLimitIntervalSec') ?? timeSpan('Unit', 'StartLimitInterval') ?? timeSpan('Service', 'StartLimitInterval') ?? 10_000;

  const config: ServiceConfig = {
    type,
    execStartPre,
    execStart,
    execStartPost,
    execStop,
    execStopPost,
    environment,
    environmentFiles,
    workingDirectory,
    remainAfterExit: bool('Service', 'RemainAfterExit', false),
    restart,
    restartMs: restartMs === Infinity ? 100 : restartMs,
    timeoutStartMs: timeSpan('Service', 'TimeoutStartSec') ?? timeoutBoth,
    timeoutStopMs: timeSpan('Service', 'TimeoutStopSec') ?? timeoutBoth,
    killSignal,
    successExitCodes,
    successSignals,
    startLimitBurst,
    startLimitIntervalMs: interval,
    unenforcedLimits: (sectionsNamed(unit, 'Service').flatMap((sec) => sec.entries).filter((e) => RESOURCE_LIMIT_KEYS.has(e.key) && e.value !== '')).map((e) => `${e.key}=${e.value}`),
  };
  throwIfProblems(problems, `unit ${unit.name}`);
  return config;
}
