/**
 * `pulumi-nodejs:dynamic/flotilla:ClusterPki`: the cluster's etcd TLS (a CA, a server and a
 * peer certificate per etcd member, one client certificate), made once by
 * src/cluster/pki.ts (openssl, as for the CLI) and kept in the stack's state with every
 * private key a secret. A changed member list or address re-issues everything (replacement).
 */
import * as pulumi from '@pulumi/pulumi';
import { loadSource, PROJECT_ROOT } from './dynamic';

type PkiModule = typeof import('../../cluster/pki');

const ROOT: string = PROJECT_ROOT;

export interface PkiMember {
  name: string;
  address: string;
}

export interface ClusterPkiInputs {
  cluster: string;
  members: PkiMember[];
}

export interface ClusterPkiOutputs extends ClusterPkiInputs {
  caCert: string;
  clientCert: string;
  memberCerts: Record<string, { server: string; peer: string }>;
  /** Secret. */
  caKey: string;
  /** Secret. */
  clientKey: string;
  /** Secret. */
  memberKeys: Record<string, { server: string; peer: string }>;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export const clusterPkiProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: ClusterPkiInputs, news: ClusterPkiInputs): Promise<pulumi.dynamic.CheckResult> {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (typeof news.cluster !== 'string' || !LABEL.test(news.cluster)) failures.push({ property: 'cluster', reason: `not a cluster name: ${JSON.stringify(news.cluster)}` });
    if (!Array.isArray(news.members) || news.members.length === 0) failures.push({ property: 'members', reason: 'must list at least one etcd member' });
    else {
      for (const m of news.members) {
        if (!m || !LABEL.test(String(m.name)) || !IPV4.test(String(m.address))) failures.push({ property: 'members', reason: `bad member ${JSON.stringify(m)}` });
      }
    }
    return { inputs: news, failures };
  },

  async diff(_id: pulumi.ID, olds: ClusterPkiOutputs, news: ClusterPkiInputs): Promise<pulumi.dynamic.DiffResult> {
    const replaces: string[] = [];
    if (olds.cluster !== news.cluster) replaces.push('cluster');
    if (JSON.stringify(olds.members) !== JSON.stringify(news.members)) replaces.push('members');
    return { changes: replaces.length > 0, replaces, deleteBeforeReplace: false };
  },

  async create(inputs: ClusterPkiInputs): Promise<pulumi.dynamic.CreateResult> {
    const { generatePki } = loadSource<PkiModule>(ROOT, 'src/cluster/pki.ts');
    // generatePki reads the cluster name and each node's name, address and membership only.
    const spec = { name: inputs.cluster, nodes: inputs.members.map((m) => ({ name: m.name, address: m.address, etcdMember: true })) };
    const pki = await generatePki(spec as unknown as Parameters<typeof generatePki>[0]);
    const memberCerts: ClusterPkiOutputs['memberCerts'] = {};
    const memberKeys: ClusterPkiOutputs['memberKeys'] = {};
    for (const [name, m] of Object.entries(pki.members)) {
      memberCerts[name] = { server: m.server.cert, peer: m.peer.cert };
      memberKeys[name] = { server: m.server.key, peer: m.peer.key };
    }
    const outs: ClusterPkiOutputs = {
      cluster: inputs.cluster,
      members: inputs.members,
      caCert: pki.ca.cert,
      clientCert: pki.client.cert,
      memberCerts,
      caKey: pki.ca.key,
      clientKey: pki.client.key,
      memberKeys,
    };
    return { id: `${inputs.cluster}-pki`, outs };
  },

  async delete(): Promise<void> {
    // Only in the stack's state.
  },
};

export interface ClusterPkiArgs {
  cluster: pulumi.Input<string>;
  /** etcd members with their cluster addresses (the certificates' SANs). */
  members: pulumi.Input<pulumi.Input<PkiMember>[]>;
}

export const PKI_SECRET_OUTPUTS = ['caKey', 'clientKey', 'memberKeys'];

export class ClusterPki extends pulumi.dynamic.Resource {
  declare readonly caCert: pulumi.Output<string>;
  declare readonly clientCert: pulumi.Output<string>;
  declare readonly memberCerts: pulumi.Output<ClusterPkiOutputs['memberCerts']>;
  declare readonly caKey: pulumi.Output<string>;
  declare readonly clientKey: pulumi.Output<string>;
  declare readonly memberKeys: pulumi.Output<ClusterPkiOutputs['memberKeys']>;

  constructor(name: string, args: ClusterPkiArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(
      clusterPkiProvider,
      name,
      { ...args, caCert: undefined, clientCert: undefined, memberCerts: undefined, caKey: undefined, clientKey: undefined, memberKeys: undefined },
      { ...opts, additionalSecretOutputs: [...(opts.additionalSecretOutputs ?? []), ...PKI_SECRET_OUTPUTS] },
      'flotilla',
      'ClusterPki',
    );
  }
}

/** The files a node gets in /etc/flotilla/pki, from the PKI outputs (src/cluster/pki.ts decides paths and modes). */
export function nodePkiFilesFrom(o: Pick<ClusterPkiOutputs, 'caCert' | 'caKey' | 'clientCert' | 'clientKey' | 'memberCerts' | 'memberKeys'>, node: string, nodePkiFiles: PkiModule['nodePkiFiles']): ReturnType<PkiModule['nodePkiFiles']> {
  const members: Record<string, { server: { cert: string; key: string }; peer: { cert: string; key: string } }> = {};
  for (const [name, c] of Object.entries(o.memberCerts)) {
    const k = o.memberKeys[name];
    if (k) members[name] = { server: { cert: c.server, key: k.server }, peer: { cert: c.peer, key: k.peer } };
  }
  return nodePkiFiles({ ca: { cert: o.caCert, key: o.caKey }, client: { cert: o.clientCert, key: o.clientKey }, members }, node);
}
