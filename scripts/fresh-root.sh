#!/usr/bin/env bash
# The fresh-machine proof (CI runs it after `npm test`): builds a clean Debian bookworm root with
# debootstrap (minbase), gives it what a new machine of this kind has and nothing more — Debian's
# build-essential, python3, git and curl; this machine's Node.js with its npm and headers
# (bind-mounted, not installed); this machine's CA certificates and apt/npm configuration — copies
# the repository in and runs there what README.md tells a newcomer (scripts/newcomer.sh). It fails
# when any step needs something only a used machine has.
#
# The root runs in its own mount and PID namespaces: its libvirtd, virtlogd and lab QEMU are its
# own, every mount disappears with the namespace, and nothing it starts outlives the proof.
#   scripts/fresh-root.sh            build a new root, run the newcomer's steps, remove the root
#   VMTIER_FRESH_KEEP=1              keep the root afterwards (under $VMTIER_FRESH_ROOT) to look at
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="${VMTIER_FRESH_ROOT:-/var/tmp/vmtier-fresh-root}"
MIRROR="${VMTIER_FRESH_MIRROR:-http://deb.debian.org/debian}"
REPO_IN_ROOT=/root/vmtier
t0=$SECONDS
log() { printf 'fresh-root: [%4ds] %s\n' "$((SECONDS - t0))" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---- inside the namespaces: mount what the root borrows from this machine, then chroot ----
if [ "${1:-}" = "--in-namespace" ]; then
  mount --make-rprivate /
  mount -t proc proc "$ROOT/proc"
  mount --rbind /sys "$ROOT/sys"
  mount --rbind /dev "$ROOT/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$ROOT/dev/shm"
  mount -t tmpfs -o mode=755 tmpfs "$ROOT/run"
  # This machine's Node.js 20: the binary, npm (npx is npm's too) and the headers node-gyp builds against.
  touch "$ROOT/usr/bin/node"
  mount --bind -o ro /usr/bin/node "$ROOT/usr/bin/node"
  mkdir -p "$ROOT/usr/lib/node_modules/npm" "$ROOT/usr/include/node"
  mount --bind -o ro "$(readlink -f /usr/lib/node_modules/npm)" "$ROOT/usr/lib/node_modules/npm"
  mount --bind -o ro /usr/include/node "$ROOT/usr/include/node"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOT/usr/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOT/usr/bin/npx"
  exec chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb CI="${CI:-}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd $REPO_IN_ROOT && exec bash scripts/newcomer.sh"
fi

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, namespaces)"

# Mounts live only in the proof's own mount namespace; refuse to delete a root that still has any.
remove_root() {
  [ -e "$ROOT" ] || return 0
  if findmnt -rn -o TARGET | grep -q "^$ROOT\(/\|$\)"; then
    die "something is still mounted under $ROOT; not removing it"
  fi
  rm -rf --one-file-system "$ROOT"
}
finish() {
  local rc=$?
  if [ "${VMTIER_FRESH_KEEP:-}" = 1 ]; then log "kept $ROOT"; else remove_root || true; fi
  if [ $rc -eq 0 ]; then log "fresh-root proof passed in $((SECONDS - t0)) s"; else log "fresh-root proof FAILED (exit $rc) after $((SECONDS - t0)) s"; fi
}

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap (this machine)"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends install debootstrap >/dev/null ||
    { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends install debootstrap >/dev/null; } ||
    die "apt-get install debootstrap failed"
fi
remove_root
trap finish EXIT

log "debootstrap --variant=minbase bookworm $ROOT $MIRROR"
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 ||
  { tail -n 20 "$ROOT.debootstrap.log" >&2; die "debootstrap failed (log: $ROOT.debootstrap.log)"; }
rm -f "$ROOT.debootstrap.log"

# What this machine's registries need: its apt sources and settings, CA certificates and npm
# configuration. Sources that vmtier's own scripts add (bookworm-backports) stay out: a new
# machine does not have them, and the proof shows the scripts add them.
log "copying this machine's apt, CA and npm configuration"
rm -f "$ROOT/etc/apt/sources.list"
[ -f /etc/apt/sources.list ] && ! grep -q bookworm-backports /etc/apt/sources.list && cp /etc/apt/sources.list "$ROOT/etc/apt/"
for f in /etc/apt/sources.list.d/*; do
  [ -f "$f" ] || continue
  grep -q bookworm-backports "$f" && continue
  cp "$f" "$ROOT/etc/apt/sources.list.d/"
done
cp -r /etc/apt/apt.conf.d/. "$ROOT/etc/apt/apt.conf.d/"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
mkdir -p "$ROOT/etc/ssl/certs" "$ROOT/usr/etc"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/"
[ -f /root/.npmrc ] && cp /root/.npmrc "$ROOT/root/.npmrc"
[ -f /usr/etc/npmrc ] && cp /usr/etc/npmrc "$ROOT/usr/etc/npmrc"

# What a new machine of this kind has besides Node.js: Debian's python3, make, g++, git and curl.
log "installing what a new machine has: build-essential python3 git curl"
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  bash -c 'apt-get -q update >/dev/null && apt-get -q -y --no-install-recommends install build-essential python3 git curl >/dev/null' ||
  die "installing the base packages in the fresh root failed"

# The repository as committed or changed in this tree (not node_modules, dist or caches).
log "copying the repository to $REPO_IN_ROOT"
mkdir -p "$ROOT$REPO_IN_ROOT"
git -C "$here" ls-files -z --cached --others --exclude-standard | (cd "$here" && tar --null -T - -cf -) | tar -C "$ROOT$REPO_IN_ROOT" -xf -

log "running the newcomer's steps in the fresh root (own mount and PID namespaces)"
unshare --mount --pid --fork -- env VMTIER_FRESH_ROOT="$ROOT" bash "$0" --in-namespace ||
  die "a newcomer step failed in the fresh root (see above)"
