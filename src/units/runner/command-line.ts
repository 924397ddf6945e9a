/**
 * Command lines of ExecStart= and the other Exec settings (systemd.service(5)): the
 * prefixes read when the unit is parsed, and the environment substitution applied
 * when the command runs. Commands never go through a shell.
 */

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

/**
 * The command of one Exec setting from its words (already split and specifier-expanded,
 * at least one): the `-`, `:`, `@`, `+` and `!` prefixes, the executable and argv.
 * Throws Error for what the process runner cannot run.
 */
export function parseExecCommand(words: readonly string[], setting: string, line: number): ExecCommand {
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
  return { path: first, argv, ignoreFailure, noSubstitution, line, setting };
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
