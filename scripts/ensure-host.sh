#!/usr/bin/env bash
# Brings this machine to what vmtier's service and tests need, doing only what is missing:
# Debian packages, the libvirt-qemu user and groups, a sandbox-friendly qemu.conf (never
# overwriting one a user already has), and libvirtd/virtlogd started without systemd.
# Idempotent; safe to run before every test run.
#   scripts/ensure-host.sh           what the service needs (`npm start`)
#   scripts/ensure-host.sh --tests   and what the test suite needs besides (`npm test`): promtool
#                                    (prometheus), systemd-analyze (systemd), headless Chromium
set -euo pipefail

log() { printf 'ensure-host: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

PKGS=(qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
      busybox-static cpio xz-utils kmod ndctl daxctl numactl dwarves gcc make libc6-dev procps)
case "${1:-}" in
  --tests) PKGS+=(prometheus systemd chromium) ;;
  "") ;;
  *) printf 'usage: ensure-host.sh [--tests]\n' >&2; exit 2 ;;
esac
if [ -n "${VMTIER_EXTRA_PKGS:-}" ]; then read -r -a extra <<<"$VMTIER_EXTRA_PKGS"; PKGS+=("${extra[@]}"); fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null || die "apt-get update failed (is a Debian mirror reachable?)"
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
fi

# libvirtd refuses to start without these (normally made by libvirt-daemon-system).
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent group libvirt >/dev/null || groupadd -r libvirt
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/run/libvirt /etc/libvirt

# Only when the user has none: root, no security driver, no namespaces or cgroups (none work in this sandbox).
if [ ! -s /etc/libvirt/qemu.conf ]; then
  log "writing /etc/libvirt/qemu.conf"
  cat >/etc/libvirt/qemu.conf <<'CONF'
# Written by vmtier's scripts/ensure-host.sh for a sandbox without systemd, cgroups or namespaces.
user = "root"
group = "root"
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
CONF
fi

# The system daemons are judged by their pid files, not by process name: tests (and users) run
# private session libvirtd/virtlogd instances as other users, and a name match on those once hid
# a system libvirtd that had died (ensure-host then gave up instead of starting it).
system_daemon_running() { # name
  local pid
  pid=$(cat "/run/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
system_daemon_running virtlogd || { log "starting virtlogd"; virtlogd -d || die "virtlogd -d failed"; }
if ! virsh -c qemu:///system version >/dev/null 2>&1 && ! system_daemon_running libvirtd; then
  log "starting libvirtd"
  libvirtd -d || die "libvirtd -d failed (see /var/log/libvirt)"
fi
for _ in $(seq 1 50); do
  virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
  sleep 0.2
done
log "libvirtd did not answer on qemu:///system"
exit 1
