#!/usr/bin/env bash
# Installs, exercises and purges vmtier's .deb inside a fresh Debian bookworm root, as root,
# with the repository as the working directory. Expects: apt working, Node.js >= 20 at
# /usr/bin/node (npm at /usr/lib/node_modules/npm), the repository's node_modules built
# (`npm ci`), and the lab kernel's headers installed (scripts/ensure-lab.sh).
#
# Usage: bash scripts/fresh-root-deb.sh [kernel version]
#   (default: the last line of `bash scripts/ensure-lab.sh`, e.g. 6.12.95+deb12-amd64)
#
# Proves, failing on the first miss:
#  1. scripts/package-deb.sh builds the .deb; `apt-get install ./vmtier_*.deb` installs it with
#     its dependencies (dkms, libvirt0) from Debian;
#  2. `vmtier --help` and `vmtier doctor` run from PATH; the default config is a conffile that
#     vmtier accepts;
#  3. `dkms status` shows vmtier-idle installed for the kernel, its .ko is in /lib/modules and
#     modinfo reads it; DKMS's kernel hook rebuilds it when the module is gone (what a kernel
#     update does: AUTOINSTALL);
#  4. purge with /var/lib/vmtier/KEEP_ON_PURGE leaves only /var/lib/vmtier; purge without it
#     leaves nothing: no file named *vmtier*, no DKMS tree, no module, no systemd links.
set -euo pipefail

log() { printf 'fresh-root-deb: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
t0=$(date +%s)

[ "$(id -u)" = 0 ] || fail "run as root"
[ -f package.json ] && [ -f scripts/package-deb.sh ] || fail "run from the repository's top directory"
kver=${1:-$(bash scripts/ensure-lab.sh | tail -n 1)}
[ -n "$kver" ] || fail "no kernel version"
[ -e "/lib/modules/$kver/build/Makefile" ] || fail "headers of $kver are not installed (/lib/modules/$kver/build)"
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)

# Only names that are vmtier's own: the repository, npm's cache (npx records the project it ran
# there) and this script's temporary files excluded.
leftovers() {
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path "$PWD" -o -path "$work" -o -path "${HOME:-/root}/.npm" \) -prune -o \
    \( -iname '*vmtier*' -print \) 2>/dev/null | sort
}

