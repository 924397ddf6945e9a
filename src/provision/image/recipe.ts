/**
 * The node image recipe as data: what goes into the image and how it is trimmed. The image
 * cache is keyed by a sha256 of this (see recipeHash); change anything here and the next
 * `ensureImage` builds a new image. Pure: no I/O.
 */
import { createHash } from 'node:crypto';
import { AGENT_ROOT } from './bundle';

/** Prefix of the progress lines the image writes to the serial console (see READY_UNIT). */
export const CONSOLE_MARKER = 'FLOTILLA-READY';

/**
 * Prefix of the line a first-boot unit writes to the serial console when it fails
 * (FIRST_BOOT_FAILED_LINE): `FLOTILLA-FAILED first-boot <stage> <uptime> <unit> <result> <status>`.
 * The host reads it from console.log (src/provision/console.ts) and stops waiting.
 */
export const CONSOLE_FAILURE_MARKER = 'FLOTILLA-FAILED';

/**
 * A unit's `ExecStopPost=` that reports a failed run on the serial console. It runs only when
 * the unit stops: a oneshot with RemainAfterExit stays active when it succeeds, so on a healthy
 * boot it runs at shutdown at most, and then prints nothing ($SERVICE_RESULT is success).
 */
function firstBootFailedLine(stage: 'ignition' | 'cloud-init'): string {
  return `ExecStopPost=/bin/sh -c '[ "$$SERVICE_RESULT" = success ] || echo "${CONSOLE_FAILURE_MARKER} first-boot ${stage} $$(cut -d" " -f1 /proc/uptime) %n $$SERVICE_RESULT $$EXIT_STATUS" > /dev/ttyS0'`;
}

/** Bump when the build procedure changes in a way the recipe data does not show (2: PVH vmlinux). */
export const BUILDER_VERSION = 2;

export interface BakedFile {
  contents: string;
  mode: number;
}

/** Everything that decides the base root filesystem, kernel and initrd (not the agent). */
export interface BaseRecipe {
  builderVersion: number;
  suite: string;
  variant: 'minbase';
  /** debootstrap --include list. */
  packages: string[];
  /** Apply bookworm-security updates (apt-get upgrade) after debootstrap. */
  securityUpdates: boolean;
  kernel: {
    /** Debian package whose dependency names the kernel to use (e.g. linux-image-amd64), or an exact linux-image-<abi>. */
    package: string;
    /** Modules copied into the image (with their dependencies), by name. */
    modules: string[];
    /** Modules the initrd loads, in order (dependencies first), to mount the root filesystem. */
    initrdModules: string[];
    cmdline: string;
  };
  /** Files written into the root filesystem before the configure script runs. */
  files: Record<string, BakedFile>;
  /** Shell script run in the chroot after the files are written: units, trimming. */
  configureScript: string;
  /** The initrd's /init. */
  initScript: string;
}

export interface ImageRecipe {
  base: BaseRecipe;
  /** sha256 of the agent bundle (script and run-time files). */
  bundleHash: string;
  /** Virtual size of the root disk. */
  diskGiB: number;
  mkfsOptions: string[];
}

export const NODE_PACKAGES = [
  'systemd-sysv',
  'udev',
  'kmod',
  'dbus',
  'cloud-init',
  // debootstrap cannot resolve cloud-init's virtual python3-cffi-backend-api-* dependency itself.
  'python3-cffi-backend',
  'openssh-server',
  'etcd-server',
  'etcd-client',
  'iproute2',
  'ca-certificates',
  'sudo',
  'e2fsprogs',
  'netbase',
  'ignition',
  'nodejs',
  // ping: checking the cluster network from a node.
  'iputils-ping',
  // The initrd's /init and its tools (static: the initrd carries no libraries); also the
  // local container image's only binary (CONTAINER_IMAGES_SCRIPT).
  'busybox-static',
  // Containers as units. crun and netavark are named because debootstrap cannot pick between
  // podman's alternatives (crun | runc) or resolve the virtual container-network-stack.
  'podman',
  'crun',
  'netavark',
];

/** Modules in the image: virtio devices, networking, the filesystems cloud-init and Flotilla use, fw_cfg. */
export const IMAGE_MODULES = [
  'virtio_pci',
  'virtio_blk',
  'virtio_net',
  'virtio_rng',
  'virtio_console',
  'virtio_balloon',
  'qemu_fw_cfg',
  'ext4',
  'crc32c_generic',
  'isofs',
  'nls_utf8',
  'nls_iso8859_1',
  'vfat',
  'af_packet',
  'tun',
  'veth',
  'bridge',
  'overlay',
];

