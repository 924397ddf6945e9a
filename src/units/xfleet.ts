/**
 * The `[X-Fleet]` section: where a unit may run. Semantics follow fleet
 * (coreos/fleet Documentation/unit-files-and-scheduling.md, job/job.go), with the
 * differences documented in docs/units.md: invalid values and combinations are
 * errors here, where fleet often ignored them silently.
 *
 * Everything in this module is pure: the engine calls it on every reconcile.
 */
import { FlotillaError, throwIfProblems, type Problem } from '../errors';
import { renameUnit, splitWords, unitNameInfo, type UnitFile, type UnitNameInfo } from './unit-file';
import { nearest } from '../util/suggest';

export const XFLEET_SECTION = 'X-Fleet';

export type XFleetOption = 'MachineID' | 'MachineOf' | 'MachineMetadata' | 'Conflicts' | 'Global' | 'Replaces';

/** Accepted keys, including the names fleet deprecated in 0.8 but still read. */
const KEY_ALIASES: Readonly<Record<string, XFleetOption>> = {
  MachineID: 'MachineID',
  MachineOf: 'MachineOf',
  MachineMetadata: 'MachineMetadata',
  Conflicts: 'Conflicts',
  Global: 'Global',
  Replaces: 'Replaces',
  'X-ConditionMachineID': 'MachineID',
  'X-ConditionMachineOf': 'MachineOf',
  'X-ConditionMachineMetadata': 'MachineMetadata',
  'X-Conflicts': 'Conflicts',
};

/** Keys starting with this are Flotilla extensions: kept raw, interpreted elsewhere. */
export const EXTENSION_PREFIX = 'X-Flotilla';

export interface MetadataRequirement {
  key: string;
  /** The machine's value for `key` must be one of these. */
  values: string[];
}

export interface XFleetExtension {
  key: string;
  value: string;
  line: number;
}

export interface XFleetOptions {
  /** The only machine the unit may run on (full machine ID). */
  machineId?: string;
  /** Units this one must share a machine with (exact names). */
  machineOf: string[];
  /** Different keys must all match (AND); values listed for one key are alternatives (OR). */
  machineMetadata: MetadataRequirement[];
  /** Go path.Match globs: never share a machine with a unit whose name matches. */
  conflicts: string[];
  /** Run on every machine that matches machineMetadata. */
  global: boolean;
  /** Units this one pushes off the machine it is placed on. */
  replaces: string[];
  /** `X-Flotilla*` keys, verbatim and in file order. */
  extensions: XFleetExtension[];
  /** Line of the first assignment of each option (for error messages about combinations). */
  lines: Partial<Record<XFleetOption, number>>;
}

export function emptyXFleetOptions(): XFleetOptions {
  return { machineOf: [], machineMetadata: [], conflicts: [], global: false, replaces: [], extensions: [], lines: {} };
}

// ---------------------------------------------------------------------------
// Specifiers

/**
 * Expands the specifiers fleet supports inside [X-Fleet] (`%n %N %p %i`) plus `%%`.
 * Any other specifier stays as written, as fleet left it, and is passed to `literal`:
 * [X-Fleet] is read by the scheduler, not by systemd on the target machine, so host
 * specifiers such as %H have no meaning there.
 */
