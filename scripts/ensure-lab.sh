#!/usr/bin/env bash
# Brings this machine to what the lab (an emulated tiered host, see lab/) needs, doing only what
# is missing: a Debian kernel image + its matching headers (also what kmod/ builds against: this
# script is the one place that installs them), busybox, ndctl/daxctl, numactl, gcc, pahole.
#   scripts/ensure-lab.sh [--kernel 6.12|6.1]
# 6.12 (the default): bookworm-backports' linux-image-amd64, whatever version it resolves to.
# 6.1: bookworm's own linux-image-amd64 (what a bookworm KVM host runs).
# Installing an image package only puts files in /boot and /lib/modules/<ver>; this machine never
# boots from them. Idempotent: a run that finds everything installed makes no network request.
# Prints the kernel version (e.g. 6.12.95+deb12-amd64) on stdout as its last line.
set -euo pipefail

log() { printf 'ensure-lab: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
APT=(apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)
export DEBIAN_FRONTEND=noninteractive

series=6.12
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) series="${2:-}"; shift 2 || die "--kernel needs 6.12 or 6.1" ;;
    *) die "usage: ensure-lab.sh [--kernel 6.12|6.1]" ;;
  esac
done
case "$series" in 6.12|6.1) ;; *) die "unknown kernel series '$series' (6.12 or 6.1)" ;; esac

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

apt_update_done=0
apt_update() {
  [ "$apt_update_done" = 1 ] && return 0
  log "apt-get update"
  # Others may run apt at the same time: the lists lock is not covered by DPkg::Lock::Timeout on every apt version.
  for _ in $(seq 1 60); do
    if apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 2>&1; then apt_update_done=1; return 0; fi
    sleep 5
  done
  apt-get -o DPkg::Lock::Timeout=600 update -q >&2 || die "apt-get update failed (see above)"
  apt_update_done=1
}
apt_install() {
  log "installing $*"
  "${APT[@]}" install "$@" >/dev/null || die "apt-get install $* failed"
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
  apt_update_done=0
  apt_update
fi

PKGS=(busybox-static cpio xz-utils kmod ndctl daxctl numactl dwarves gcc gcc-12 make libc6-dev qemu-system-x86)
missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  apt_install "${missing[@]}"
fi

# The versioned image package a metapackage version depends on ("linux-image-6.12.95+deb12-amd64 (= …)"),
# read from a Depends line on stdin. Never fails: an empty answer means "not known".
image_from_depends() { tr ',' '\n' | sed -n 's/^ *linux-image-\([0-9][^ ]*-amd64\).*/\1/p' | head -n 1; }

# The kernel this series resolves to, from what is installed (no network), else empty.
installed_version() {
  local v
  if [ "$series" = 6.12 ]; then
    v=$( { dpkg-query -W -f='${Depends}' linux-image-amd64 2>/dev/null || true; } | image_from_depends)
    case "$v" in 6.1.*) v="" ;; esac   # the metapackage from bookworm itself, not backports
  else
    v=$( { dpkg-query -W -f='${Package}\n' 'linux-image-6.1.0-*-amd64' 2>/dev/null || true; } |
         sed -n 's/^linux-image-\(6\.1\.0-[0-9]*-amd64\)$/\1/p' | sort -V | tail -n 1)
  fi
  if [ -n "$v" ] && installed "linux-image-$v" && installed "linux-headers-$v"; then echo "$v"; fi
}

# The kernel this series resolves to in the package lists (after apt-get update).
candidate_version() {
  local suite
  if [ "$series" = 6.12 ]; then suite=bookworm-backports; else suite=bookworm; fi
  { apt-cache show "linux-image-amd64/$suite" 2>/dev/null || true; } |
    awk -v want="$series" '
      /^Version:/ { split($2, a, "."); ok = (a[1] "." a[2] == want) ; next }
      ok && /^Depends:/ { sub(/^Depends:/, ""); print; exit }' | image_from_depends
}

ver=$(installed_version)
if [ -z "$ver" ]; then
  apt_update
  ver=$(candidate_version)
  [ -n "$ver" ] || die "cannot resolve the $series kernel from linux-image-amd64 in the package lists"
  # The headers depend on the image, so both go through apt together (dpkg -i --force-depends breaks apt).
  apt_install "linux-image-$ver" "linux-headers-$ver"
  installed "linux-image-$ver" && installed "linux-headers-$ver" || die "linux-image-$ver / linux-headers-$ver not installed after apt-get"
  # 6.12: record the backports metapackage too, so the next run resolves the version without the network.
  if [ "$series" = 6.12 ] && ! installed linux-image-amd64; then
    "${APT[@]}" install "linux-image-amd64/bookworm-backports" >/dev/null || log "could not install linux-image-amd64 from bookworm-backports (the next run will resolve the version again)"
  fi
fi

# modprobe inside the lab reads modules.dep from the shared root.
if [ ! -s "/lib/modules/$ver/modules.dep" ] || [ "/lib/modules/$ver/modules.dep" -ot "/lib/modules/$ver/modules.order" ]; then
  log "depmod $ver"
  depmod -a "$ver" || die "depmod -a $ver failed"
fi
[ -f "/boot/vmlinuz-$ver" ] || die "/boot/vmlinuz-$ver is missing after install (package linux-image-$ver)"
[ -f "/usr/src/linux-headers-$ver/Makefile" ] || die "/usr/src/linux-headers-$ver is missing (package linux-headers-$ver)"
echo "$ver"