/** What the initrd loads to reach the root filesystem (and fw_cfg, so Ignition's condition can see its config). */
export const INITRD_MODULES = ['virtio_pci', 'virtio_blk', 'crc32c_generic', 'ext4', 'qemu_fw_cfg'];

/**
 * The kernel command line. `quiet loglevel=3`: the serial console is slow under TCG.
 * No `rw` remount later: the initrd mounts the root read-write. Network names stay eth0/eth1
 * until cloud-init (set-name) or Ignition's networkd files rename them by MAC.
 */
export const KERNEL_CMDLINE = [
  'root=/dev/vda',
  'rw',
  'console=ttyS0',
  'net.ifnames=0',
  'quiet',
  'loglevel=3',
  'fsck.mode=skip',
  'systemd.show_status=0',
  'udev.log_level=3',
  'audit=0',
  'mitigations=off',
  'nowatchdog',
  'random.trust_cpu=on',
  'tsc=reliable',
  'no_timer_check',
  'i8042.noaux',
  'i8042.nomux',
  'i8042.nopnp',
  '8250.nr_uarts=1',
  'cryptomgr.notests',
].join(' ');

/** The kernel command-line word that boots a node as a snapshot template (src/provision/local/template.ts). */
export const CLONE_TEMPLATE_ARG = 'flotilla.clone=template';

/** The fw_cfg entry a clone's QEMU carries and its template's does not: per-node data for clone-point. */
export const CLONE_FW_CFG = 'opt/flotilla/clone';

/** fw_cfg entries that carry a clone's NoCloud seed (opt/flotilla/nocloud/user-data, ...). */
export const CLONE_NOCLOUD_FW_CFG = 'opt/flotilla/nocloud';

/** The initrd's /init: load the modules, mount the root read-write, switch to systemd. */
export const INIT_SCRIPT = `#!/bin/sh
# Flotilla node initrd: no udev, no fsck; the kernel command line names the root device.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The accelerator probe (accel.ts) only needs to see the kernel reach this point.
case " $(cat /proc/cmdline) " in *" flotilla.probe=1 "*) echo FLOTILLA-PROBE-OK; poweroff -f;; esac
# A snapshot template (flotilla.clone=template) loads fw_cfg only after its restore, at the clone
# point (clone-point): the module reads QEMU's fw_cfg directory once, when it loads.
template=
case " $(cat /proc/cmdline) " in *" ${CLONE_TEMPLATE_ARG} "*) template=1;; esac
for m in $(cat /modules.order); do
  [ -n "$template" ] && [ "$m" = qemu_fw_cfg.ko ] && continue
  insmod "/lib/modules/$m" || echo "initrd: insmod $m failed"
done
root=/dev/vda
for arg in $(cat /proc/cmdline); do case "$arg" in root=*) root="\${arg#root=}";; esac; done
i=0
while [ ! -b "$root" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if ! mount -t ext4 -o rw,noatime "$root" /newroot; then
  echo "initrd: cannot mount $root; powering off"
  poweroff -f
fi
umount /sys
umount /proc
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
echo "initrd: switch_root failed; powering off"
poweroff -f
`;

/**
 * cloud-init: NoCloud only, and only the modules Flotilla's rendered cloud-config uses. The
 * config stage's modules run in the init stage and cloud-config.service is masked: every stage
 * is a Python process that spends ~3 s importing cloud-init under TCG, so three stages instead of
 * four. (runcmd's script still runs in the final stage: it starts units, which must not wait on
 * an early-boot job.)
 */
export const CLOUD_CFG = `# Flotilla node image: NoCloud seed only (the seed ISO Flotilla attaches), no network datasources.
datasource_list: [ NoCloud, None ]
# Only what Flotilla's cloud-config uses (render.ts): write_files, hostname, /etc/hosts, users,
# SSH keys, locale, password auth, runcmd; timezone for snippets. final-message writes
# /var/lib/cloud/instance/boot-finished.
cloud_init_modules:
  - write-files
  - set_hostname
  - update_hostname
  - update_etc_hosts
  - users-groups
  - ssh
  - locale
  - set-passwords
  - timezone
  - runcmd
cloud_config_modules: []
cloud_final_modules:
  - scripts-user
  - final-message
ssh_genkeytypes: [ ed25519 ]
locale: C.UTF-8
`;

