#!/usr/bin/env bash
# Builds vmtier_<version>_amd64.deb with dpkg-deb alone (no debhelper):
#   /usr/lib/vmtier/              the built service (dist/src), migrations, profiles, and its
#                                 production npm dependencies (`npm ci --omit=dev`)
#   /usr/bin/vmtier               wrapper running it with Node.js >= 20
#   /lib/systemd/system/vmtier.service          (deploy/systemd/vmtier.service)
#   /etc/vmtier/vmtier.yaml       default configuration, a conffile (deploy/vmtier.yaml)
#   /usr/src/vmtier-idle-<ver>/   the kernel module's source for DKMS (kmod/, kmod/dkms.conf)
#   maintainer scripts            deploy/debian/{postinst,prerm,postrm}
#
# Usage: scripts/package-deb.sh [output dir]      (default: dist/deb)
# Env:   VMTIER_DEB_VERSION  package version (default: package.json's version)
# Needs: node >= 20 and npm, dpkg-deb; the repository's node_modules (for tsc and the built
# better-sqlite3 addon; `npm ci` first on a fresh checkout). Prints the .deb path last.
#
# Node.js is not a dependency of the package: Debian bookworm's nodejs is 18, too old. The host
# must provide Node.js 20 or newer as `node` on PATH (NodeSource's nodejs package, or a binary
# install); /usr/bin/vmtier checks the version and says so.
set -euo pipefail