export function expandXFleetSpecifiers(value: string, info: UnitNameInfo, literal: (specifier: string) => void = () => undefined): string {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c !== '%') {
      out += c;
      continue;
    }
    const s = value[++i];
    switch (s) {
      case 'n':
        out += info.name;
        break;
      case 'N':
        out += info.stem;
        break;
      case 'p':
        out += info.prefix;
        break;
      case 'i':
        out += info.instance;
        break;
      case '%':
        out += '%';
        break;
      case undefined:
        out += '%';
        literal('%');
        break;
      default:
        out += `%${s}`;
        literal(`%${s}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Globs (Go path.Match)

type GlobToken =
  | { t: 'lit'; c: string }
  | { t: 'any' }
  | { t: 'star' }
  | { t: 'class'; negate: boolean; ranges: Array<[string, string]> };

const globCache = new Map<string, GlobToken[]>();

/** Compiles a Go path.Match pattern; throws Error naming what is malformed. */
function compileGlob(pattern: string): GlobToken[] {
  const cached = globCache.get(pattern);
  if (cached) return cached;
  const p = Array.from(pattern);
  const tokens: GlobToken[] = [];
  let i = 0;
  const escaped = (what: string): string => {
    // In Go, `-` and `]` must be escaped inside a class; `\` escapes anything.
    const c = p[i];
    if (c === undefined || ((c === '-' || c === ']') && what === 'class')) throw new Error('unterminated or malformed character class');
    if (c === '\\') {
      i++;
      const e = p[i];
      if (e === undefined) throw new Error('trailing backslash');
      i++;
      return e;
    }
    i++;
    return c;
  };
  while (i < p.length) {
    const c = p[i]!;
    if (c === '*') {
      tokens.push({ t: 'star' });
      i++;
    } else if (c === '?') {
      tokens.push({ t: 'any' });
      i++;
    } else if (c === '\\') {
      i++;
      const e = p[i];
      if (e === undefined) throw new Error('trailing backslash');
      tokens.push({ t: 'lit', c: e });
      i++;
    } else if (c === '[') {
      i++;
      let negate = false;
      if (p[i] === '^') {
        negate = true;
        i++;
      }
      const ranges: Array<[string, string]> = [];
      for (;;) {
        if (p[i] === ']' && ranges.length > 0) {
          i++;
          break;
        }
        const lo = escaped('class');
        let hi = lo;
        if (p[i] === '-') {
          i++;
          hi = escaped('class');
        }
        ranges.push([lo, hi]);
      }
      tokens.push({ t: 'class', negate, ranges });
    } else {
      tokens.push({ t: 'lit', c });
      i++;
    }
  }
  if (globCache.size > 10_000) globCache.clear();
  globCache.set(pattern, tokens);
  return tokens;
}

/** Why `pattern` is not a valid Go path.Match pattern, or undefined when it is. */
export function globProblem(pattern: string): string | undefined {
  try {
    compileGlob(pattern);
    return undefined;
  } catch (err) {
    return `bad glob ${JSON.stringify(pattern)}: ${(err as Error).message}`;
  }
}

function tokenMatches(tok: GlobToken, ch: string): boolean {
  switch (tok.t) {
    case 'lit':
      return tok.c === ch;
    case 'any':
      return ch !== '/';
    case 'class': {
      let inRange = false;
      for (const [lo, hi] of tok.ranges) {
        if (lo <= ch && ch <= hi) {
          inRange = true;
          break;
        }
      }
      return inRange !== tok.negate;
    }
    case 'star':
      return false;
  }
}

/**
 * Go path.Match: `*` matches any run of characters except `/`, `?` one character except
 * `/`, `[abc]`, `[a-z]`, `[^a-z]` a class, `\x` the character x. The whole name must
 * match. Throws FlotillaError('invalid-input') for a malformed pattern, as Go returns
 * ErrBadPattern.
 */
export function globMatch(pattern: string, name: string): boolean {
  let tokens: GlobToken[];
  try {
    tokens = compileGlob(pattern);
  } catch (err) {
    throw new FlotillaError('invalid-input', `bad glob ${JSON.stringify(pattern)}: ${(err as Error).message}`);
  }
  const s = Array.from(name);
  // reachable[j]: the tokens so far can match s[0..j). One pass per token: O(tokens x chars).
  let reachable = new Array<boolean>(s.length + 1).fill(false);
  reachable[0] = true;
  for (const tok of tokens) {
    const next = new Array<boolean>(s.length + 1).fill(false);
    if (tok.t === 'star') {
      for (let j = 0; j <= s.length; j++) {
        if (reachable[j]) next[j] = true;
        else if (j > 0 && next[j - 1] && s[j - 1] !== '/') next[j] = true;
      }
    } else {
      for (let j = 0; j < s.length; j++) if (reachable[j] && tokenMatches(tok, s[j]!)) next[j + 1] = true;
    }
    reachable = next;
  }
  return reachable[s.length] === true;
}

// ---------------------------------------------------------------------------
// Parsing

const TRUE_WORDS = new Set(['1', 'yes', 'y', 'true', 't', 'on']);
const FALSE_WORDS = new Set(['0', 'no', 'n', 'false', 'f', 'off']);

/** systemd booleans (case-insensitive); undefined when the word is not one. */
export function parseBoolean(value: string): boolean | undefined {
  const v = value.toLowerCase();
  if (TRUE_WORDS.has(v)) return true;
  if (FALSE_WORDS.has(v)) return false;
  return undefined;
}

/** The known key closest to `key`, if it is close enough to be a likely typo. */
function suggestKey(key: string): string | undefined {
  return nearest(key, Object.keys(KEY_ALIASES));
}

/** Options fleet read only in [X-Fleet]; anywhere else both fleet and systemd ignore them (`Conflicts=` is also systemd's, so it is not listed). */
const FLEET_ONLY_KEYS = Object.keys(KEY_ALIASES).filter((k) => k !== 'Conflicts');

/** Options whose values name units, machines or metadata, where fleet expanded no environment variable. */
const LITERAL_OPTIONS: readonly XFleetOption[] = ['MachineID', 'MachineOf', 'MachineMetadata', 'Conflicts', 'Replaces'];

/** The instance name a template's [X-Fleet] is checked with (specifiers need one). */
export const TEMPLATE_CHECK_INSTANCE = 'instance';

/**
 * Reads the [X-Fleet] options of a unit, expanding `%n %N %p %i %%` from the unit's name.
 * Throws FlotillaError('invalid-input') listing every problem with its `file:line`:
 * unknown keys (with the nearest known key), bad values, bad metadata, bad globs, and
 * the combinations fleet forbids (Global with MachineID, MachineOf or Replaces;
 * Replaces with Conflicts).
 */
export function parseXFleet(unit: UnitFile): XFleetOptions {
  const { options, problems } = checkXFleet(unit);
  throwIfProblems(problems, `[X-Fleet] of ${unit.name}`);
  return options;
}

export interface XFleetCheck {
  options: XFleetOptions;
  /** What makes the unit unusable; parseXFleet throws them. */
  problems: Problem[];
  /**
   * What fleet accepted but did not do as the author likely hoped (an ignored key, a
   * variable matched literally, an option in the wrong section); the unit is still usable.
   */
  warnings: Problem[];
}

/** parseXFleet without throwing: the options read so far, every problem and every warning. */
export function checkXFleet(unit: UnitFile): XFleetCheck {
  const options = emptyXFleetOptions();
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  const file = unit.name;
  let info: UnitNameInfo;
  try {
    info = unitNameInfo(unit.name);
    // A template is never placed; its instances are, each checked under its own name when
    // started. The template itself is checked as a stand-in instance, so `%i` is not empty.
    if (info.kind === 'template') info = unitNameInfo(`${info.prefix}@${TEMPLATE_CHECK_INSTANCE}.${info.type}`);
  } catch (err) {
    problems.push({ path: '', file, message: (err as Error).message });
    return { options, problems, warnings };
  }

  const metadata = new Map<string, Set<string>>();
  let machineIdLine: number | undefined;

  for (const section of unit.sections) {
    if (section.name !== XFLEET_SECTION) {
      checkOtherSection(section, file, warnings);
      continue;
    }
    for (const entry of section.entries) {
      const at = (message: string, option?: string): void => {
        problems.push({ path: `${XFLEET_SECTION}.${option ?? entry.key}`, file, line: entry.line, message });
      };
      const warn = (message: string, option?: string): void => {
        warnings.push({ path: `${XFLEET_SECTION}.${option ?? entry.key}`, file, line: entry.line, message });
      };
      if (entry.key.startsWith(EXTENSION_PREFIX)) {
        options.extensions.push({ key: entry.key, value: entry.value, line: entry.line });
        continue;
      }
      const option = Object.hasOwn(KEY_ALIASES, entry.key) ? KEY_ALIASES[entry.key] : undefined;
      if (option === undefined) {
        if (entry.key === 'X-ConditionMachineBootID') warn('X-ConditionMachineBootID is ignored: fleet dropped it, and boot IDs change on every boot; use MachineID');
        else {
          const hint = suggestKey(entry.key) ?? systemdSectionOf(entry.key);
          warn(`unknown [X-Fleet] key ${entry.key}${hint ? ` (did you mean ${hint}?)` : ''}; it is ignored, so it does not constrain placement`);
        }
        continue;
      }
      if (entry.key !== option) warn(`${entry.key} is fleet's deprecated spelling of ${option}; it is read as ${option}`, option);
      options.lines[option] ??= entry.line;

      const literal = new Set<string>();
      let words: string[];
      try {
        words = splitWords(entry.value).map((w) => expandXFleetSpecifiers(w, info, (spec) => literal.add(spec)));
      } catch (err) {
        at((err as Error).message, option);
        continue;
      }
      if (literal.size > 0) {
        warn(`${[...literal].join(' ')} is not expanded in [X-Fleet] (fleet expands only %n %N %p %i; write %% for a literal %), so it is matched as written`, option);
      }
      const variable = LITERAL_OPTIONS.includes(option) ? /\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)/.exec(entry.value) : null;
      if (variable) warn(`${variable[0]} is not expanded: fleet never read environment variables in [X-Fleet], so it is matched as the literal text ${JSON.stringify(variable[0])}`, option);

      // An empty assignment resets the option, as for systemd list settings.
      if (words.length === 0) {
        if (option === 'MachineID') options.machineId = undefined;
        else if (option === 'MachineOf') options.machineOf = [];
        else if (option === 'MachineMetadata') metadata.clear();
        else if (option === 'Conflicts') options.conflicts = [];
        else if (option === 'Global') options.global = false;
        else options.replaces = [];
        continue;
      }

      switch (option) {
        case 'MachineID': {
          if (words.length !== 1) {
            at(`takes one machine ID, got ${words.length} words`, option);
            break;
          }
          const id = words[0]!;
          if (options.machineId !== undefined && options.machineId !== id) {
            at(`MachineID ${id} contradicts MachineID ${options.machineId} on line ${machineIdLine}`, option);
            break;
          }
          options.machineId = id;
          machineIdLine = entry.line;
          break;
        }
        case 'Global': {
          if (words.length !== 1) {
            at(`takes one boolean, got ${JSON.stringify(entry.value)}`, option);
            break;
          }
          const b = parseBoolean(words[0]!);
          if (b === undefined) at(`${JSON.stringify(words[0])} is not a boolean (use true or false)`, option);
          else options.global = b;
          break;
        }
        case 'MachineOf':
        case 'Replaces': {
          const list = option === 'MachineOf' ? options.machineOf : options.replaces;
          for (const w of words) {
            // Warned above: fleet took the text as a name that no unit has, so the unit never placed.
            if (variable && w.includes('$')) {
              if (!list.includes(w)) list.push(w);
              continue;
            }
            let target: UnitNameInfo;
            try {
              target = unitNameInfo(w);
            } catch (err) {
              const glob = /[*?[]/.test(w) ? `: ${option} takes exact unit names, not globs (fleet placed no unit whose ${option} named no unit)` : '';
              at(`${(err as Error).message}${glob}`, option);
              continue;
            }
            if (target.name === unit.name || target.name === info.name) at(`${option} names the unit itself`, option);
            else if (!list.includes(target.name)) list.push(target.name);
          }
          break;
        }
        case 'Conflicts': {
          for (const w of words) {
            const bad = globProblem(w);
            if (bad) at(bad, option);
            else if (!options.conflicts.includes(w)) options.conflicts.push(w);
          }
          break;
        }
        case 'MachineMetadata': {
          for (const w of words) {
            const eq = w.indexOf('=');
            const key = eq < 0 ? '' : w.slice(0, eq);
            const value = eq < 0 ? '' : w.slice(eq + 1);
            if (eq < 0 || key === '' || value === '' || /\s/.test(key)) {
              at(`${JSON.stringify(w)} is not key=value (several pairs are separated by spaces)`, option);
              continue;
            }
            let values = metadata.get(key);
            if (!values) metadata.set(key, (values = new Set()));
            values.add(value);
          }
          break;
        }
      }
    }
  }
  options.machineMetadata = [...metadata].map(([key, values]) => ({ key, values: [...values] }));

  const combo = (option: XFleetOption, message: string): void => {
    problems.push({ path: `${XFLEET_SECTION}.${option}`, file, line: options.lines[option], message });
  };
  if (options.global) {
    const why = 'only MachineMetadata and Conflicts may accompany Global=true (a global unit runs on every matching machine)';
    if (options.machineId !== undefined) combo('MachineID', `MachineID cannot be combined with Global=true: ${why}`);
    if (options.machineOf.length > 0) combo('MachineOf', `MachineOf cannot be combined with Global=true: ${why}`);
    if (options.replaces.length > 0) combo('Replaces', `Replaces cannot be combined with Global=true: ${why}`);
  }
  if (options.replaces.length > 0 && options.conflicts.length > 0) {
    combo('Replaces', 'Replaces cannot be combined with Conflicts (fleet forbids it: a replacement must be able to take the replaced unit\'s place)');
  }
  return { options, problems, warnings };
}

