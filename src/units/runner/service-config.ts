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

// ---------------------------------------------------------------------------
// Time spans

const TIME_UNITS_MS: Readonly<Record<string, number>> = {
  usec: 0.001,
  us: 0.001,
  µs: 0.001,
  msec: 1,
  ms: 1,
  seconds: 1000,
  second: 1000,
  sec: 1000,
  s: 1000,
  minutes: 60_000,
  minute: 60_000,
  min: 60_000,
  m: 60_000,
  hours: 3_600_000,
  hour: 3_600_000,
  hr: 3_600_000,
  h: 3_600_000,
  days: 86_400_000,
  day: 86_400_000,
  d: 86_400_000,
  weeks: 604_800_000,
  week: 604_800_000,
  w: 604_800_000,
  months: 2_629_800_000,
  month: 2_629_800_000,
  M: 2_629_800_000,
  years: 31_557_600_000,
  year: 31_557_600_000,
  y: 31_557_600_000,
};

/**
 * A systemd time span in milliseconds: `100ms`, `1s`, `2min`, `1min 30s`, `1.5s`, a bare
 * number (seconds), or `infinity` (Infinity). Throws Error for anything else.
 */
export function parseTimeSpan(value: string): number {
  const v = value.trim();
  if (v === 'infinity') return Infinity;
  if (v === '') throw new Error('empty time span');
  let total = 0;
  const re = /\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Zµ]*)/gy;
  let pos = 0;
  while (pos < v.length) {
    re.lastIndex = pos;
    const m = re.exec(v);
    if (!m || m[0] === '') throw new Error(`bad time span ${JSON.stringify(value)} (expected e.g. 100ms, 5s, 2min, 1min 30s)`);
    const unit = m[2] === '' ? 's' : m[2]!;
    const factor = TIME_UNITS_MS[unit];
    if (factor === undefined) throw new Error(`bad time span ${JSON.stringify(value)}: unknown unit ${unit}`);
    total += parseFloat(m[1]!) * factor;
    pos = re.lastIndex;
    while (pos < v.length && /\s/.test(v[pos]!)) pos++;
  }
  return total;
}

// ---------------------------------------------------------------------------
// Specifiers

/** Host facts for the host specifiers; all optional so pure callers can leave them out. */
export interface SpecifierContext {
  hostname?: string;
  machineId?: string;
  /** %t: the runtime directory (/run for system services). */
  runtimeDir?: string;
  home?: string;
  userName?: string;
  uid?: number;
}

/** systemd's unit_name_unescape: `-` is `/`, `\xNN` is the byte NN. */
function unescapeUnitName(s: string): string {
  return s.replace(/\\x([0-9a-fA-F]{2})|-/g, (m, hex: string | undefined) => (hex ? String.fromCharCode(parseInt(hex, 16)) : m === '-' ? '/' : m));
}

/**
 * Expands systemd specifiers (systemd.unit(5)): %n %N %p %P %i %I %f %H %m %t %T %V %h
 * %u %U %%. Throws Error for others, or when a host fact is needed but missing.
 */
