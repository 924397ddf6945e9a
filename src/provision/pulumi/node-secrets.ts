/**
 * `pulumi-nodejs:dynamic/flotilla:NodeSecrets`: delivers a node's etcd TLS files after it boots
 * (deliver.ts: pinned-host-key SSH, `installScript`, ready file last). The login key and the
 * files are secret inputs; the outputs hold no secret, only a digest of what was delivered.
 * A changed file set is delivered again (update); a new endpoint or host key means a new node
 * (replacement). Deleting it removes nothing: the node's disk goes with the node.
 */
import * as pulumi from '@pulumi/pulumi';
import { loadSource, PROJECT_ROOT } from './dynamic';

type DeliverModule = typeof import('./deliver');

const ROOT: string = PROJECT_ROOT;

export interface NodeSecretsInputs {
  node: string;
  host: string;
  port: number;
  user: string;
  hostPublicKey: string;
  /** Secret: the OpenSSH private key that logs in as `user`. */
  privateKey: string;
  /** Secret: the files to install. */
  files: Array<{ path: string; contents: string; mode: number }>;
  /** How long to wait for the node's SSH (it may still be booting). */
  timeoutMs: number;
}

export interface NodeSecretsOutputs {
  node: string;
  host: string;
  port: number;
  user: string;
  hostPublicKey: string;
  filesDigest: string;
  paths: string[];
  /** SSH attempts before the node answered (the first delivery). */
  attempts: number;
}

async function deliver(p: NodeSecretsInputs): Promise<NodeSecretsOutputs> {
  const d = loadSource<DeliverModule>(ROOT, 'src/provision/pulumi/deliver.ts');
  const { attempts } = await d.deliverFiles(
    { node: p.node, host: p.host, port: p.port, user: p.user, hostPublicKey: p.hostPublicKey },
    p.privateKey,
    p.files,
    Date.now() + p.timeoutMs,
  );
  return { node: p.node, host: p.host, port: p.port, user: p.user, hostPublicKey: p.hostPublicKey, filesDigest: d.filesDigest(p.files), paths: p.files.map((f) => f.path), attempts };
}

export const nodeSecretsProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: NodeSecretsInputs, news: NodeSecretsInputs): Promise<pulumi.dynamic.CheckResult> {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (!Number.isInteger(news.port) || news.port < 1 || news.port > 65535) failures.push({ property: 'port', reason: `not a port: ${JSON.stringify(news.port)}` });
    if (typeof news.hostPublicKey !== 'string' || !/^ssh-ed25519 [A-Za-z0-9+/=]+/.test(news.hostPublicKey)) failures.push({ property: 'hostPublicKey', reason: 'must be the pinned ssh-ed25519 host key' });
    if (!Array.isArray(news.files) || news.files.some((f) => !f || typeof f.path !== 'string' || !f.path.startsWith('/') || typeof f.contents !== 'string' || !Number.isInteger(f.mode))) {
      failures.push({ property: 'files', reason: 'must be a list of { path (absolute), contents, mode }' });
    }
    return { inputs: news, failures };
  },

  async diff(_id: pulumi.ID, olds: NodeSecretsOutputs, news: NodeSecretsInputs): Promise<pulumi.dynamic.DiffResult> {
    const d = loadSource<DeliverModule>(ROOT, 'src/provision/pulumi/deliver.ts');
    const replaces = (['node', 'host', 'port', 'hostPublicKey'] as const).filter((k) => olds[k] !== news[k]);
    const redeliver = olds.user !== news.user || !Array.isArray(news.files) || olds.filesDigest !== d.filesDigest(news.files);
    return { changes: replaces.length > 0 || redeliver, replaces, deleteBeforeReplace: false };
  },

  async create(inputs: NodeSecretsInputs): Promise<pulumi.dynamic.CreateResult> {
    const outs = await deliver(inputs);
    return { id: `${inputs.node}-secrets`, outs };
  },

  async update(_id: pulumi.ID, _olds: NodeSecretsOutputs, news: NodeSecretsInputs): Promise<pulumi.dynamic.UpdateResult> {
    return { outs: await deliver(news) };
  },

  async delete(): Promise<void> {
    // The files live on the node's disk, which is removed with the node.
  },
};

export type NodeSecretsArgs = { [K in keyof NodeSecretsInputs]: pulumi.Input<NodeSecretsInputs[K]> };

export class NodeSecrets extends pulumi.dynamic.Resource {
  declare readonly filesDigest: pulumi.Output<string>;
  declare readonly paths: pulumi.Output<string[]>;

  constructor(name: string, args: NodeSecretsArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(nodeSecretsProvider, name, { ...args, filesDigest: undefined, paths: undefined, attempts: undefined }, opts, 'flotilla', 'NodeSecrets');
  }
}