/** Applies the Ignition config QEMU passes in fw_cfg, on first boot, in place of the initrd stages. */
export const IGNITION_FIRSTBOOT = `#!/bin/sh
# Flotilla: apply the Ignition config from QEMU fw_cfg (opt/com.coreos/config) on the running
# root filesystem. Debian ships Ignition for dracut; here its fetch and files stages run from
# this early-boot unit instead.
set -eu
IGN=/usr/lib/dracut/modules.d/30ignition/ignition
$IGN -platform qemu -stage fetch -root / -log-to-stdout
$IGN -platform qemu -stage files -root / -log-to-stdout
[ -s /etc/hostname ] && hostname "$(cat /etc/hostname)"
# Ignition's enabled: true only writes a preset; enable those units (and start them once sysinit is done).
preset=/etc/systemd/system-preset/20-ignition.preset
if [ -f "$preset" ]; then
  units=$(sed -n 's/^enable \\(.*\\)$/\\1/p' "$preset")
  if [ -n "$units" ]; then
    systemctl daemon-reload
    systemctl enable $units
    systemctl start --no-block $units
  fi
fi
mkdir -p /var/lib/flotilla
touch /var/lib/flotilla/ignition.done
echo "${CONSOLE_MARKER} first-boot $(cut -d" " -f1 /proc/uptime)" > /dev/ttyS0 || true
`;

export const IGNITION_UNIT = `[Unit]
Description=Apply the Ignition config from QEMU fw_cfg (Flotilla, first boot)
Documentation=https://coreos.github.io/ignition/
DefaultDependencies=no
ConditionPathExists=/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw
ConditionPathExists=!/var/lib/flotilla/ignition.done
After=local-fs.target systemd-remount-fs.service systemd-tmpfiles-setup.service
Before=sysinit.target systemd-networkd.service ssh.service cloud-init-local.service systemd-user-sessions.service
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
Environment=SYSTEMCTL_SKIP_SYSV=1
# Debian's Ignition ends its files stage with an SELinux relabel (setfiles); this node has no
# SELinux, so a no-op setfiles is found first on this unit's PATH only.
Environment=PATH=${AGENT_ROOT}/ignition-bin:/usr/sbin:/usr/bin:/sbin:/bin
StandardOutput=journal+console
ExecStart=${AGENT_ROOT}/ignition-firstboot
${firstBootFailedLine('ignition')}

[Install]
WantedBy=sysinit.target
`;

/**
 * Progress markers on the serial console (which QEMU writes to the node's console.log): the
 * host then knows when an SSH attempt can succeed instead of polling through QEMU's forward,
 * which accepts connections long before the guest can answer them.
 */
export const READY_UNIT = `[Unit]
Description=Report on the serial console that SSH is reachable (Flotilla)
After=ssh.service systemd-networkd.service
Wants=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
# Reachable means sshd listens and the uplink has its (DHCP) address.
ExecStartPre=-/lib/systemd/systemd-networkd-wait-online --interface=eth0:routable --timeout=120
ExecStart=/bin/sh -c 'echo "${CONSOLE_MARKER} ssh $$(cut -d" " -f1 /proc/uptime)" > /dev/ttyS0'

[Install]
WantedBy=multi-user.target
`;

/**
 * The clone point of a snapshot template (docs/local.md). A node booted with
 * flotilla.clone=template stops here: the kernel, the initrd, PID 1, journald and udev are done,
 * and nothing that reads first-boot config or holds per-node state (cloud-init, Ignition,
 * networkd, sshd, etcd, the agent) has started. The host saves the VM; each node's QEMU restores
 * it with opt/flotilla/clone in fw_cfg, which the template's QEMU lacks, so the wait ends only in
 * a clone. A clone then takes its own identity before first boot goes on: the RNG reseed
 * (vmgenid), the clock, its MACs, its machine ID, and its NoCloud seed.
 * `link OLD NEW` lines name MACs; `machine-id` and `seed` are hex (checked by the host).
 */
