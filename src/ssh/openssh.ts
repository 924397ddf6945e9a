/**
 * OpenSSH for a real terminal (`flotilla ssh`): the argv of an `ssh` client that trusts only the
 * pinned host key (its own known_hosts file, StrictHostKeyChecking=yes) and logs in with the
 * cluster's key alone, run inside the cluster's network namespace when it has one.
 */
import { FlotillaError } from '../errors';
import { publicKeyBlob } from './keys';

export interface OpensshTarget {
  host: string;
  port: number;
  user: string;
  /** The private key file to log in with. */
  keyFile: string;
  /** A known_hosts file holding the pinned key (see `knownHostsText`). */
  knownHostsFile: string;
  netns?: string;
}

/** known_hosts lines pinning each endpoint's host key (`[host]:port key`). */
export function knownHostsText(entries: ReadonlyArray<{ host: string; port: number; hostKey: string }>): string {
  return entries
    .map((e) => {
      publicKeyBlob(e.hostKey); // a pinned key must be one
      const host = e.port === 22 ? e.host : `[${e.host}]:${e.port}`;
      return `${host} ${e.hostKey.trim().split(/\s+/).slice(0, 2).join(' ')}\n`;
    })
    .join('');
}

/**
 * The full argv (program first) of an OpenSSH login to the target: a login shell with a
 * terminal when `command` is empty, else the command's words, run as `ssh` would.
 */
export function opensshArgv(t: OpensshTarget, command: readonly string[] = []): string[] {
  if (t.netns !== undefined && !/^[A-Za-z0-9_.-]+$/.test(t.netns)) throw new FlotillaError('invalid-input', `bad network namespace name ${JSON.stringify(t.netns)}`);
  if (!/^[A-Za-z0-9_.:-]+$/.test(t.host) || !/^[a-z_][a-z0-9_-]*$/i.test(t.user)) throw new FlotillaError('invalid-input', `bad SSH destination ${JSON.stringify(`${t.user}@${t.host}`)}`);
  const ssh = [
    'ssh',
    '-i', t.keyFile,
    '-o', 'IdentitiesOnly=yes',
    '-o', `UserKnownHostsFile=${t.knownHostsFile}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'LogLevel=ERROR',
    '-p', String(t.port),
    ...(command.length ? [] : ['-t']),
    // `--`: a command word that starts with `-` is the remote command's, not an ssh option.
    `${t.user}@${t.host}`, '--', ...command,
  ];
  return t.netns ? ['ip', 'netns', 'exec', t.netns, ...ssh] : ssh;
}
