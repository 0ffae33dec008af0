#!/bin/sh
# Starts libvirtd (and virtlogd) inside the lab guest. The guest's root is this machine's root,
# shared read-only over 9p, so everything libvirtd writes gets a tmpfs; /run is already one. The
# machine's own /etc/libvirt/qemu.conf (root, no security driver, no cgroups: scripts/ensure-host.sh)
# is read as it is. With /dev/kvm (kvm_amd loaded on an SVM CPU) domains of type 'kvm' run nested.
set -eu
for d in /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
  mountpoint -q "$d" || mount -t tmpfs -o mode=0755 tmpfs "$d"
done
mkdir -p /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu /run/libvirt
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d
i=0
until virsh -c qemu:///system version >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -gt 300 ]; then
    echo "libvirtd did not answer on qemu:///system" >&2
    exit 1
  fi
  sleep 0.2
done
virsh -c qemu:///system version
