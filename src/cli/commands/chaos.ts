import { CONFIG_FORMATS } from '../../config/spec';
import { lazyCommand } from '../command';
import { FAULT_SUMMARY } from './constants';

/** The implementation, loaded when the command runs. */
const impl = () => require('./chaos.run') as typeof import('./chaos.run');

export const chaosCommand = lazyCommand(
  {
    name: 'chaos',
    summary: 'Inject faults into a local cluster in a seeded random order and check the scheduling invariants after each',
    options: {
      cluster: { type: 'string', short: 'c', description: 'an existing local cluster (otherwise one is brought up first)', valueName: 'NAME' },
      spec: { type: 'string', description: 'spec for the cluster brought up (default: --nodes N generic nodes)', valueName: 'FILE' },
      nodes: { type: 'string', description: 'number of nodes without a spec (default 3)', valueName: 'N' },
      name: { type: 'string', description: "name of the cluster brought up (default: the spec's, or 'chaos')", valueName: 'NAME' },
      format: { type: 'string', description: `first-boot format of the cluster brought up: ${CONFIG_FORMATS.join(' | ')}`, valueName: 'FORMAT' },
      faults: { type: 'string', short: 'k', description: 'number of faults (default 5: one of each kind)', valueName: 'K' },
      seed: { type: 'string', short: 's', description: 'PRNG seed for order and targets (default: random, printed)', valueName: 'S' },
      kinds: { type: 'string', description: `fault kinds to draw from, comma-separated (default all: ${Object.keys(FAULT_SUMMARY).join(',')})`, valueName: 'LIST' },
      json: { type: 'boolean', description: 'print the report as JSON' },
      keep: { type: 'boolean', description: 'leave a cluster this command brought up running' },
      verbose: { type: 'boolean', short: 'v', description: 'print every violation seen while waiting' },
    },
    details: [
      'Faults: ' + Object.entries(FAULT_SUMMARY).map(([k, v]) => `${k}: ${v}`).join('; ') + '.',
      'Exit status: 0 when every invariant held (or recovered within its deadline) after every fault, 1 when one broke',
      'or the cluster did not recover; other codes for errors (2 usage, 3 no such cluster, 6 a node or etcd failed).',
    ].join('\n'),
  },
  () => impl().run,
);