export const CLONE_POINT_SCRIPT = `#!/bin/sh
set -u
fwcfg=/sys/firmware/qemu_fw_cfg/by_name
clone=$fwcfg/${CLONE_FW_CFG}/raw
up() { cut -d" " -f1 /proc/uptime; }
fail() { echo "${CONSOLE_FAILURE_MARKER} first-boot clone-restore $(up) $*" > /dev/ttyS0; exit 1; }
udevadm settle --timeout=60 || true
restored=0
while :; do
  modprobe qemu_fw_cfg || fail "cannot load qemu_fw_cfg"
  [ -e "$clone" ] && break
  # fw_cfg's directory is read when the module loads: load it again until the node's entries show.
  modprobe -r qemu_fw_cfg
  [ $restored = 0 ] && echo "${CONSOLE_MARKER} clone-point $(up)" > /dev/ttyS0
  restored=1
  sleep 0.2
done
if [ $restored = 1 ]; then
  # The kernel reseeds its RNG when the VM generation ID changes (each clone has its own).
  i=0
  until dmesg | grep -q "crng reseeded due to virtual machine fork"; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "no RNG reseed after the restore (vmgenid)"
    sleep 0.1
  done
  # The system clock is the template's; the RTC follows the host's clock.
  busybox hwclock -s -u || fail "cannot set the clock from the RTC"
fi
machine_id=
while read -r key a b; do
  case "$key" in
    link)
      for d in /sys/class/net/*; do
        [ "$(cat "$d/address")" = "$a" ] || continue
        ip link set dev "\${d##*/}" address "$b" || fail "cannot set MAC $b on \${d##*/}"
      done ;;
    seed) printf %s "$a" > /dev/urandom ;;
    machine-id) machine_id=$a ;;
  esac
done < "$clone"
if [ $restored = 1 ] && [ -n "$machine_id" ]; then
  old=$(cat /etc/machine-id)
  echo "$machine_id" > /etc/machine-id
  # The template's early-boot journal becomes this node's (journald rotates the file it finds).
  [ -d "/run/log/journal/$old" ] && mv "/run/log/journal/$old" "/run/log/journal/$machine_id"
  head -c 512 /dev/urandom > /var/lib/systemd/random-seed
  # PID 1 and journald read the machine ID when they start: start both again with the node's.
  systemctl daemon-reexec || fail "systemctl daemon-reexec failed"
  systemctl restart systemd-journald.service || fail "cannot restart journald"
fi
nocloud=$fwcfg/${CLONE_NOCLOUD_FW_CFG}
if [ -d "$nocloud" ]; then
  seed=/var/lib/cloud/seed/nocloud
  mkdir -p -m 0700 "$seed"
  for f in meta-data user-data network-config; do
    [ -e "$nocloud/$f/raw" ] && install -m 0600 "$nocloud/$f/raw" "$seed/$f"
  done
fi
[ $restored = 1 ] && echo "${CONSOLE_MARKER} clone-restored $(up)" > /dev/ttyS0
exit 0
`;

export const CLONE_POINT_UNIT = `[Unit]
Description=Clone point of a snapshot template; a clone takes its identity here (Flotilla)
DefaultDependencies=no
ConditionKernelCommandLine=${CLONE_TEMPLATE_ARG}
After=systemd-journald.service systemd-udevd.service systemd-udev-trigger.service systemd-remount-fs.service
After=systemd-random-seed.service systemd-sysusers.service systemd-sysctl.service systemd-tmpfiles-setup.service local-fs.target
Before=sysinit.target cloud-init-local.service flotilla-ignition.service systemd-networkd.service network-pre.target ssh.service
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec=infinity
StandardOutput=journal+console
ExecStart=${AGENT_ROOT}/clone-point

[Install]
WantedBy=sysinit.target
`;

/** Only clone-point loads fw_cfg in a template (its directory is read once, when the module loads). */
export const FW_CFG_MODPROBE = `# Flotilla node image: qemu_fw_cfg is loaded by the initrd, or in a snapshot template by
# clone-point after the restore, never by udev's modalias (that would read the template's fw_cfg).
blacklist qemu_fw_cfg
`;

export const CLOUD_FINAL_DROPIN = `[Service]
# Flotilla: first-boot configuration is done (cloud-init's final stage succeeded).
ExecStartPost=/bin/sh -c 'echo "${CONSOLE_MARKER} first-boot $$(cut -d" " -f1 /proc/uptime)" > /dev/ttyS0'
# ... or it failed (a module failed: cloud-init exits with the number of errors).
${firstBootFailedLine('cloud-init')}
`;

