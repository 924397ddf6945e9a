#!/usr/bin/env bash
# Installs, from Debian's packages, everything Flotilla's tests and main job need.
# Idempotent: packages already present are skipped; safe to run any number of times.
set -euo pipefail

PACKAGES=(
  etcd-server etcd-client
  openssh-server openssh-client
  qemu-system-x86 qemu-utils
  debootstrap cloud-image-utils genisoimage dosfstools mtools
  cloud-init ignition
  libvirt-daemon-system libvirt-clients
  iproute2 e2fsprogs ca-certificates openssl
  socat  # SSH into a cluster's network namespace: ip netns exec NS socat STDIO TCP:127.0.0.1:PORT
  xz-utils  # node image: the kernel's vmlinux is unpacked from Debian's bzImage for PVH boot
  procps  # pgrep: the libvirt tests check that no QEMU of a deleted domain is left
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-host: must run as root (installs Debian packages)" >&2
  exit 2
fi

# Node.js and npm: the machine image normally has them; a bare Debian 12 gets Debian's.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Never start the packaged daemons on the host: tests start their own etcd/sshd
  # on loopback, and cloud-init must not run here. policy-rc.d blocks service starts.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  trap 'if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup-host: all ${#PACKAGES[@]} packages present"
fi

# libvirt runs QEMU as libvirt-qemu (group kvm). Without udev (containers) /dev/kvm stays
# root:root 0600, and libvirt's QEMU capability cache never validates ("KVM was enabled when
# probing, but it is not available now"), so every virsh define/start re-probes QEMU (5-50 s).
# Debian's udev rule makes it root:kvm 0660; do the same. Whether KVM is *used* is still decided
# by Flotilla's boot probe (src/provision/local/accel.ts).
if [ -c /dev/kvm ] && getent group kvm >/dev/null 2>&1; then
  chgrp kvm /dev/kvm
  chmod 0660 /dev/kvm
fi

# Node.js dependencies from the lockfile.
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
