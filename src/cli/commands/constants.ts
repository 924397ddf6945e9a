/**
 * Plain values that command declarations (their help text) and implementations share.
 * A declaration must not load a library module for a constant (`flotilla --help` would load
 * it), and an implementation must not import its own declaration (an import cycle through
 * load()), so they live here. The copies of library constants are checked against the
 * originals by test/cli/main.test.ts; implementations use the originals.
 */

/** The node's agent configuration, as rendered (PATHS.fleetdConfig in src/config/node-files.ts). */
export const NODE_CONFIG = '/etc/flotilla/fleetd.json';

/** A copy of PROTOCOLS (src/discovery/endpoint.ts), for help text. */
export const PROTOCOLS = ['tcp', 'http'] as const;

/** A copy of FORMATS (src/verify/report/index.ts, which loads every report renderer), for help text. */
export const REPORT_FORMATS = ['human', 'tap', 'junit', 'json'] as const;

/** A copy of FAULT_SUMMARY (src/chaos/plan.ts), in its order, for help text. */
export const FAULT_SUMMARY: Readonly<Record<string, string>> = {
  'agent-kill': "SIGKILL a non-leader node's fleetd (systemd restarts it: Restart=always)",
  'leader-kill': "SIGKILL the engine leader's fleetd",
  'etcd-kill': 'SIGKILL one etcd member and keep it down for two TTLs, then start it and wait until healthy',
  partition: "cut a node's cluster NIC (QMP set_link off), then reconnect it",
  'power-off': "kill a node's QEMU (power cut), then boot it again from the same disk",
};

/** How `up`, `smoke` and `replace` start nodes (BootMode in src/cluster/store.ts). */
export const BOOT_MODES = ['snapshot', 'fresh'] as const;

/** `--boot`, shared by every command that starts nodes. */
export const BOOT_OPTION = {
  boot: { type: 'string' as const, description: 'snapshot (restore nodes from a booted template; the local default) | fresh (boot each from the kernel)', valueName: 'MODE' },
};