/** cloud-init's earlier stages report a failure on the console as the final stage does. */
export const CLOUD_STAGE_DROPIN = `[Service]
# Flotilla: a failed cloud-init stage (a module failed: cloud-init exits with the number of errors).
${firstBootFailedLine('cloud-init')}
`;

/** Stands in for setfiles(8) in Ignition's relabel step: there is no SELinux policy to apply. */
export const NOOP_SETFILES = `#!/bin/sh
# Flotilla node image: no SELinux. Ignition passes the paths to relabel on stdin; drain them.
cat >/dev/null
exit 0
`;

/** Ignition (Debian's build) reads SELINUXTYPE from here before relabelling; SELinux stays disabled. */
export const SELINUX_CONFIG = `# Flotilla node image: SELinux is not used. Present only because Debian's Ignition reads it.
SELINUX=disabled
SELINUXTYPE=none
`;

/** The local container image a node can run without a registry (none is reachable). */
export const LOCAL_CONTAINER_IMAGE = 'localhost/busybox:latest';

/**
 * Imports LOCAL_CONTAINER_IMAGE from the node's own busybox-static: a root filesystem of
 * busybox and its applet links, passwd/group, and /srv/index.html for `httpd -h /srv`.
 * Run on the node (CONTAINER_IMAGES_UNIT), not at image build time: podman unpacks layers in
 * a private mount namespace, which a chroot on the build host cannot provide.
 */
export const CONTAINER_IMAGES_SCRIPT = `#!/bin/sh
set -eu
image=${LOCAL_CONTAINER_IMAGE}
if podman image exists "$image"; then exit 0; fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
root="$dir/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/srv" "$root/proc" "$root/sys" "$root/dev" "$root/root"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\\n' > "$root/etc/passwd"
printf 'root:x:0:\\nnogroup:x:65534:\\n' > "$root/etc/group"
echo 'flotilla busybox container' > "$root/srv/index.html"
chmod 1777 "$root/tmp"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$dir/rootfs.tar" .
podman import --change 'CMD ["/bin/sh"]' --message 'busybox-static from the Flotilla node image' "$dir/rootfs.tar" "$image"
`;

/**
 * Not enabled: a container unit pulls it in (Requires= and After=), so nodes that run no
 * containers never pay for podman at boot. Once per boot at most (the image persists on disk).
 */
export const CONTAINER_IMAGES_UNIT = `[Unit]
Description=Import the local container image ${LOCAL_CONTAINER_IMAGE} (Flotilla; no registry needed)
After=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${AGENT_ROOT}/import-container-images
`;

/** podman on a node: overlay on the ext4 root, host networking unless a unit asks otherwise. */
export const CONTAINERS_STORAGE_CONF = `# Flotilla node image: root's container storage.
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
`;

export const CONTAINERS_CONF = `# Flotilla node image. Containers share the node's network by default: the image has no
# iptables/nftables for bridge networks, and a unit's service is announced at the node's address.
[containers]
netns = "host"

[network]
# Debian also ships a CNI config, but no CNI plugins.
network_backend = "netavark"
`;

/** First boot (empty /etc/machine-id) runs `systemctl preset-all`: these files make it keep the image's choices. */
export const PRESET_FLOTILLA = `# Flotilla node image: what is enabled. Everything else is disabled (99-flotilla-default.preset),
# except what Ignition's own preset file (20-ignition.preset) enables.
enable systemd-networkd.service
enable systemd-networkd.socket
enable ssh.service
enable cloud-init-local.service
enable cloud-init.service
enable cloud-final.service
enable flotilla-ignition.service
enable flotilla-ready.service
enable flotilla-clone-point.service
enable remote-fs.target
disable getty@.service
disable systemd-pstore.service
disable systemd-network-generator.service
`;

export const PRESET_DEFAULT = `# Flotilla node image: anything not named in an earlier preset file stays off.
disable *
`;

