#!/bin/busybox sh
# /init of the lab's initramfs (busybox only). Mounts this machine's root over 9p read-only,
# puts tmpfs where the guest must write, mounts the per-session exchange share, then chroots
# into the shared root and runs the session agent (agent.sh, placed in the share by the host).
/bin/busybox --install -s /bin
export PATH=/bin
fail() {
  echo "LAB-INIT-FAILED: $*"
  poweroff -f
  sleep 5
}
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Order matters (9p needs 9pnet and netfs, on 6.1 fscache too; the transport needs 9pnet): the
# host wrote it, dependencies first, to root.order and tier.order (lab/initramfs.ts).
for m in $(cat /modules/root.order); do
  insmod "/modules/$m.ko" || fail "insmod $m"
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host /newroot || fail "mount host root over 9p"
# The memory tiers' modules (the agent configures the devices): nfit finds the NVDIMMs, nd_pmem
# and dax_pmem make devdax namespaces possible, device_dax backs /dev/daxX.Y, kmem onlines them.
for m in $(cat /modules/tier.order); do
  insmod "/modules/$m.ko" || fail "insmod $m"
done
for d in tmp run var/tmp root; do
  # /var/run is a symlink to /run on Debian: mounting over a symlink would follow it.
  [ -L "/newroot/$d" ] && continue
  mount -t tmpfs -o mode=1777 tmpfs "/newroot/$d" || fail "tmpfs on /$d"
done
chmod 700 /newroot/root
# The repository is shared on its own too: when it lies under one of the tmpfs above it
# would be hidden. The host passes its path on the kernel command line (no spaces).
repo=$(sed -n 's/.*vmtier_repo=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$repo" ]; then
  mkdir -p "/newroot$repo" 2>/dev/null
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose repo "/newroot$repo" || fail "mount repository over 9p"
fi
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t debugfs debugfs /newroot/sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /newroot/sys/kernel/tracing 2>/dev/null
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup 2>/dev/null
mkdir -p /newroot/run/lab/xchg /newroot/run/lab/bin
# cache=none: requests written by the host must be seen at once, and results reach the host at once.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none xchg /newroot/run/lab/xchg || fail "mount exchange share"
cp /bin/busybox /newroot/run/lab/bin/busybox
[ -f /newroot/run/lab/xchg/agent.sh ] || fail "agent.sh missing in the exchange share"
exec chroot /newroot /bin/sh /run/lab/xchg/agent.sh
