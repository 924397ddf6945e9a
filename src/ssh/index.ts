/** The one owner of SSH: keys, pinned connections, the pool, waiting for a booting node, OpenSSH argv. */
export { NodeConnection, type ConnectOptions, type Tunnel } from './connection';
export { commandLabel, withPgidMarker, type ExecOptions, type ExecResult } from './channel';
export { HostKeyMismatchError, SshError, type SshFailure } from './errors';
export { blobType, fingerprint, generateHostKey, generateKeyPair, parsePublicKey, publicKeyBlob, type HostKeyPair, type ParsedPublicKey } from './keys';
export { knownHostsText, opensshArgv, type OpensshTarget } from './openssh';
export { SshPool, type PoolConnectResult } from './pool';
export { shq } from './shell';
export { describeTarget, type SshTarget } from './transport';
export { connectWhenReady, waitForSsh, type WaitForSshOptions } from './wait';