work=$(mktemp -d /tmp/fresh-root-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
before=$(leftovers)
[ -z "$before" ] || fail "the root already holds vmtier files (not fresh): $before"

log "building the package"
deb=$(bash scripts/package-deb.sh "$work" | tail -n 1)
[ -f "$deb" ] || fail "package-deb.sh did not print a .deb path"
version=$(dpkg-deb -f "$deb" Version)
kmod_version=${version%%-*}

install_pkg() {
  log "apt-get install $(basename "$deb")"
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  # apt needs a path it can read as the _apt user.
  cp "$deb" /tmp/ && chmod 0644 "/tmp/$(basename "$deb")"
  "${APT[@]}" install "/tmp/$(basename "$deb")" >"$work/apt.log" 2>&1 || { tail -n 40 "$work/apt.log" >&2; fail "apt-get install failed"; }
  rm -f "/tmp/$(basename "$deb")"
  dpkg-query -W -f='${Status}' vmtier | grep -q 'install ok installed' || fail "vmtier is not installed"
}

check_installed() {
  command -v vmtier >/dev/null || fail "vmtier is not on PATH"
  [ "$(command -v vmtier)" = /usr/bin/vmtier ] || fail "vmtier on PATH is $(command -v vmtier)"
  (cd / && vmtier --help) >"$work/help.txt" || fail "vmtier --help exited $?"
  grep -q 'Usage: vmtier' "$work/help.txt" || fail "vmtier --help printed: $(head -n 3 "$work/help.txt")"
  grep -q 'serve' "$work/help.txt" || fail "vmtier --help lists no serve command"
  dpkg-query -W -f='${Conffiles}' vmtier | grep -q '/etc/vmtier/vmtier.yaml' || fail "/etc/vmtier/vmtier.yaml is not a conffile"
  # The packaged default configuration is valid for vmtier itself.
  (cd /usr/lib/vmtier && node --input-type=module -e "
    const { loadConfig } = await import('/usr/lib/vmtier/dist/src/config.js');
    const c = loadConfig({ config: '/etc/vmtier/vmtier.yaml' }, {});
    if (c.db !== '/var/lib/vmtier/vmtier.db') throw new Error('db is ' + c.db);
  ") || fail "the default /etc/vmtier/vmtier.yaml is not accepted by vmtier"
  [ -f /lib/systemd/system/vmtier.service ] || fail "no systemd unit"
  # doctor runs from PATH and answers with its report; 0/1/2 are its verdicts, anything else a crash.
  local rc=0
  (cd / && vmtier doctor --no-libvirt --json) >"$work/doctor.json" || rc=$?
  [ "$rc" -le 2 ] || fail "vmtier doctor exited $rc: $(cat "$work/doctor.json")"
  node -e "const r = JSON.parse(require('fs').readFileSync('$work/doctor.json', 'utf8')); if (r.exitCode !== $rc || !r.checks.some((c) => c.id === 'tiers')) process.exit(1)" ||
    fail "vmtier doctor --json printed no report"
  log "vmtier doctor: exit $rc"
  local st
  st=$(dkms status -m vmtier-idle -v "$kmod_version" -k "$kver")
  log "dkms status: $st"
  grep -Fxq "vmtier-idle/$kmod_version, $kver, x86_64: installed" <<<"$st" || fail "dkms status does not show vmtier-idle installed for $kver: $st"
  local ko
  ko=$(find "/lib/modules/$kver/updates/dkms" -name 'vmtier_idle.ko*' | head -n 1)
  [ -n "$ko" ] || fail "no vmtier_idle.ko under /lib/modules/$kver/updates/dkms"
  modinfo -k "$kver" vmtier_idle | grep -q "^vermagic: *$kver " || fail "modinfo -k $kver vmtier_idle: wrong or no vermagic"
}

install_pkg
check_installed
log "installed: vmtier --help from PATH, vmtier-idle built for $kver"

# A kernel update runs DKMS's hook (/etc/kernel/postinst.d/dkms) for the new kernel; with the
# module gone for $kver, the same hook must build and install it again (AUTOINSTALL=yes).
dkms uninstall -m vmtier-idle -v "$kmod_version" -k "$kver" >/dev/null
dkms unbuild -m vmtier-idle -v "$kmod_version" -k "$kver" >/dev/null 2>&1 || dkms remove -m vmtier-idle -v "$kmod_version" -k "$kver" >/dev/null 2>&1 || true
dkms status -m vmtier-idle -k "$kver" | grep -q installed && fail "could not take the module away for the rebuild check"
[ -x /etc/kernel/postinst.d/dkms ] || fail "dkms's kernel hook /etc/kernel/postinst.d/dkms is missing"
/etc/kernel/postinst.d/dkms "$kver" >"$work/hook.log" 2>&1 || { cat "$work/hook.log" >&2; fail "dkms kernel hook failed"; }
dkms status -m vmtier-idle -v "$kmod_version" -k "$kver" | grep -q ': installed' || { cat "$work/hook.log" >&2; fail "the kernel hook did not rebuild vmtier-idle for $kver"; }
log "the DKMS kernel hook rebuilt vmtier-idle for $kver"

# Purge, keeping the data the operator chose to keep.
mkdir -p /var/lib/vmtier
echo "history" >/var/lib/vmtier/vmtier.db
touch /var/lib/vmtier/KEEP_ON_PURGE
"${APT[@]}" purge vmtier >"$work/purge.log" 2>&1 || { tail -n 20 "$work/purge.log" >&2; fail "apt-get purge failed"; }
left=$(leftovers)
[ "$left" = $'/var/lib/vmtier\n/var/lib/vmtier/vmtier.db' ] || fail "after a purge keeping data, left: $left"
[ -e /var/lib/vmtier/KEEP_ON_PURGE ] || fail "the KEEP_ON_PURGE marker was removed"
log "purge with KEEP_ON_PURGE kept /var/lib/vmtier only"

# Reinstall over the kept data, then purge without the marker: nothing may remain.
install_pkg
check_installed
[ "$(cat /var/lib/vmtier/vmtier.db)" = history ] || fail "reinstall changed the kept data"
rm /var/lib/vmtier/KEEP_ON_PURGE
"${APT[@]}" purge vmtier >"$work/purge.log" 2>&1 || { tail -n 20 "$work/purge.log" >&2; fail "apt-get purge failed"; }
left=$(leftovers)
[ -z "$left" ] || fail "purge left: $left"
[ ! -e "/var/lib/dkms/vmtier-idle" ] || fail "purge left /var/lib/dkms/vmtier-idle"
dkms status | grep -q vmtier && fail "dkms still lists vmtier-idle"
find "/lib/modules/$kver" -name 'vmtier_idle.ko*' | grep -q . && fail "vmtier_idle.ko left under /lib/modules/$kver"
dpkg-query -W -f='${Status}' vmtier 2>/dev/null | grep -q 'installed' && fail "dpkg still lists vmtier as installed"
log "purge left nothing"
log "PASS in $(( $(date +%s) - t0 )) s"