const SYSTEMD_SECTION_KEYS: Readonly<Record<string, readonly string[]>> = {
  Unit: ['Description', 'After', 'Before', 'Requires', 'Wants', 'BindsTo', 'PartOf', 'Documentation', 'ConditionPathExists'],
  Service: ['ExecStart', 'ExecStartPre', 'ExecStop', 'ExecStopPost', 'Restart', 'RestartSec', 'TimeoutStartSec', 'EnvironmentFile', 'Environment', 'Type', 'User'],
  Install: ['WantedBy', 'RequiredBy', 'Alias', 'Also'],
};

/** For a systemd key written inside [X-Fleet]: where it belongs. */
function systemdSectionOf(key: string): string | undefined {
  for (const [section, keys] of Object.entries(SYSTEMD_SECTION_KEYS)) if (keys.includes(key)) return `${key} in [${section}]`;
  return undefined;
}

/** fleet's options outside [X-Fleet], and sections that look like a misspelt [X-Fleet]: both are ignored. */
function checkOtherSection(section: UnitFile['sections'][number], file: string, warnings: Problem[]): void {
  const looksLikeXFleet = section.name.toLowerCase().replace(/[^a-z]/g, '') === 'xfleet';
  if (looksLikeXFleet) {
    warnings.push({ path: section.name, file, line: section.line, message: `section [${section.name}] is not [${XFLEET_SECTION}] (section names are case-sensitive), so its options are ignored` });
    return;
  }
  for (const entry of section.entries) {
    if (FLEET_ONLY_KEYS.includes(entry.key)) {
      warnings.push({ path: `${section.name}.${entry.key}`, file, line: entry.line, message: `${entry.key} is an [${XFLEET_SECTION}] option; in [${section.name}] neither fleet nor systemd reads it, so it does not constrain placement` });
    }
  }
}