/** Runs in the chroot after the files are written. Every step is one that made boot faster or the image smaller. */
export const CONFIGURE_SCRIPT = `set -eu
export SYSTEMCTL_SKIP_SYSV=1 LC_ALL=C
# SysV scripts: every service here has a native unit; without them systemd's sysv generator and
# Debian's systemctl hook have nothing to do.
rm -f /etc/init.d/* /etc/rc[0-6S].d/*
# Flotilla runs etcd from its own unit (flotilla-etcd.service); Debian's must never start.
systemctl mask etcd.service
# Timers and periodic jobs a short-lived cluster node does not need.
systemctl mask apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \\
  dpkg-db-backup.timer dpkg-db-backup.service e2scrub_all.timer e2scrub_all.service e2scrub_reap.service \\
  fstrim.timer fstrim.service systemd-tmpfiles-clean.timer
# Nobody logs in on a console (no passwords); networkd brings links up, nothing waits for them.
systemctl mask getty@.service serial-getty@.service console-getty.service systemd-networkd-wait-online.service
# Early-boot work a VM node does not need: each unit is a process start, ~0.1-1 s under TCG.
# (No module these would load is in the image; journald keeps logs in /run; no logind sessions:
# libpam-systemd is not installed.)
systemctl mask modprobe@.service kmod-static-nodes.service systemd-journal-flush.service \\
  systemd-network-generator.service systemd-pstore.service systemd-logind.service \\
  systemd-update-utmp.service systemd-update-utmp-runlevel.service \\
  dev-hugepages.mount sys-kernel-debug.mount sys-kernel-tracing.mount sys-fs-fuse-connections.mount \\
  sys-kernel-config.mount proc-sys-fs-binfmt_misc.automount
# Generators run at boot and again at every daemon-reload (cloud-init's runcmd does two): keep
# only fstab, cloud-init, debug (systemd.mask= etc.) and run (systemd.run=).
mkdir -p /etc/systemd/system-generators
for g in cryptsetup integritysetup veritysetup gpt-auto hibernate-resume system-update sysv rc-local getty; do
  ln -sf /dev/null "/etc/systemd/system-generators/systemd-$g-generator"
done
# udev rules for hardware a QEMU node does not have (input, sound, video, seats, tapes, dm, btrfs).
mkdir -p /etc/udev/rules.d
for r in 55-dm 60-autosuspend 60-cdrom_id 60-drm 60-evdev 60-fido-id 60-infiniband 60-input-id \\
  60-persistent-alsa 60-persistent-input 60-persistent-storage-dm 60-persistent-storage-tape \\
  60-persistent-v4l 60-sensor 60-serial 64-btrfs 66-azure-ephemeral 70-camera 70-joystick 70-mouse \\
  70-touchpad 70-uaccess 71-seat 73-seat-late 75-probe_mtd 78-sound-card 85-hwclock 95-dm-notify 96-e2scrub; do
  ln -sf /dev/null "/etc/udev/rules.d/$r.rules"
done
# cloud-init's config-stage modules run in its init stage (see 99_flotilla.cfg).
systemctl mask cloud-config.service
systemctl set-default multi-user.target
# sshd: no password logins (also makes cloud-init's set-passwords a no-op: no ssh restart);
# no motd or mail check per login.
sed -i -e 's/^#\\?PasswordAuthentication .*/PasswordAuthentication no/' /etc/ssh/sshd_config
sed -i -e '/pam_motd.so/d' -e '/pam_mail.so/d' /etc/pam.d/sshd
systemctl preset-all
systemctl enable systemd-networkd.service ssh.service flotilla-ignition.service flotilla-ready.service flotilla-clone-point.service
# First boot gets a fresh machine ID and fresh (or delivered) SSH host keys.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
ln -s /etc/machine-id /var/lib/dbus/machine-id
rm -f /etc/ssh/ssh_host_*
echo localhost > /etc/hostname
printf '127.0.0.1\\tlocalhost\\n::1\\t\\tlocalhost ip6-localhost ip6-loopback\\n' > /etc/hosts
rm -f /etc/resolv.conf
touch /etc/resolv.conf
echo 'LANG=C.UTF-8' > /etc/default/locale
printf '/dev/vda\\t/\\text4\\trw,noatime,errors=remount-ro\\t0\\t0\\n' > /etc/fstab
# Size: documentation, manual pages, translations, package lists, logs.
find /usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man /usr/share/info /usr/share/lintian /usr/share/locale/*
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/cache/debconf/*-old /var/lib/dpkg/*-old
find /var/log -type f -delete
rm -rf /tmp/* /var/tmp/*
`;

export const DPKG_NODOC = `# Flotilla node image: no documentation or translations from later installs either.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
`;

