/**
 * The CLI is a thin shell: help and argument errors load only the command declarations
 * (src/cli/commands/NAME.ts), never an implementation (NAME.run.ts) or the library behind it;
 * every declaration's load() reaches its implementation; exit statuses come from exit-codes.ts.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { commands } from '../../src/cli/commands';
import { parseCommand } from '../../src/cli/command';
import { agentAnnounceCommand } from '../../src/cli/commands/announce';
import { fleetdCommand } from '../../src/cli/commands/fleetd';
import { validateCommand } from '../../src/cli/commands/validate';
import * as copies from '../../src/cli/commands/constants';
import { EXIT_CHECKS_FAILED, EXIT_NO_STATUS, EXIT_OK, EXIT_REMOTE_NO_STATUS, exitStatus } from '../../src/cli/exit-codes';
import { PROTOCOLS } from '../../src/discovery/endpoint';
import { FAULT_SUMMARY } from '../../src/chaos/plan';
import { FORMATS } from '../../src/verify/report';
import { PATHS } from '../../src/config/node-files';
import { BOOT_MODES } from '../../src/cluster/store';
import { FlotillaError } from '../../src/errors';

const ROOT = path.join(__dirname, '..', '..');

/**
 * Runs the CLI in a fresh process for each argv in turn (with every command's own --help
 * and a parse error for each when `everyCommand`), then lists the modules it loaded. The
 * argv list is passed as an argument: without one, a `-e` script has no process.argv[1].
 */
function modulesLoadedBy(argvs: string[][], everyCommand = false): { codes: number[]; modules: string[] } {
  const script = `
    const { runCli } = require('./src/cli/main.ts');
    const argvs = JSON.parse(process.argv[1]);
    if (${everyCommand}) {
      for (const c of require('./src/cli/commands.ts').commands) {
        const words = c.name.split(' ');
        argvs.push([...words, '--help'], [...words, '-h'], [...words, '--no-such-flag']);
      }
    }
    (async () => {
      const codes = [];
      for (const argv of argvs) codes.push(await runCli(argv, { out() {}, err() {}, isTTY: false }));
      process.stdout.write(JSON.stringify({ codes, modules: Object.keys(require.cache) }));
    })();`;
  const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', script, JSON.stringify(argvs)], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { codes: number[]; modules: string[] };
  return { codes: out.codes, modules: out.modules.map((m) => path.relative(ROOT, m).split(path.sep).join('/')) };
}

/** What help may load: tsx itself, the CLI shell and declarations, and constant-only modules. */
function notAllowed(modules: string[]): string[] {
  const allowed = (m: string) =>
    m.startsWith('node_modules/tsx/') ||
    m.startsWith('node_modules/esbuild/') ||
    (m.startsWith('src/cli/') && !m.endsWith('.run.ts') && m !== 'src/cli/agent-main.ts') ||
    m === 'src/errors.ts' ||
    m === 'src/config/spec.ts';
  return modules.filter((m) => !allowed(m));
}

test('flotilla --help in a fresh process loads no command implementation', () => {
  const { codes, modules } = modulesLoadedBy([['--help']]);
  assert.deepEqual(codes, [0]);
  assert.ok(modules.includes('src/cli/commands/render.ts'), 'the declarations are loaded (the list comes from them)');
  assert.deepEqual(notAllowed(modules), []);
  assert.deepEqual(modules.filter((m) => /\.run\.ts$|^src\/(provision|units|verify|chaos|discovery)\/|^src\/config\/render/.test(m)), []);
});

test('flotilla render --help in a fresh process loads no command implementation', () => {
  const { codes, modules } = modulesLoadedBy([['render', '--help']]);
  assert.deepEqual(codes, [0]);
  assert.deepEqual(notAllowed(modules), []);
  assert.ok(!modules.includes('src/cli/commands/render.run.ts'));
  assert.ok(!modules.some((m) => m.startsWith('src/config/') && m !== 'src/config/spec.ts'), modules.join('\n'));
});