// ---------------------------------------------------------------------------
// Templates

/**
 * The instance `instance` of a template unit: `web@.service` with `1` or
 * `web@1.service` gives a unit named `web@1.service` with the template's text.
 * Specifiers in [X-Fleet] are expanded when the instance is read with parseXFleet;
 * the other sections keep theirs for systemd to expand on the machine.
 */
export function instantiate(template: UnitFile, instance: string): UnitFile {
  const info = unitNameInfo(template.name);
  if (info.kind !== 'template') {
    throw new FlotillaError('invalid-input', `${template.name} is not a template unit (expected a name like ${info.prefix}@.${info.type})`);
  }
  const suffix = `.${info.type}`;
  const full = instance.startsWith(`${info.prefix}@`) && instance.endsWith(suffix) ? instance : `${info.prefix}@${instance}${suffix}`;
  const target = unitNameInfo(full);
  if (target.kind !== 'instance' || target.template !== template.name) {
    throw new FlotillaError('invalid-input', `${full} is not an instance of ${template.name}`);
  }
  return renameUnit(template, full);
}

// ---------------------------------------------------------------------------
// Scheduling predicates

/** Whether a machine with this metadata satisfies the unit's MachineMetadata. */
export function matchesMetadata(
  options: Pick<XFleetOptions, 'machineMetadata'>,
  machineMetadata: Readonly<Record<string, string>>,
): boolean {
  return options.machineMetadata.every(({ key, values }) => {
    if (!Object.prototype.hasOwnProperty.call(machineMetadata, key)) return false;
    return values.includes(machineMetadata[key]!);
  });
}