export const JOURNALD_CONF = `[Journal]
# Logs live in /run: no flush to disk at boot.
Storage=volatile
RuntimeMaxUse=32M
`;

export function defaultBaseRecipe(): BaseRecipe {
  return {
    builderVersion: BUILDER_VERSION,
    suite: 'bookworm',
    variant: 'minbase',
    packages: [...NODE_PACKAGES],
    securityUpdates: true,
    kernel: { package: 'linux-image-amd64', modules: [...IMAGE_MODULES], initrdModules: [...INITRD_MODULES], cmdline: KERNEL_CMDLINE },
    files: {
      '/etc/cloud/cloud.cfg.d/99_flotilla.cfg': { contents: CLOUD_CFG, mode: 0o644 },
      '/etc/systemd/system/flotilla-ignition.service': { contents: IGNITION_UNIT, mode: 0o644 },
      [`${AGENT_ROOT}/ignition-firstboot`]: { contents: IGNITION_FIRSTBOOT, mode: 0o755 },
      [`${AGENT_ROOT}/ignition-bin/setfiles`]: { contents: NOOP_SETFILES, mode: 0o755 },
      '/etc/selinux/config': { contents: SELINUX_CONFIG, mode: 0o644 },
      '/etc/systemd/system/flotilla-ready.service': { contents: READY_UNIT, mode: 0o644 },
      '/etc/systemd/system/cloud-final.service.d/10-flotilla-console.conf': { contents: CLOUD_FINAL_DROPIN, mode: 0o644 },
      '/etc/systemd/system/cloud-init-local.service.d/10-flotilla-console.conf': { contents: CLOUD_STAGE_DROPIN, mode: 0o644 },
      '/etc/systemd/system/cloud-init.service.d/10-flotilla-console.conf': { contents: CLOUD_STAGE_DROPIN, mode: 0o644 },
      '/etc/systemd/system-preset/00-flotilla.preset': { contents: PRESET_FLOTILLA, mode: 0o644 },
      '/etc/systemd/system-preset/99-flotilla-default.preset': { contents: PRESET_DEFAULT, mode: 0o644 },
      '/etc/systemd/journald.conf.d/10-flotilla.conf': { contents: JOURNALD_CONF, mode: 0o644 },
      '/etc/dpkg/dpkg.cfg.d/01-flotilla-nodoc': { contents: DPKG_NODOC, mode: 0o644 },
      '/etc/containers/storage.conf': { contents: CONTAINERS_STORAGE_CONF, mode: 0o644 },
      '/etc/containers/containers.conf': { contents: CONTAINERS_CONF, mode: 0o644 },
      '/etc/systemd/system/flotilla-container-images.service': { contents: CONTAINER_IMAGES_UNIT, mode: 0o644 },
      [`${AGENT_ROOT}/import-container-images`]: { contents: CONTAINER_IMAGES_SCRIPT, mode: 0o755 },
      '/etc/systemd/system/flotilla-clone-point.service': { contents: CLONE_POINT_UNIT, mode: 0o644 },
      [`${AGENT_ROOT}/clone-point`]: { contents: CLONE_POINT_SCRIPT, mode: 0o755 },
      '/etc/modprobe.d/flotilla-fw-cfg.conf': { contents: FW_CFG_MODPROBE, mode: 0o644 },
    },
    configureScript: CONFIGURE_SCRIPT,
    initScript: INIT_SCRIPT,
  };
}

export function defaultRecipe(bundleHash: string): ImageRecipe {
  return { base: defaultBaseRecipe(), bundleHash, diskGiB: 4, mkfsOptions: ['-m', '0', '-L', 'root'] };
}

/** JSON with object keys sorted at every level: the same data always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (value === undefined || typeof value === 'function' || typeof value === 'symbol') throw new TypeError(`canonicalJson: cannot encode ${typeof value}`);
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`canonicalJson: cannot encode ${value}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  return `{${Object.keys(obj)
    .sort()
    .filter((k) => obj[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`)
    .join(',')}}`;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The base layer's cache key. */
export function baseRecipeHash(base: BaseRecipe): string {
  return sha256(`flotilla-base\0${canonicalJson(base)}`);
}

/** The image's cache key: the base recipe, the agent bundle and the disk layout. */
export function recipeHash(recipe: ImageRecipe): string {
  return sha256(`flotilla-image\0${canonicalJson({ ...recipe, base: baseRecipeHash(recipe.base) })}`);
}