log() { printf 'package-deb: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/dist/deb}
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
command -v node >/dev/null || die "node (>= 20) not found on PATH"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node $(node --version) is too old: vmtier needs Node.js >= 20"
# npm may be present only as the module directory (a bind-mounted /usr/lib/node_modules/npm).
if command -v npm >/dev/null; then NPM=(npm)
elif [ -f /usr/lib/node_modules/npm/bin/npm-cli.js ]; then NPM=(node /usr/lib/node_modules/npm/bin/npm-cli.js)
else die "npm not found"; fi

version=${VMTIER_DEB_VERSION:-$(node -p "require('$repo/package.json').version")}
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "not a Debian version: $version"
# DKMS versions may not contain a Debian revision's '-'; the module's version is the upstream part.
kmod_version=${version%%-*}

[ -d "$repo/node_modules/typescript" ] || die "run 'npm ci' in $repo first (tsc and the native better-sqlite3 addon come from node_modules)"
log "building dist/ (tsc)"
(cd "$repo" && "${NPM[@]}" run --silent build)
[ -f "$repo/dist/src/cli.js" ] || die "the build did not produce dist/src/cli.js"

work=$(mktemp -d "${TMPDIR:-/tmp}/vmtier-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
lib=$root/usr/lib/vmtier
mkdir -p "$lib/bin" "$lib/dist" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/vmtier" \
  "$root/usr/share/doc/vmtier" "$root/DEBIAN"

# The service: only what runs (dist/src), plus the files it reads relative to its install
# directory (migrations/, qemu-profiles/, api/openapi.yaml).
cp -a "$repo/dist/src" "$lib/dist/src"
find "$lib/dist" -name '*.map' -delete
cp -a "$repo/bin/vmtier.js" "$lib/bin/"
cp -a "$repo/migrations" "$repo/qemu-profiles" "$repo/api" "$lib/"
cp "$repo/package.json" "$repo/package-lock.json" "$lib/"

log "npm ci --omit=dev into the staging directory"
# --ignore-scripts: better-sqlite3's install script would fetch a prebuilt binary or need the
# Node.js headers and a compiler; the addon the repository already built for this same Node.js
# is copied instead (checked by loading it below). koffi ships its binaries as npm packages.
(cd "$lib" && "${NPM[@]}" ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
addon=node_modules/better-sqlite3/build/Release/better_sqlite3.node
[ -f "$repo/$addon" ] || die "$repo/$addon is missing: run 'npm ci' (or 'npm rebuild better-sqlite3') in $repo"
repo_bs=$(node -p "require('$repo/node_modules/better-sqlite3/package.json').version")
lib_bs=$(node -p "require('$lib/node_modules/better-sqlite3/package.json').version")
[ "$repo_bs" = "$lib_bs" ] || die "better-sqlite3 $lib_bs in the lockfile but $repo_bs built in node_modules: run 'npm ci'"
mkdir -p "$lib/$(dirname "$addon")"
cp "$repo/$addon" "$lib/$addon"
# The addon's C sources (the SQLite amalgamation: 12 of its 13 MB) are only needed to build it.
rm -rf "$lib/node_modules/better-sqlite3/deps" "$lib/node_modules/better-sqlite3/src"
(cd "$lib" && node -e "
  const db = require('better-sqlite3')(':memory:');
  if (db.prepare('select 41 + 1 as v').get().v !== 42) process.exit(1);
  require('koffi');
") || die "the staged dependencies do not load (better-sqlite3 or koffi)"
rm -f "$lib/package-lock.json" "$lib/node_modules/.package-lock.json"

cat >"$root/usr/bin/vmtier" <<'WRAP'
#!/bin/sh
# vmtier needs Node.js >= 20 as `node` (Debian bookworm's nodejs is 18; see README "Install on a KVM host").
if ! command -v node >/dev/null 2>&1; then
  echo "vmtier: Node.js >= 20 is required ('node' not found on PATH)" >&2
  exit 69
fi
case "$(node --version 2>/dev/null)" in
  v[2-9][0-9].*|v[1-9][0-9][0-9]*) ;;
  *) echo "vmtier: Node.js >= 20 is required, found $(node --version 2>/dev/null || echo none)" >&2; exit 69 ;;
esac
exec node /usr/lib/vmtier/bin/vmtier.js "$@"
WRAP
chmod 0755 "$root/usr/bin/vmtier"

install -m 0644 "$repo/deploy/systemd/vmtier.service" "$root/lib/systemd/system/vmtier.service"
install -m 0644 "$repo/deploy/vmtier.yaml" "$root/etc/vmtier/vmtier.yaml"
install -m 0644 "$repo/README.md" "$root/usr/share/doc/vmtier/README.md"

# DKMS source: the module's files only (no build products), dkms.conf with this version.
src=$root/usr/src/vmtier-idle-$kmod_version
mkdir -p "$src"
for f in "$repo"/kmod/*.c "$repo"/kmod/*.h "$repo/kmod/Makefile" "$repo/kmod/README.md"; do install -m 0644 "$f" "$src/"; done
sed "s/^PACKAGE_VERSION=.*/PACKAGE_VERSION=\"$kmod_version\"/" "$repo/kmod/dkms.conf" >"$src/dkms.conf"
grep -q "^PACKAGE_VERSION=\"$kmod_version\"$" "$src/dkms.conf" || die "kmod/dkms.conf has no PACKAGE_VERSION line"

for s in postinst prerm postrm; do
  sed "s/@KMOD_VERSION@/$kmod_version/g" "$repo/deploy/debian/$s" >"$root/DEBIAN/$s"
  chmod 0755 "$root/DEBIAN/$s"
done
echo /etc/vmtier/vmtier.yaml >"$root/DEBIAN/conffiles"

installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CTRL
Package: vmtier
Version: $version
Architecture: amd64
Maintainer: vmtier developers <vmtier@localhost>
Section: admin
Priority: optional
Installed-Size: $installed_kb
Depends: dkms, libvirt0, libc6
Recommends: libvirt-daemon-system
Suggests: linux-headers-amd64, prometheus
Description: memory tiering for KVM virtual machines
 vmtier keeps the hot pages of KVM guests in DRAM and moves their cold pages to
 slow CPU-less NUMA nodes (PMEM, CXL). It finds libvirt domains, scans accessed
 bits through its own kernel module (built here by DKMS for every installed
 kernel with headers) or DAMON, and moves pages with move_pages(2).
 .
 Requires Node.js 20 or newer as 'node' on PATH, which this package does not
 pull in: Debian bookworm's nodejs package is version 18.
CTRL

# Ownership root:root whatever the builder's user (dpkg-deb --root-owner-group).
find "$root" -type d -exec chmod 0755 {} +
mkdir -p "$out"
deb=$out/vmtier_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
log "built $deb ($(du -h "$deb" | cut -f1))"
echo "$deb"
