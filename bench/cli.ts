/**
 * CLI start-up time: wall-clock time of `bin/flotilla` as a fresh process, median of N runs
 * each, for the help texts (which should load no command implementation) and one real light
 * command. `node -e 'require("tsx/cjs")'` is timed too: the floor every run pays. The runs
 * are interleaved (round-robin, after one warm-up round that fills tsx's transform cache) so
 * that a change in the host's load hits every row alike; the load is printed with the figures.
 * Prints figures only; nothing is asserted.
 * Run: npx tsx bench/cli.ts [--runs N] [--json]
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.join(__dirname, '..');
const BIN = path.join(root, 'bin', 'flotilla');

interface Case {
  label: string;
  argv: string[];
}

const CASES: Case[] = [
  { label: "node -e 'require(\"tsx/cjs\")'", argv: ['-e', 'require("tsx/cjs")'] },
  { label: 'flotilla --help', argv: [BIN, '--help'] },
  { label: 'flotilla render --help', argv: [BIN, 'render', '--help'] },
  { label: 'flotilla units --help', argv: [BIN, 'units', '--help'] },
  { label: 'flotilla up --help', argv: [BIN, 'up', '--help'] },
  { label: 'flotilla validate examples/three-node.yaml', argv: [BIN, 'validate', 'examples/three-node.yaml'] },
];

function parseRuns(argv: string[]): number {
  const i = argv.indexOf('--runs');
  if (i < 0) return 9;
  const n = Number(argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`bench/cli: --runs must be a whole number of at least 1 (got "${argv[i + 1] ?? ''}")`);
    process.exit(2);
  }
  return n;
}

function timeOnce(c: Case): { ms: number; status: number | null } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, c.argv, { cwd: root, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.error) throw r.error;
  return { ms, status: r.status };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');

const argv = process.argv.slice(2);
const runs = parseRuns(argv);
const loadBefore = load();
for (const c of CASES) timeOnce(c); // warm-up: tsx's transform cache, the page cache
const times = new Map<Case, number[]>(CASES.map((c) => [c, []]));
const statuses = new Map<Case, Set<number | null>>(CASES.map((c) => [c, new Set()]));
for (let i = 0; i < runs; i++) {
  for (const c of CASES) {
    const { ms, status } = timeOnce(c);
    times.get(c)!.push(ms);
    statuses.get(c)!.add(status);
  }
}
const loadAfter = load();
const rows = CASES.map((c) => {
  const t = times.get(c)!;
  return { command: c.label, medianMs: Math.round(median(t)), minMs: Math.round(Math.min(...t)), maxMs: Math.round(Math.max(...t)), exit: [...statuses.get(c)!].join(',') };
});
if (argv.includes('--json')) {
  console.log(JSON.stringify({ runs, cpus: os.cpus().length, loadBefore, loadAfter, node: process.version, rows }, null, 2));
} else {
  console.log(`bench/cli: ${runs} runs each (after a warm-up round), ${os.cpus().length} cores, node ${process.version}; load average ${loadBefore} before, ${loadAfter} after`);
  const w = Math.max(...rows.map((r) => r.command.length));
  const ms = (n: number) => `${n} ms`.padStart(8);
  console.log(`${'COMMAND'.padEnd(w)}  ${'MEDIAN'.padStart(8)}  ${'MIN'.padStart(8)}  ${'MAX'.padStart(8)}  EXIT`);
  for (const r of rows) console.log(`${r.command.padEnd(w)}  ${ms(r.medianMs)}  ${ms(r.minMs)}  ${ms(r.maxMs)}  ${r.exit}`);
}
