/**
 * Files the node image ships (regular files and symlinks), which first-boot config may try to
 * write: an Ignition `storage.files` entry on one of these paths without `"overwrite": true`
 * stops first boot ("A file exists there already and overwrite is false"), and nothing can be
 * created below one of them. The renderer checks every node's merged Ignition config against
 * this list (src/config/image-files-check.ts). Kept beside the recipe because it is a fact about
 * what the recipe builds: test/provision/recipe.test.ts checks that the baked files and every
 * file the configure script writes are here, and test/provision/image-files.test.ts checks every
 * path against a real built image's root filesystem. Pure: no I/O.
 */
import { CONFIGURE_SCRIPT, defaultBaseRecipe } from './recipe';

/** Shipped by the Debian packages in NODE_PACKAGES (and their dependencies): the ones a spec is likely to write. */
export const PACKAGE_FILES: readonly string[] = [
  // base-files, base-passwd, login, passwd, debianutils, bash, libc-bin, netbase
  '/etc/motd',
  '/etc/issue',
  '/etc/issue.net',
  '/etc/os-release',
  '/etc/debian_version',
  '/etc/host.conf',
  '/etc/profile',
  '/etc/bash.bashrc',
  '/etc/shells',
  '/etc/nsswitch.conf',
  '/etc/passwd',
  '/etc/group',
  '/etc/shadow',
  '/etc/gshadow',
  '/etc/login.defs',
  '/etc/environment',
  '/etc/ld.so.conf',
  '/etc/protocols',
  '/etc/services',
  '/etc/mtab',
  '/etc/networks',
  '/etc/gai.conf',
  '/etc/inputrc',
  '/etc/subuid',
  '/etc/subgid',
  '/etc/adduser.conf',
  '/etc/hosts.allow',
  '/etc/hosts.deny',
  '/etc/sysctl.conf',
  '/etc/mke2fs.conf',
  '/etc/ca-certificates.conf',
  // tzdata (UTC)
  '/etc/localtime',
  '/etc/timezone',
  // sudo
  '/etc/sudoers',
  '/etc/sudo.conf',
  // openssh-server, openssh-client
  '/etc/ssh/sshd_config',
  '/etc/ssh/ssh_config',
  '/etc/ssh/moduli',
  '/etc/default/ssh',
  '/etc/pam.d/sshd',
  '/etc/pam.d/sudo',
  '/etc/pam.d/login',
  '/etc/pam.d/common-auth',
  '/etc/pam.d/common-session',
  '/etc/security/limits.conf',
  // systemd, udev
  '/etc/systemd/system.conf',
  '/etc/systemd/user.conf',
  '/etc/systemd/journald.conf',
  '/etc/systemd/logind.conf',
  '/etc/systemd/networkd.conf',
  '/etc/systemd/sleep.conf',
  '/etc/systemd/pstore.conf',
  '/etc/udev/udev.conf',
  // cloud-init
  '/etc/cloud/cloud.cfg',
  // etcd-server
  '/etc/default/etcd',
  // podman and its dependencies
  '/etc/containers/registries.conf',
  '/etc/containers/policy.json',
];

/** Written (or emptied) by CONFIGURE_SCRIPT at image build time. */
export const CONFIGURED_FILES: readonly string[] = [
  '/etc/hostname',
  '/etc/hosts',
  '/etc/resolv.conf',
  '/etc/fstab',
  '/etc/machine-id',
  '/var/lib/dbus/machine-id',
  '/etc/default/locale',
];

/** Every path above plus the files the recipe bakes in (recipe `files`), sorted, no duplicates. */
export function nodeImageFiles(): string[] {
  return [...new Set([...PACKAGE_FILES, ...CONFIGURED_FILES, ...Object.keys(defaultBaseRecipe().files)])].sort();
}

/** Paths CONFIGURE_SCRIPT creates with a shell redirect (`> /etc/x`) or `touch`, for the recipe test. */
export function configureScriptWrites(script: string = CONFIGURE_SCRIPT): string[] {
  const redirects = [...script.matchAll(/(?<![0-9&])>>?\s*(\/[^\s;'"]+)/g)].map((m) => m[1]!);
  const touched = [...script.matchAll(/^\s*touch\s+([^;\n]+)/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
  return [...new Set([...redirects, ...touched])].filter((p) => p.startsWith('/') && !p.startsWith('/dev/'));
}
