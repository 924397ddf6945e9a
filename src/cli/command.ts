import { parseArgs, type ParseArgsConfig } from 'node:util';
import { FlotillaError } from '../errors';

/** Where commands print. Tests pass their own to capture output. */
export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  /** True when stdout is a terminal (colours, progress). */
  readonly isTTY: boolean;
}

export type OptionSpec = NonNullable<ParseArgsConfig['options']>[string] & { description: string; valueName?: string };

/** What a command does: returns its exit status (see exit-codes.ts; nothing means EXIT_OK). */
export type CommandRun = (parsed: ParsedCommand, io: CliIO) => Promise<number | void>;

/**
 * A command as help and argument parsing see it: plain data. A declaration module
 * (src/cli/commands/NAME.ts) imports nothing heavier than this file and tiny constant
 * modules, so that `flotilla --help` and `flotilla NAME --help` load no implementation.
 */
export interface CommandDeclaration {
  /** e.g. `render` or `units submit`. */
  name: string;
  summary: string;
  /** Positional argument synopsis, e.g. `FILE...`. */
  args?: string;
  options: Record<string, OptionSpec>;
  /** Extra help text after the option list. */
  details?: string;
}

export interface CommandSpec extends CommandDeclaration {
  /**
   * Loads the implementation (src/cli/commands/NAME.run.ts, with all its imports) on
   * demand: the CLI calls it only after parsing, and not for --help.
   */
  load(): Promise<CommandRun>;
  /** Loads, then runs: for a caller holding one spec (bench/chaos.ts). */
  run(parsed: ParsedCommand, io: CliIO): Promise<number | void>;
}

/**
 * A declaration and how to load its implementation, e.g.
 * `lazyCommand({ name: 'render', ... }, () => impl().run)` where
 * `impl = () => require('./render.run') as typeof import('./render.run')`.
 * (`require`, not `import()`: under tsx's CommonJS hook alone, as bin/flotilla runs,
 * a dynamic import() goes to Node's ESM resolver, which cannot find a .ts module.)
 */
export function lazyCommand(decl: CommandDeclaration, load: () => CommandRun): CommandSpec {
  const loadRun = async (): Promise<CommandRun> => load();
  return { ...decl, load: loadRun, run: async (parsed, io) => (await loadRun())(parsed, io) };
}

export interface ParsedCommand {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** Arguments after a literal `--`. */
  rest: string[];
}

export const helpOption: Record<string, OptionSpec> = {
  help: { type: 'boolean', short: 'h', description: 'show this help' },
};

export function parseCommand(cmd: CommandDeclaration, argv: string[]): ParsedCommand {
  const dd = argv.indexOf('--');
  const head = dd >= 0 ? argv.slice(0, dd) : argv;
  const rest = dd >= 0 ? argv.slice(dd + 1) : [];
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const [k, v] of Object.entries({ ...cmd.options, ...helpOption })) {
    const { description: _d, valueName: _v, ...o } = v;
    options[k] = o;
  }
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: head, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new FlotillaError('usage', `flotilla ${cmd.name}: ${(err as Error).message}\nRun 'flotilla ${cmd.name} --help'.`);
  }
  // A command without positional arguments must not ignore one (`up spec.yaml` is not `up --spec spec.yaml`).
  if (cmd.args === undefined && parsed.positionals.length > 0) {
    const hint = cmd.options.spec && /\.ya?ml$/.test(parsed.positionals[0]!) ? ` (did you mean --spec ${parsed.positionals[0]}?)` : '';
    throw new FlotillaError('usage', `flotilla ${cmd.name}: unexpected argument ${JSON.stringify(parsed.positionals[0])}${hint}: it takes no positional arguments\nRun 'flotilla ${cmd.name} --help'.`);
  }
  return { values: parsed.values as ParsedCommand['values'], positionals: parsed.positionals, rest };
}

export function commandHelp(cmd: CommandDeclaration): string {
  const lines = [`Usage: flotilla ${cmd.name}${Object.keys(cmd.options).length ? ' [options]' : ''}${cmd.args ? ` ${cmd.args}` : ''}`, '', cmd.summary, '', 'Options:'];
  const rows = Object.entries({ ...cmd.options, ...helpOption }).map(([k, v]) => {
    const flag = `${v.short ? `-${v.short}, ` : '    '}--${k}${v.type === 'string' ? ` ${v.valueName ?? 'VALUE'}` : ''}`;
    return [flag, v.description + (v.default !== undefined ? ` (default: ${String(v.default)})` : '')] as const;
  });
  const width = Math.max(...rows.map((r) => r[0].length)) + 2;
  for (const [f, d] of rows) lines.push(`  ${f.padEnd(width)}${d}`);
  if (cmd.details) lines.push('', cmd.details.trimEnd());
  return lines.join('\n') + '\n';
}

/** A string option's value; throws a usage error naming the flag when required and absent. */
export function stringOpt(p: ParsedCommand, name: string, cmd: string, required: true): string;
export function stringOpt(p: ParsedCommand, name: string, cmd: string, required?: false): string | undefined;
export function stringOpt(p: ParsedCommand, name: string, cmd: string, required = false): string | undefined {
  const v = p.values[name];
  if (v === undefined) {
    if (required) throw new FlotillaError('usage', `flotilla ${cmd}: --${name} is required`);
    return undefined;
  }
  return String(v);
}

/** Parses `--name` as one of `choices`, naming the flag and the choices on error. */
export function choiceOpt<T extends string>(p: ParsedCommand, name: string, cmd: string, choices: readonly T[]): T | undefined {
  const v = stringOpt(p, name, cmd);
  if (v === undefined) return undefined;
  if (!(choices as readonly string[]).includes(v)) {
    throw new FlotillaError('usage', `flotilla ${cmd}: --${name} must be one of ${choices.join(', ')} (got "${v}")`);
  }
  return v as T;
}

export function intOpt(p: ParsedCommand, name: string, cmd: string, min = 1, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = stringOpt(p, name, cmd);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new FlotillaError('usage', `flotilla ${cmd}: --${name} must be a whole number from ${min} to ${max} (got "${v}")`);
  }
  return Number(v);
}
