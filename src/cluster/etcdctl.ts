/**
 * The one etcdctl command line: what up, replace, chaos and verify run on a node (as root, through
 * the SSH connection's `sudo`: the client key is root's) to ask its etcd member.
 */
import { PKI } from '../config/node-files';
import { shq } from '../ssh/shell';
import type { ClusterRecord } from './store';

export interface EtcdctlOptions {
  /** Client URLs to ask; etcdctl's --endpoints. */
  endpoints: readonly string[];
  /** The CA to trust and the client certificate to present, as files on the node. */
  tls?: { caFile: string; certFile?: string; keyFile?: string };
  /** Leave the client certificate out (to prove that etcd refuses a client without one). */
  clientCert?: boolean;
  /** etcdctl's own deadlines, seconds (etcdctl's defaults: 2 s to dial, 5 s per command). */
  dialTimeoutS?: number;
  commandTimeoutS?: number;
  /** The etcdctl program on the node (default `etcdctl`). */
  program?: string;
}

/** `ETCDCTL_API=3 etcdctl --endpoints=… [TLS] [deadlines] ARGS`; `args` is etcdctl's own, already quoted. */
export function etcdctlCommand(args: string, o: EtcdctlOptions): string {
  const flags = [`--endpoints=${o.endpoints.map(shq).join(',')}`];
  if (o.dialTimeoutS !== undefined) flags.push(`--dial-timeout=${o.dialTimeoutS}s`);
  if (o.commandTimeoutS !== undefined) flags.push(`--command-timeout=${o.commandTimeoutS}s`);
  if (o.tls) {
    flags.push(`--cacert=${shq(o.tls.caFile)}`);
    if (o.clientCert !== false && o.tls.certFile && o.tls.keyFile) flags.push(`--cert=${shq(o.tls.certFile)}`, `--key=${shq(o.tls.keyFile)}`);
  }
  return `ETCDCTL_API=3 ${shq(o.program ?? 'etcdctl')} ${flags.join(' ')} ${args}`;
}

/** The options for a Flotilla node of `record`: its own member (or `endpoints`), the PKI Flotilla delivered. */
export function memberEtcdctl(record: Pick<ClusterRecord, 'tls' | 'clientPort'>, opts: Partial<Omit<EtcdctlOptions, 'tls'>> = {}): EtcdctlOptions {
  return {
    ...opts,
    endpoints: opts.endpoints ?? [`${record.tls ? 'https' : 'http'}://127.0.0.1:${record.clientPort}`],
    ...(record.tls ? { tls: { caFile: PKI.ca, certFile: PKI.clientCert, keyFile: PKI.clientKey } } : {}),
  };
}
