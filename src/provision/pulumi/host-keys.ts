/**
 * `pulumi-nodejs:dynamic/flotilla:HostKeys`: every node's SSH host key, generated once and kept
 * in the stack's state (the private halves as secrets), so that re-running the program renders
 * the same user-data and `flotilla verify` can pin the keys. Adding a node generates its key
 * only; removing one drops its key. Keys are made by src/ssh/keys.ts, as for the CLI.
 */
import * as pulumi from '@pulumi/pulumi';
import { loadSource, PROJECT_ROOT } from './dynamic';

type SshKeysModule = typeof import('../../ssh/keys');

const ROOT: string = PROJECT_ROOT;

export interface HostKeysInputs {
  cluster: string;
  nodes: string[];
}

export interface HostKeysOutputs extends HostKeysInputs {
  publicKeys: Record<string, string>;
  privateKeys: Record<string, string>;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export const hostKeysProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: HostKeysInputs, news: HostKeysInputs): Promise<pulumi.dynamic.CheckResult> {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (typeof news.cluster !== 'string' || !LABEL.test(news.cluster)) failures.push({ property: 'cluster', reason: `not a cluster name: ${JSON.stringify(news.cluster)}` });
    if (!Array.isArray(news.nodes) || news.nodes.length === 0) failures.push({ property: 'nodes', reason: 'must list at least one node' });
    else {
      const bad = news.nodes.filter((n) => typeof n !== 'string' || !LABEL.test(n));
      if (bad.length) failures.push({ property: 'nodes', reason: `not node names: ${JSON.stringify(bad)}` });
      if (new Set(news.nodes).size !== news.nodes.length) failures.push({ property: 'nodes', reason: 'duplicate node names' });
    }
    return { inputs: news, failures };
  },

  async diff(_id: pulumi.ID, olds: HostKeysOutputs, news: HostKeysInputs): Promise<pulumi.dynamic.DiffResult> {
    const replaces = olds.cluster !== news.cluster ? ['cluster'] : [];
    const nodesChanged = JSON.stringify(olds.nodes) !== JSON.stringify(news.nodes);
    return { changes: replaces.length > 0 || nodesChanged, replaces, deleteBeforeReplace: false };
  },

  async create(inputs: HostKeysInputs): Promise<pulumi.dynamic.CreateResult> {
    const { generateHostKey } = loadSource<SshKeysModule>(ROOT, 'src/ssh/keys.ts');
    const publicKeys: Record<string, string> = {};
    const privateKeys: Record<string, string> = {};
    for (const n of inputs.nodes) {
      const k = generateHostKey(`${n}.${inputs.cluster}`);
      publicKeys[n] = k.publicKey;
      privateKeys[n] = k.privateKey;
    }
    const outs: HostKeysOutputs = { cluster: inputs.cluster, nodes: inputs.nodes, publicKeys, privateKeys };
    return { id: `${inputs.cluster}-host-keys`, outs };
  },

  async update(_id: pulumi.ID, olds: HostKeysOutputs, news: HostKeysInputs): Promise<pulumi.dynamic.UpdateResult> {
    const { generateHostKey } = loadSource<SshKeysModule>(ROOT, 'src/ssh/keys.ts');
    const publicKeys: Record<string, string> = {};
    const privateKeys: Record<string, string> = {};
    for (const n of news.nodes) {
      const pub = olds.publicKeys?.[n];
      const priv = olds.privateKeys?.[n];
      if (pub && priv) [publicKeys[n], privateKeys[n]] = [pub, priv];
      else {
        const k = generateHostKey(`${n}.${news.cluster}`);
        [publicKeys[n], privateKeys[n]] = [k.publicKey, k.privateKey];
      }
    }
    const outs: HostKeysOutputs = { cluster: news.cluster, nodes: news.nodes, publicKeys, privateKeys };
    return { outs };
  },

  async delete(): Promise<void> {
    // The keys exist only in the stack's state; nothing to remove elsewhere.
  },
};

export interface HostKeysArgs {
  /** Cluster name (the key comments are `<node>.<cluster>`). */
  cluster: pulumi.Input<string>;
  /** Node names, in spec order. */
  nodes: pulumi.Input<pulumi.Input<string>[]>;
}

export class HostKeys extends pulumi.dynamic.Resource {
  /** `ssh-ed25519 AAAA...` per node: what verification pins. */
  declare readonly publicKeys: pulumi.Output<Record<string, string>>;
  /** OpenSSH private keys per node (secret). */
  declare readonly privateKeys: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: HostKeysArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(
      hostKeysProvider,
      name,
      { ...args, publicKeys: undefined, privateKeys: undefined },
      { ...opts, additionalSecretOutputs: [...(opts.additionalSecretOutputs ?? []), 'privateKeys'] },
      'flotilla',
      'HostKeys',
    );
  }
}
