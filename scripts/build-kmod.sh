#!/usr/bin/env bash
# Build kmod/ (vmtier_idle.ko) out of tree against one kernel's headers.
#   scripts/build-kmod.sh <headers dir> [out dir]
#   scripts/build-kmod.sh --debian 6.12|6.1 [out dir]
# --debian 6.12: the lab kernel's headers (bookworm-backports), installed by scripts/ensure-lab.sh.
# --debian 6.1:  bookworm's own kernel (what linux-image-amd64 resolves to there), image and
#                headers installed by scripts/ensure-lab.sh --kernel 6.1 (the lab boots it too).
# The sources are copied to the out dir (default kmod/build-<kernel release>) so builds for
# several kernels never share objects. Warnings are errors. Prints the module's path last.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
log() { printf 'build-kmod: %s\n' "$*" >&2; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# What any out-of-tree build needs: make, the compiler the kernel was built with (gcc-12 on bookworm
# and backports) and pahole (dwarves): 6.12's headers generate BTF for modules and fail without it.
need=()
for p in make gcc gcc-12 libc6-dev dwarves kmod; do installed "$p" || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends install "${need[@]}" >/dev/null 2>&1; then
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null || { log "apt-get update failed"; exit 1; }
    apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends install "${need[@]}" >/dev/null ||
      { log "apt-get install ${need[*]} failed"; exit 1; }
  fi
fi

if [ "${1:-}" = "--debian" ]; then
  case "${2:-}" in
    6.12|6.1)
      # ensure-lab.sh installs the image and the matching headers through apt and prints the version.
      ver="$(bash "$here/scripts/ensure-lab.sh" --kernel "$2" | tail -n 1)" || { log "scripts/ensure-lab.sh --kernel $2 failed"; exit 1; }
      kdir="/usr/src/linux-headers-$ver"
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
make -s -C "$kdir" M="$out" KCFLAGS="-Werror" modules >&2 || { log "make against $kdir failed"; exit 1; }
echo "$out/vmtier_idle.ko"
