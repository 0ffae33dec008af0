#!/usr/bin/env bash
# Build kmod/ (vmtier_idle.ko) out of tree against one kernel's headers.
#   scripts/build-kmod.sh <headers dir> [out dir]
# e.g. scripts/build-kmod.sh /usr/src/linux-headers-6.12.95+deb12-amd64
# The sources are copied to the out dir (default kmod/build-<kernel release>)
# so builds for several kernels never share objects. Warnings are errors.
# Prints the path of the built module on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
kdir="${1:?usage: build-kmod.sh <headers dir> [out dir]}"
[ -f "$kdir/Makefile" ] || { echo "build-kmod: no kernel headers at $kdir" >&2; exit 2; }
rel="$(basename "$kdir")"; rel="${rel#linux-headers-}"
out="${2:-$here/kmod/build-$rel}"
mkdir -p "$out"
cp "$here"/kmod/*.c "$here"/kmod/*.h "$here"/kmod/Makefile "$out"/
make -s -C "$kdir" M="$out" KCFLAGS="-Werror" modules >&2
echo "$out/vmtier_idle.ko"