export interface NamedOptions<K extends keyof XFleetOptions = keyof XFleetOptions> {
  name: string;
  options: Pick<XFleetOptions, K>;
}

/**
 * Whether two units must not share a machine: either side's Conflicts globs match the
 * other's name. A unit never conflicts with itself.
 */
export function conflictsWith(a: NamedOptions<'conflicts'>, b: NamedOptions<'conflicts'>): boolean {
  if (a.name === b.name) return false;
  return a.options.conflicts.some((g) => globMatch(g, b.name)) || b.options.conflicts.some((g) => globMatch(g, a.name));
}

function findCycles(units: ReadonlyArray<NamedOptions<'machineOf' | 'replaces' | 'lines'>>, option: 'MachineOf' | 'Replaces'): Problem[] {
  const byName = new Map(units.map((u) => [u.name, u]));
  const edges = (u: NamedOptions<'machineOf' | 'replaces' | 'lines'>): string[] =>
    option === 'MachineOf' ? u.options.machineOf : u.options.replaces;
  const state = new Map<string, 'visiting' | 'done'>();
  const problems: Problem[] = [];
  const stack: string[] = [];

  const visit = (name: string): void => {
    state.set(name, 'visiting');
    stack.push(name);
    for (const target of edges(byName.get(name)!)) {
      if (!byName.has(target)) continue; // a missing target makes the unit unschedulable, not cyclic
      const s = state.get(target);
      if (s === 'visiting') {
        const cycle = [...stack.slice(stack.indexOf(target)), target];
        // Report on the cycle member that comes first in the input, once per cycle.
        const first = units.find((u) => cycle.includes(u.name))!;
        const why = option === 'MachineOf' ? 'these units can never be placed' : 'each would push the next off its machine forever';
        problems.push({
          path: `${XFLEET_SECTION}.${option}`,
          file: first.name,
          line: first.options.lines[option],
          message: `${option} cycle ${cycle.join(' -> ')}: ${why}`,
        });
      } else if (s === undefined) {
        visit(target);
      }
    }
    stack.pop();
    state.set(name, 'done');
  };
  for (const u of units) if (!state.has(u.name)) visit(u.name);
  return problems;
}

/**
 * Cycles among MachineOf (a unit that follows, through others, itself can never be
 * placed) and among Replaces (units that replace each other would evict each other
 * forever). Units named as targets but not in `units` are ignored.
 */
export function checkMachineOfCycles(units: ReadonlyArray<NamedOptions<'machineOf' | 'replaces' | 'lines'>>): Problem[] {
  return [...findCycles(units, 'MachineOf'), ...findCycles(units, 'Replaces')];
}