export function expandSpecifiers(value: string, info: UnitNameInfo, ctx: SpecifierContext): string {
  let out = '';
  const need = <T>(v: T | undefined, spec: string): T => {
    if (v === undefined) throw new Error(`specifier %${spec} needs a value this host does not provide`);
    return v;
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c !== '%') {
      out += c;
      continue;
    }
    const s = value[++i];
    switch (s) {
      case '%':
        out += '%';
        break;
      case 'n':
        out += info.name;
        break;
      case 'N':
        out += info.stem;
        break;
      case 'p':
        out += info.prefix;
        break;
      case 'P':
        out += unescapeUnitName(info.prefix);
        break;
      case 'i':
        out += info.instance;
        break;
      case 'I':
        out += unescapeUnitName(info.instance);
        break;
      case 'f':
        out += `/${unescapeUnitName(info.instance || info.prefix).replace(/^\/+/, '')}`;
        break;
      case 'H':
        out += need(ctx.hostname, 'H');
        break;
      case 'm':
        out += need(ctx.machineId, 'm');
        break;
      case 't':
        out += ctx.runtimeDir ?? '/run';
        break;
      case 'T':
        out += '/tmp';
        break;
      case 'V':
        out += '/var/tmp';
        break;
      case 'h':
        out += need(ctx.home, 'h');
        break;
      case 'u':
        out += need(ctx.userName, 'u');
        break;
      case 'U':
        out += String(need(ctx.uid, 'U'));
        break;
      case undefined:
        throw new Error('lone "%" at the end (write %% for a literal %)');
      default:
        throw new Error(`unsupported specifier %${s} (write %% for a literal %)`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Environment

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Parses `NAME=VALUE`; throws Error if it is not a valid assignment. */
export function parseAssignment(word: string): [string, string] {
  const eq = word.indexOf('=');
  const name = eq < 0 ? word : word.slice(0, eq);
  if (eq < 0 || !ENV_NAME.test(name)) throw new Error(`${JSON.stringify(word)} is not a NAME=VALUE assignment`);
  return [name, word.slice(eq + 1)];
}

/**
 * Parses an EnvironmentFile= file: `NAME=VALUE` lines, `#`/`;` comment lines, blank
 * lines; values may be quoted with "..." (backslash escapes \" \\ \$ \` and
 * backslash-newline) or '...' (literal), may span lines inside quotes, and
 * unquoted values lose trailing whitespace. Throws Error naming the line.
 */
export function parseEnvironmentFile(text: string, file: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const n = text.length;
  let i = 0;
  let line = 1;
  const fail = (msg: string): never => {
    throw new Error(`${file}:${line}: ${msg}`);
  };
  while (i < n) {
    // Skip leading whitespace and blank lines.
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\r' || text[i] === '\n')) {
      if (text[i] === '\n') line++;
      i++;
    }
    if (i >= n) break;
    if (text[i] === '#' || text[i] === ';') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    const startLine = line;
    let name = '';
    while (i < n && text[i] !== '=' && text[i] !== '\n') name += text[i++];
    name = name.trim();
    if (i >= n || text[i] !== '=') fail(`expected NAME=VALUE, got ${JSON.stringify(name)}`);
    if (!ENV_NAME.test(name)) fail(`invalid variable name ${JSON.stringify(name)}`);
    i++; // '='
    while (i < n && (text[i] === ' ' || text[i] === '\t')) i++;
    let value = '';
    let trailingSpace = 0; // unquoted trailing whitespace, dropped at the end of the line
    while (i < n && text[i] !== '\n' && text[i] !== '\r') {
      const c = text[i]!;
      if (c === '"') {
        i++;
        for (;;) {
          if (i >= n) fail(`unterminated double quote (opened on line ${startLine})`);
          const d = text[i]!;
          if (d === '"') break;
          if (d === '\\' && i + 1 < n) {
            const e = text[i + 1]!;
            if (e === '\n') {
              line++;
              i += 2;
              continue;
            }
            if ('"\\$`'.includes(e)) {
              value += e;
              i += 2;
              continue;
            }
          }
          if (d === '\n') line++;
          value += d;
          i++;
        }
        i++;
        trailingSpace = 0;
      } else if (c === "'") {
        const end = text.indexOf("'", i + 1);
        if (end < 0) fail(`unterminated single quote (opened on line ${startLine})`);
        const chunk = text.slice(i + 1, end);
        line += chunk.split('\n').length - 1;
        value += chunk;
        i = end + 1;
        trailingSpace = 0;
      } else if (c === '\\' && i + 1 < n) {
        const e = text[i + 1]!;
        if (e === '\n') line++;
        else value += e;
        i += 2;
        trailingSpace = 0;
      } else {
        value += c;
        trailingSpace = c === ' ' || c === '\t' ? trailingSpace + 1 : 0;
        i++;
      }
    }
    out.push([name, value.slice(0, value.length - trailingSpace)]);
  }
  return out;
}

/**
 * systemd's environment substitution on an expanded command line: `${NAME}` anywhere
 * in a word becomes the value (unset: empty); a word that is exactly `$NAME` becomes the
 * value split at whitespace (zero or more words); `$$` is a literal `$`; any other `$`
 * is left alone (so `sh -c 'echo $HOME'` reaches the shell intact).
 */
export function substituteEnvironment(words: readonly string[], env: Readonly<Record<string, string>>): string[] {
  const out: string[] = [];
  const lookup = (name: string): string => (Object.prototype.hasOwnProperty.call(env, name) ? env[name]! : '');
  for (const word of words) {
    const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(word);
    if (whole) {
      out.push(...lookup(whole[1]!).split(/[ \t\n\r]+/).filter((w) => w !== ''));
      continue;
    }
    out.push(word.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m: string, name: string | undefined) => (name === undefined ? '$' : lookup(name))));
  }
  return out;
}

// ---------------------------------------------------------------------------
// The service configuration

export interface ExecCommand {
  /** The executable: absolute, or a name looked up in PATH. */
  path: string;
  /** argv including argv[0]. */
  argv: string[];
  /** `-` prefix: a failure is not a failure. */
  ignoreFailure: boolean;
  /** `:` prefix: no environment substitution. */
  noSubstitution: boolean;
  /** Where it was defined, for messages. */
  line: number;
  setting: string;
}

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
        let first = words[0]!;
        let ignoreFailure = false;
        let noSubstitution = false;
        let separateArgv0 = false;
        for (;;) {
          const p = first[0];
          if (p === '-') ignoreFailure = true;
          else if (p === ':') noSubstitution = true;
          else if (p === '@') separateArgv0 = true;
          else if (p === '+' || p === '!') {
            // Privilege prefixes only matter with User=/sandboxing, which this runner rejects.
          } else if (p === '|') throw new Error('the "|" (run via shell) prefix is not supported; write /bin/sh -c \'...\'');
          else break;
          first = first.slice(1);
        }
        if (first === '') throw new Error('no executable');
        if (first.includes('$')) throw new Error('the executable cannot be a variable');
        const argv = separateArgv0 ? words.slice(1) : [first, ...words.slice(1)];
        if (argv.length === 0) throw new Error('"@" needs an argv[0] after the executable');
        out.push({ path: first, argv, ignoreFailure, noSubstitution, line: e.line, setting: key });
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
