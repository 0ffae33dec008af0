#!/usr/bin/env bash
# Brings this machine to what the lab (an emulated tiered host, see lab/) needs, doing only what
# is missing: Debian's bookworm-backports 6.12 kernel image + its matching headers (also what
# kmod/ builds against: this script is the one place that installs them), busybox, ndctl/daxctl,
# numactl, gcc. Installing the image package only puts files in /boot and /lib/modules/<ver>; this
# machine never boots from them. Idempotent: a second run makes no network request.
# Prints the kernel version (e.g. 6.12.95+deb12-amd64) on stdout as its last line.
set -euo pipefail

log() { printf 'ensure-lab: %s\n' "$*" >&2; }
APT=(apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# The metapackage's dependency names the versioned image package ("linux-image-6.12.95+deb12-amd64 (= ...)").
kernel_version() {
  dpkg-query -W -f='${Depends}' linux-image-amd64 2>/dev/null |
    tr ',' '\n' | sed -n 's/^ *linux-image-\([0-9][^ ]*-amd64\).*/\1/p' | head -n 1
}

apt_update_done=0
apt_update() {
  [ "$apt_update_done" = 1 ] && return 0
  # Others may run apt at the same time: the lists lock is not covered by DPkg::Lock::Timeout on every apt version.
  for _ in $(seq 1 60); do
    if apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 2>&1; then apt_update_done=1; return 0; fi
    sleep 5
  done
  apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  apt_update_done=1
}

if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "adding bookworm-backports (deb.debian.org)"
  cat >/etc/apt/sources.list.d/bookworm-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_update
fi

PKGS=(busybox-static cpio xz-utils kmod ndctl daxctl numactl dwarves gcc gcc-12 make libc6-dev qemu-system-x86)
missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt_update
  "${APT[@]}" install "${missing[@]}" >/dev/null
fi

ver=$(kernel_version)
case "$ver" in 6.1.*|"") ver="" ;; esac  # bookworm's own 6.1 lacks what the lab proves
if [ -z "$ver" ] || ! installed "linux-image-$ver" || ! installed "linux-headers-$ver"; then
  # The image metapackage from backports (6.12 at the time of writing; 6.1 from bookworm is too old
  # for what the lab proves). The headers depend on the image, so both go through apt together.
  if [ -z "$ver" ]; then
    log "installing linux-image-amd64 from bookworm-backports"
    apt_update
    "${APT[@]}" install linux-image-amd64/bookworm-backports >/dev/null
    ver=$(kernel_version)
  fi
  [ -n "$ver" ] || { log "could not resolve the kernel version from linux-image-amd64"; exit 1; }
  if ! installed "linux-image-$ver" || ! installed "linux-headers-$ver"; then
    log "installing linux-image-$ver and linux-headers-$ver"
    apt_update
    "${APT[@]}" install "linux-image-$ver" "linux-headers-$ver" >/dev/null
  fi
fi

# modprobe inside the lab reads modules.dep from the shared root.
if [ ! -s "/lib/modules/$ver/modules.dep" ] || [ "/lib/modules/$ver/modules.dep" -ot "/lib/modules/$ver/modules.order" ]; then
  log "depmod $ver"
  depmod -a "$ver"
fi
[ -f "/boot/vmlinuz-$ver" ] || { log "/boot/vmlinuz-$ver is missing after install"; exit 1; }
echo "$ver"