test("every command's --help, -h and a bad flag, group help and usage errors load no implementation", () => {
  const groups = [[], ['help'], ['units'], ['units', '--help'], ['image', '-h'], ['units', 'rollout'], ['no-such-command'], ['units', 'no-such-verb']];
  const { codes, modules } = modulesLoadedBy(groups, true);
  assert.equal(codes.length, groups.length + 3 * commands.length);
  assert.deepEqual(codes.slice(0, groups.length), [2, 0, 2, 0, 0, 2, 2, 2]);
  for (let i = 0; i < commands.length; i++) assert.deepEqual(codes.slice(groups.length + 3 * i, groups.length + 3 * i + 3), [0, 0, 2], commands[i]!.name);
  assert.deepEqual(notAllowed(modules), []);
});

test("every command's load() resolves to its implementation (a function), the agent build's too", async () => {
  const all = [...commands, fleetdCommand, agentAnnounceCommand];
  assert.equal(new Set(commands.map((c) => c.name)).size, commands.length, 'command names are unique');
  for (const c of all) assert.equal(typeof (await c.load()), 'function', `${c.name}: load() gives no function`);
  // Every implementation module belongs to a declaration module of the same name.
  const dir = path.join(ROOT, 'src', 'cli', 'commands');
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.run.ts'))) {
    const decl = path.join(dir, f.replace(/\.run\.ts$/, '.ts'));
    assert.ok(fs.existsSync(decl), `${f} has no declaration module`);
    assert.match(fs.readFileSync(decl, 'utf8'), new RegExp(`require\\('\\./${f.replace(/\.ts$/, '').replace('.', '\\.')}'\\)`), `${path.basename(decl)} does not load ${f}`);
  }
});

test("a spec's run() loads its implementation and runs it (as bench/chaos.ts calls it)", async () => {
  let out = '';
  const code = await validateCommand.run(parseCommand(validateCommand, [path.join(ROOT, 'examples', 'three-node.yaml')]), { out: (t) => void (out += t), err: () => {}, isTTY: false });
  assert.equal(code, 0);
  assert.match(out, /^ok +\S*three-node\.yaml \(cluster-spec/);
});

test('the constants copied for help text equal the originals', () => {
  assert.deepEqual(copies.PROTOCOLS, PROTOCOLS);
  assert.deepEqual(copies.REPORT_FORMATS, FORMATS);
  // Help prints the entries in order, so compare them as a list.
  assert.deepEqual(Object.entries(copies.FAULT_SUMMARY), Object.entries(FAULT_SUMMARY));
  assert.equal(copies.NODE_CONFIG, PATHS.fleetdConfig);
  assert.deepEqual(copies.BOOT_MODES, BOOT_MODES);
});

test('a command without positional arguments refuses one instead of ignoring it', async () => {
  const up = commands.find((c) => c.name === 'up')!;
  assert.throws(() => parseCommand(up, ['examples/three-node.yaml']), (err: unknown) => FlotillaError.is(err) && err.code === 'usage' && /unexpected argument "examples\/three-node\.yaml" \(did you mean --spec examples\/three-node\.yaml\?\)/.test(err.message));
  assert.deepEqual(parseCommand(up, ['--spec', 'x.yaml']).positionals, []);
});

test('the named exit statuses are the ones the commands returned as literals', () => {
  assert.deepEqual(
    [EXIT_OK, EXIT_CHECKS_FAILED, EXIT_NO_STATUS, EXIT_REMOTE_NO_STATUS, exitStatus('usage'), exitStatus('invalid-input'), exitStatus('not-found'), exitStatus('external')],
    [0, 1, 1, 255, 2, 2, 3, 6],
  );
});

test('commands return exit statuses only through exit-codes.ts (no numeric literals)', () => {
  const dir = path.join(ROOT, 'src', 'cli', 'commands');
  const files = [...fs.readdirSync(dir).map((f) => path.join(dir, f)), path.join(ROOT, 'src', 'cli', 'main.ts'), path.join(ROOT, 'src', 'cli', 'agent-main.ts')];
  const literal = /\breturn\s+(?:\d+|[^;]*\?\s*\d+\s*:[^;]*|[^;]*:\s*\d+|[^;]*\?\?\s*\d+)\s*;/;
  const found: string[] = [];
  for (const f of files) {
    fs.readFileSync(f, 'utf8').split('\n').forEach((line, i) => {
      if (literal.test(line)) found.push(`${path.relative(ROOT, f)}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(found, []);
});
