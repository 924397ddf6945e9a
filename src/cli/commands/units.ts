import { FlotillaError, formatProblem } from '../../errors';
import { readTextFile } from '../../util/fs';
import { UnitsClient, unitFileProblems } from '../../units/client';
import { readTls } from '../../units/fleetd';
import { Registry } from '../../units/registry';
import { connectRecord, readRecord } from '../../provision/local/up';
import { stringOpt, type CommandSpec, type OptionSpec, type ParsedCommand, type CliIO } from '../command';
import { table } from '../format';

/** Where the registry is: flags first, then FLOTILLA_* environment variables. */
const connectionOptions: Record<string, OptionSpec> = {
  endpoints: { type: 'string', description: 'etcd client URLs, comma-separated (env FLOTILLA_ENDPOINTS)', valueName: 'URLS' },
  cluster: { type: 'string', description: 'cluster name: key prefix /flotilla/NAME/; a local cluster is reached through SSH (env FLOTILLA_CLUSTER)', valueName: 'NAME' },
  'key-prefix': { type: 'string', description: 'etcd key prefix instead of --cluster (env FLOTILLA_KEY_PREFIX)', valueName: 'PREFIX' },
  'ca-file': { type: 'string', description: 'CA certificate for etcd TLS (env FLOTILLA_CA_FILE)', valueName: 'FILE' },
  'cert-file': { type: 'string', description: 'client certificate (env FLOTILLA_CERT_FILE)', valueName: 'FILE' },
  'key-file': { type: 'string', description: 'client key (env FLOTILLA_KEY_FILE)', valueName: 'FILE' },
  json: { type: 'boolean', description: 'machine-readable output' },
};

function opt(p: ParsedCommand, name: string, env: string): string | undefined {
  return (p.values[name] as string | undefined) ?? (process.env[env] || undefined);
}

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
  const prefix = opt(p, 'key-prefix', 'FLOTILLA_KEY_PREFIX');
  if (!cluster && !prefix) throw new FlotillaError('usage', `flotilla ${cmd}: pass --cluster NAME (or set FLOTILLA_CLUSTER)`);
  const ca = opt(p, 'ca-file', 'FLOTILLA_CA_FILE');
  const cert = opt(p, 'cert-file', 'FLOTILLA_CERT_FILE');
  const key = opt(p, 'key-file', 'FLOTILLA_KEY_FILE');
  const tls = ca ? readTls({ ca, ...(cert ? { cert } : {}), ...(key ? { key } : {}) }) : undefined;
  const registry = await Registry.connect({ endpoints: endpoints.split(',').map((e) => e.trim()).filter(Boolean), ...(prefix ? { prefix } : { cluster: cluster! }), ...(tls ? { tls } : {}) });
  return { registry, close: () => registry.close() };
}

async function withClient<T>(p: ParsedCommand, cmd: string, fn: (c: UnitsClient) => Promise<T>): Promise<T> {
  const conn = await connectFromArgs(p, cmd);
  try {
    return await fn(new UnitsClient(conn.registry));
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

function stateVerb(verb: string, state: 'inactive' | 'loaded' | 'launched', summary: string): CommandSpec {
  return {
    name: `units ${verb}`,
    summary,
    args: 'UNIT|FILE...',
    options: {
      ...connectionOptions,
      'no-block': { type: 'boolean', description: 'do not wait for the units to reach the state' },
      'block-attempts': { type: 'string', description: 'seconds to wait for the state (default 30)', valueName: 'SECONDS' },
    },
    async run(p, io) {
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
        return 0;
      });
    },
  };
}

