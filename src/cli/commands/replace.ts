import { lazyCommand } from '../command';
import { BOOT_OPTION } from './constants';

/** The implementation, loaded when the command runs. */
const impl = () => require('./replace.run') as typeof import('./replace.run');

export const replaceCommand = lazyCommand(
  {
    name: 'replace',
    summary: 'Replace nodes of a local cluster one at a time (new config or image), keeping etcd quorum',
    options: {
      name: { type: 'string', description: 'cluster name (default: the one local cluster)', valueName: 'NAME' },
      spec: { type: 'string', description: 'new spec for the replaced nodes (default: the one the cluster was made or last replaced with)', valueName: 'FILE' },
      nodes: { type: 'string', description: 'nodes to replace, comma-separated', valueName: 'LIST' },
      all: { type: 'boolean', description: 'replace every node' },
      image: { type: 'string', description: 'current (each node boots the image it runs now) | rebuild (the image of the current sources, built if needed)', valueName: 'WHICH' },
      verify: { type: 'boolean', description: 'run the node, etcd and fleet suites of flotilla verify after each node' },
      'drain-timeout': { type: 'string', description: 'seconds a drain may take before the node is put back (default 180)', valueName: 'S' },
      json: { type: 'boolean', description: 'print the result as JSON' },
      ...BOOT_OPTION,
    },
    details: [
      'Order: nodes without an etcd member, then followers, the etcd leader last (leadership is moved away first).',
      'Per node: check quorum, drain its agent, move leadership, etcdctl member remove, delete the VM and disk,',
      'etcdctl member add, boot a fresh VM that joins with initial-cluster-state existing, deliver its PKI,',
      'wait for etcd and its agent, read back a key written before the run. A failure names the node that is out;',
      'the same command with --nodes NODE resumes. Exit: 0 done, 4 refused (quorum), 6/7 a node failed.',
    ].join('\n'),
  },
  () => impl().run,
);
