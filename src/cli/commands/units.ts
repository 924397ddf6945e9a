import { lazyCommand, type CommandSpec, type OptionSpec } from '../command';

/** The implementations, loaded when a command runs. */
const impl = () => require('./units.run') as typeof import('./units.run');

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

const strictOption: OptionSpec = { type: 'boolean', description: 'refuse unit files that have warnings, not only errors' };

const rolloutOptions: Record<string, OptionSpec> = {
  ...connectionOptions,
  'max-unavailable': { type: 'string', description: 'copies restarted at once (default 1)', valueName: 'N' },
  'health-cmd': { type: 'string', description: 'sh -c command that must pass after each copy is active ($FLOTILLA_UNIT, $FLOTILLA_MACHINE_ID, $FLOTILLA_MACHINE_ADDRESS)', valueName: 'CMD' },
  timeout: { type: 'string', description: 'seconds for each batch to become active and healthy (default 60)', valueName: 'SECONDS' },
  'min-ready': { type: 'string', description: 'seconds a copy must stay active to count (default 1)', valueName: 'SECONDS' },
  'rollback-on-failure': { type: 'boolean', description: 'on a failed batch, put the old content back everywhere' },
};

function rolloutVerb(verb: 'resume' | 'rollback', summary: string): CommandSpec {
  return lazyCommand(
    {
      name: `units rollout ${verb}`,
      summary,
      args: 'UNIT',
      options: connectionOptions,
    },
    () => impl().rolloutVerb(verb),
  );
}

function stateVerb(verb: string, state: 'inactive' | 'loaded' | 'launched', summary: string): CommandSpec {
  return lazyCommand(
    {
      name: `units ${verb}`,
      summary,
      args: 'UNIT|FILE...',
      options: {
        ...connectionOptions,
        strict: strictOption,
        'no-block': { type: 'boolean', description: 'do not wait for the units to reach the state' },
        'block-attempts': { type: 'string', description: 'seconds to wait for the state (default 30)', valueName: 'SECONDS' },
      },
    },
    () => impl().stateVerb(verb, state),
  );
}

export const unitsCommands: CommandSpec[] = [
  lazyCommand(
    {
      name: 'units submit',
      summary: 'Submit unit files to the cluster (checked first; same content again is a no-op)',
      args: 'FILE...',
      options: { ...connectionOptions, strict: strictOption },
    },
    () => impl().submit,
  ),
  stateVerb('load', 'loaded', 'Schedule units onto machines without starting them'),
  stateVerb('start', 'launched', 'Schedule and start units (submitting files first)'),
  stateVerb('stop', 'loaded', 'Stop units, leaving them scheduled'),
  stateVerb('unload', 'inactive', 'Stop units and take them off their machines'),
  lazyCommand(
    {
      name: 'units restart',
      summary: 'Stop, then start units',
      args: 'UNIT...',
      options: connectionOptions,
    },
    () => impl().restart,
  ),
  lazyCommand(
    {
      name: 'units destroy',
      summary: 'Stop units and remove them from the cluster',
      args: 'UNIT...',
      options: connectionOptions,
    },
    () => impl().destroy,
  ),
  lazyCommand(
    {
      name: 'units cat',
      summary: "Print a submitted unit's file",
      args: 'UNIT',
      options: connectionOptions,
    },
    () => impl().cat,
  ),
  lazyCommand(
    {
      name: 'units status',
      summary: "Show units' desired state, machine, and reported state (or why they are not placed)",
      args: 'UNIT...',
      options: connectionOptions,
    },
    () => impl().status,
  ),
  lazyCommand(
    {
      name: 'units list-units',
      summary: 'List units with their machine and state (UNIT MACHINE ACTIVE SUB)',
      options: { ...connectionOptions, full: { type: 'boolean', short: 'l', description: 'full machine IDs' } },
    },
    () => impl().listUnits,
  ),
  lazyCommand(
    {
      name: 'units list-unit-files',
      summary: 'List submitted units (UNIT HASH DSTATE STATE TARGET)',
      options: connectionOptions,
    },
    () => impl().listUnitFiles,
  ),
  lazyCommand(
    {
      name: 'units list-machines',
      summary: 'List registered machines (MACHINE IP METADATA)',
      options: { ...connectionOptions, full: { type: 'boolean', short: 'l', description: 'full machine IDs' } },
    },
    () => impl().listMachines,
  ),
  lazyCommand(
    {
      name: 'units update',
      summary: "Replace a submitted unit's body and restart its running copies a batch at a time (a rolling update)",
      args: 'FILE',
      options: rolloutOptions,
      details:
        'Each batch waits until its copies are active with the new content (for --min-ready) and --health-cmd passes. ' +
        'A failed batch stops the update (or rolls it back with --rollback-on-failure). Progress is kept in etcd: ' +
        'an interrupted update continues with `units rollout resume UNIT` or is undone with `units rollout rollback UNIT`.',
    },
    () => impl().update,
  ),
  rolloutVerb('resume', 'Continue an interrupted or stopped rolling update'),
  rolloutVerb('rollback', 'Put the old content back on every copy, a batch at a time, and drop the new one'),
  lazyCommand(
    {
      name: 'units rollout status',
      summary: "Show a unit's rolling update: phase, contents, and each copy's outcome",
      args: 'UNIT...',
      options: connectionOptions,
    },
    () => impl().rolloutStatus,
  ),
  lazyCommand(
    {
      name: 'units verify',
      summary: 'Check unit files locally (syntax, [X-Fleet] options and combinations); no cluster needed',
      args: 'FILE...',
      options: { json: { type: 'boolean', description: 'machine-readable output' }, strict: strictOption },
      details:
        'Errors make a unit unusable (exit 2). Warnings name what fleet accepted but did not do as the author likely hoped: ' +
        'an unknown or misplaced option (ignored), ${VAR} in MachineOf=/Conflicts= (matched literally), a deprecated spelling. ' +
        'Warnings leave the exit status 0 unless --strict.',
    },
    () => impl().verify,
  ),
];