export const unitsCommands: CommandSpec[] = [
  {
    name: 'units submit',
    summary: 'Submit unit files to the cluster (checked first; same content again is a no-op)',
    args: 'FILE...',
    options: connectionOptions,
    async run(p, io) {
      const files = needArgs(p, 'submit', 'unit file');
      return withClient(p, 'units submit', async (c) => {
        const res = await c.submit(files);
        printJsonOr(io, p, res, () => res.map((r) => `Unit ${r.name} ${r.created ? 'submitted' : 'already submitted (same content)'}\n`).join(''));
        return 0;
      });
    },
  },
  stateVerb('load', 'loaded', 'Schedule units onto machines without starting them'),
  stateVerb('start', 'launched', 'Schedule and start units (submitting files first)'),
  stateVerb('stop', 'loaded', 'Stop units, leaving them scheduled'),
  stateVerb('unload', 'inactive', 'Stop units and take them off their machines'),
  {
    name: 'units restart',
    summary: 'Stop, then start units',
    args: 'UNIT...',
    options: connectionOptions,
    async run(p, io) {
      const names = needArgs(p, 'restart', 'unit name');
      return withClient(p, 'units restart', async (c) => {
        await c.setState(names, 'loaded');
        await c.waitFor(names, (rows) => rows.every((r) => r.active !== 'active'), 30_000);
        await c.setState(names, 'launched');
        const rows = await c.waitFor(names, (rows) => names.every((n) => rows.some((r) => r.unit === n && r.active === 'active')), 30_000);
        printJsonOr(io, p, rows, () => rows.map((r) => `Unit ${r.unit} restarted on ${r.machine}\n`).join(''));
        return 0;
      });
    },
  },
  {
    name: 'units destroy',
    summary: 'Stop units and remove them from the cluster',
    args: 'UNIT...',
    options: connectionOptions,
    async run(p, io) {
      const names = needArgs(p, 'destroy', 'unit name');
      return withClient(p, 'units destroy', async (c) => {
        const res = await c.destroy(names);
        printJsonOr(io, p, res, () => res.map((r) => `${r.existed ? 'Destroyed' : 'Not found:'} ${r.name}\n`).join(''));
        return res.every((r) => r.existed) ? 0 : 3;
      });
    },
  },
  {
    name: 'units cat',
    summary: "Print a submitted unit's file",
    args: 'UNIT',
    options: connectionOptions,
    async run(p, io) {
      const [name] = needArgs(p, 'cat', 'unit name');
      return withClient(p, 'units cat', async (c) => {
        io.out(await c.cat(name!));
        return 0;
      });
    },
  },
  {
    name: 'units status',
    summary: "Show units' desired state, machine, and reported state (or why they are not placed)",
    args: 'UNIT...',
    options: connectionOptions,
    async run(p, io) {
      const names = needArgs(p, 'status', 'unit name');
      return withClient(p, 'units status', async (c) => {
        const rows = (await c.listUnits()).filter((r) => names.includes(r.unit));
        const missing = names.filter((n) => !rows.some((r) => r.unit === n));
        if (missing.length) throw new FlotillaError('not-found', `not submitted: ${missing.join(', ')}`);
        printJsonOr(io, p, rows, () =>
          rows
            .map((r) => `● ${r.unit}\n   Desired: ${r.desiredState}\n   Machine: ${r.machine ? `${r.machine}${r.address ? ` (${r.address})` : ''}` : '-'}\n    Active: ${r.active} (${r.sub})\n${r.reason ? `  Not placed: ${r.reason}\n` : ''}`)
            .join('\n'),
        );
        return 0;
      });
    },
  },
  {
    name: 'units list-units',
    summary: 'List units with their machine and state (UNIT MACHINE ACTIVE SUB)',
    options: { ...connectionOptions, full: { type: 'boolean', short: 'l', description: 'full machine IDs' } },
    async run(p, io) {
      return withClient(p, 'units list-units', async (c) => {
        const rows = await c.listUnits();
        printJsonOr(io, p, rows, () =>
          table(
            ['UNIT', 'MACHINE', 'ACTIVE', 'SUB', 'REASON'],
            rows.map((r) => [r.unit, r.machine ? `${p.values.full ? r.machine : r.machine.slice(0, 8)}...${r.address ? `/${r.address}` : ''}` : '-', r.active, r.sub, r.reason ?? '']),
          ),
        );
        return 0;
      });
    },
  },
  {
    name: 'units list-unit-files',
    summary: 'List submitted units (UNIT HASH DSTATE STATE TARGET)',
    options: connectionOptions,
    async run(p, io) {
      return withClient(p, 'units list-unit-files', async (c) => {
        const rows = await c.listUnitFiles();
        printJsonOr(io, p, rows, () => table(['UNIT', 'HASH', 'DSTATE', 'STATE', 'TARGET'], rows.map((r) => [r.name, r.hash.slice(0, 7), r.desiredState, r.state, r.target ?? '-'])));
        return 0;
      });
    },
  },
  {
    name: 'units list-machines',
    summary: 'List registered machines (MACHINE IP METADATA)',
    options: { ...connectionOptions, full: { type: 'boolean', short: 'l', description: 'full machine IDs' } },
    async run(p, io) {
      return withClient(p, 'units list-machines', async (c) => {
        const rows = await c.listMachines();
        printJsonOr(io, p, rows, () =>
          table(
            ['MACHINE', 'IP', 'METADATA'],
            rows.map((m) => [p.values.full ? m.id : `${m.id.slice(0, 8)}...`, m.address, Object.entries(m.metadata).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join(',') || '-']),
          ),
        );
        return 0;
      });
    },
  },
  {
    name: 'units verify',
    summary: 'Check unit files locally (syntax, [X-Fleet] options and combinations); no cluster needed',
    args: 'FILE...',
    options: { json: { type: 'boolean', description: 'machine-readable output' } },
    async run(p, io) {
      const files = needArgs(p, 'verify', 'unit file');
      const results = files.map((f) => ({ file: f, problems: unitFileProblems(f, readTextFile(f)) }));
      printJsonOr(io, p, results, () => results.map((r) => (r.problems.length ? `invalid  ${r.file}\n${r.problems.map((x) => `  ${formatProblem(x)}\n`).join('')}` : `ok       ${r.file}\n`)).join(''));
      return results.every((r) => r.problems.length === 0) ? 0 : 2;
    },
  },
];
