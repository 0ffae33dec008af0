#!/usr/bin/env bash
# Build kmod/ (vmtier_idle.ko) out of tree against one kernel's headers.
#   scripts/build-kmod.sh <headers dir> [out dir]
#   scripts/build-kmod.sh --debian 6.12|6.1 [out dir]
# --debian 6.12: the lab kernel's headers (bookworm-backports), installed by scripts/ensure-lab.sh.
# --debian 6.1:  bookworm's own kernel headers (what linux-headers-amd64 resolves to there),
#                installed through apt when missing.
# The sources are copied to the out dir (default kmod/build-<kernel release>) so builds for
# several kernels never share objects. Warnings are errors. Prints the module's path last.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
log() { printf 'build-kmod: %s\n' "$*" >&2; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if [ "${1:-}" = "--debian" ]; then
  case "${2:-}" in
    6.12)
      ver="$(bash "$here/scripts/ensure-lab.sh" | tail -n 1)"
      kdir="/usr/src/linux-headers-$ver"
      ;;
    6.1)
      # bookworm's linux-headers-amd64 (6.1.x) depends on linux-headers-6.1.0-NN-amd64.
      resolve61() {
        apt-cache show linux-headers-amd64 2>/dev/null | awk '
          /^Version: 6\.1\./ { v = 1; next } /^Version:/ { v = 0 }
          v && /^Depends:/ { for (i = 2; i <= NF; i++) if ($i ~ /^linux-headers-6\.1\./) { gsub(",", "", $i); print $i } }' |
          sort -V | tail -n 1
      }
      apt_install() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends install "$1" >&2; }
      pkg="$(resolve61)"
      if [ -z "$pkg" ] || ! installed "$pkg"; then
        # Stale package lists name versions the mirror no longer has: refresh once on failure.
        if [ -z "$pkg" ] || ! apt_install "$pkg"; then
          apt-get -o DPkg::Lock::Timeout=600 update -q >&2
          pkg="$(resolve61)"
          [ -n "$pkg" ] || { log "cannot resolve bookworm's 6.1 headers package"; exit 2; }
          log "installing $pkg"
          apt_install "$pkg"
        fi
      fi
      kdir="/usr/src/$pkg"
      ;;
    *) log "usage: build-kmod.sh --debian 6.12|6.1 [out dir]"; exit 2 ;;
  esac
  shift 2
else
  kdir="${1:?usage: build-kmod.sh <headers dir> [out dir] | --debian 6.12|6.1 [out dir]}"
  shift
fi
[ -f "$kdir/Makefile" ] || { log "no kernel headers at $kdir"; exit 2; }
rel="$(basename "$kdir")"
rel="${rel#linux-headers-}"
out="${1:-$here/kmod/build-$rel}"
mkdir -p "$out"
cp -p "$here"/kmod/*.c "$here"/kmod/*.h "$here"/kmod/Makefile "$out"/
make -s -C "$kdir" M="$out" KCFLAGS="-Werror" modules >&2
echo "$out/vmtier_idle.ko"
