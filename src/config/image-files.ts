/**
 * Files the node image ships (regular files and symlinks), which first-boot config may try to
 * write: an Ignition `storage.files` entry on one of these paths without `"overwrite": true`
 * stops first boot ("A file exists there already and overwrite is false"), and nothing can be
 * created below one of them. The renderer checks every node's merged Ignition config against
 * this list (image-files-check.ts).
 *
 * A fact about what the image recipe (src/provision/image/recipe.ts) builds, kept here because
 * the renderer needs it and config sits below provision (test/layering.test.ts). It cannot drift
 * from the recipe unnoticed: test/provision/image/recipe.test.ts checks that every file the recipe bakes
 * in and every file its configure script writes is listed, and test/provision/image-files.test.ts
 * checks every path against a real built image. Pure data.
 */

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

/** Written by Flotilla's image recipe (recipe `files`: its units, drop-ins, presets and helper scripts). */
export const BAKED_FILES: readonly string[] = [
  '/etc/cloud/cloud.cfg.d/99_flotilla.cfg',
  '/etc/containers/containers.conf',
  '/etc/containers/storage.conf',
  '/etc/dpkg/dpkg.cfg.d/01-flotilla-nodoc',
  '/etc/selinux/config',
  '/etc/systemd/journald.conf.d/10-flotilla.conf',
  '/etc/systemd/system-preset/00-flotilla.preset',
  '/etc/systemd/system-preset/99-flotilla-default.preset',
  '/etc/systemd/system/cloud-final.service.d/10-flotilla-console.conf',
  '/etc/systemd/system/cloud-init-local.service.d/10-flotilla-console.conf',
  '/etc/systemd/system/cloud-init.service.d/10-flotilla-console.conf',
  '/etc/modprobe.d/flotilla-fw-cfg.conf',
  '/etc/systemd/system/flotilla-clone-point.service',
  '/etc/systemd/system/flotilla-container-images.service',
  '/etc/systemd/system/flotilla-ignition.service',
  '/etc/systemd/system/flotilla-ready.service',
  '/usr/local/lib/flotilla/clone-point',
  '/usr/local/lib/flotilla/ignition-bin/setfiles',
  '/usr/local/lib/flotilla/ignition-firstboot',
  '/usr/local/lib/flotilla/import-container-images',
];

/** Every path above, sorted, no duplicates. */
export const NODE_IMAGE_FILES: readonly string[] = [...new Set([...PACKAGE_FILES, ...CONFIGURED_FILES, ...BAKED_FILES])].sort();
