/**
 * Environment variables as unit files write them (systemd.exec(5)): `NAME=VALUE`
 * assignments of Environment= and the EnvironmentFile= file format.
 */

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
