#!/bin/sh
# The lab session agent: runs inside the guest, chrooted into this machine's root (read only).
# First it prepares the memory tiers (lab.conf, written by the host, says which NVDIMM becomes a
# kmem node and which stays devdax), then it runs the requests the host drops in the exchange
# share: req-N.sh runs in its own session; out-N.stdout / out-N.stderr / status-N are its results;
# kill-N asks to kill it; the file "poweroff" ends the guest.
X=/run/lab/xchg
BB=/run/lab/bin/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 VMTIER_LAB=1
# `vmtier` on PATH, running the repository's build: `npx vmtier` cannot work here, because npm 11
# runs a project's own bin by installing the project into its npx cache and chmod-ing bin/vmtier.js,
# which lies on the read-only shared root (EROFS).
repo=$(sed -n 's/.*vmtier_repo=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$repo" ]; then
  mkdir -p /run/lab/path
  printf '#!/bin/sh\nexec node %s/bin/vmtier.js "$@"\n' "$repo" >/run/lab/path/vmtier
  chmod 755 /run/lab/path/vmtier
  export PATH="/run/lab/path:$PATH"
fi
. "$X/lab.conf"

say() { echo "lab-agent: $*" >/dev/console; }
setup_fail() {
  say "setup failed: $*"
  echo "$*" >"$X/setup-failed.tmp"
  mv "$X/setup-failed.tmp" "$X/setup-failed"
  dmesg >"$X/dmesg.txt" 2>&1
  sync
  "$BB" poweroff -f
}

# Uptime stamps in setup.log show where boot time goes.
stamp() { echo "[lab-agent $(cut -d' ' -f1 /proc/uptime)] $*"; }

setup() {
  stamp "setup start"
  # init.sh loaded the modules from the initramfs (modprobe here would cost seconds under TCG).
  for m in nfit nd_pmem dax_pmem device_dax kmem; do
    [ -d "/sys/module/$m" ] || setup_fail "module $m is not loaded"
  done
  t=0
  while [ "$(ls -d /sys/bus/nd/devices/region* 2>/dev/null | wc -l)" -lt "$LAB_NVDIMM_COUNT" ]; do
    t=$((t + 1)); [ $t -gt 100 ] && setup_fail "expected $LAB_NVDIMM_COUNT NVDIMM regions"
    sleep 0.1
  done
  # Region numbers do not follow the NVDIMM order (the kernel groups them by node), so each
  # devdax device is placed by its size: the big ones become kmem, the small spare stays devdax.
  for r in /sys/bus/nd/devices/region*; do
    i=${r##*/region}
    # Label-less regions carry one namespace that can only be reconfigured whole (-s fails there).
    stamp "create-namespace region$i"
    ndctl create-namespace -f -e "namespace$i.0" --mode=devdax --align=2M || setup_fail "ndctl create-namespace region$i"
  done
  for d in /sys/bus/dax/devices/dax*; do
    dev=${d##*/}
    if [ "$(cat "$d/size")" -ge "$LAB_KMEM_MIN_BYTES" ]; then
      # --no-movable: ZONE_NORMAL, so the kernel may place any allocation there (like real PMEM in
      # kmem mode) and ENOMEM is reached when it is full.
      stamp "reconfigure $dev"
      daxctl reconfigure-device --mode=system-ram --no-movable "$dev" || setup_fail "daxctl reconfigure $dev"
    else
      echo "$dev" >>"$X/devdax"
    fi
  done
  stamp "tiers ready"
  for n in $LAB_EXPECT_NODES; do
    [ -d "/sys/devices/system/node/node$n" ] || setup_fail "node $n missing after onlining"
  done
}

setup >"$X/setup.log" 2>&1
uname -r >"$X/ready.tmp"
mv "$X/ready.tmp" "$X/ready"
say "ready"

n=0
while :; do
  if [ -e "$X/req-$n.sh" ]; then
    # setsid: a request and all its children form one process group that kill-N can end.
    setsid /bin/sh -c '
      echo $$ >"$1/pid-$2"
      cd "$3" || exit 126
      /bin/sh "$1/req-$2.sh" >"$1/out-$2.stdout" 2>"$1/out-$2.stderr" </dev/null
      echo $? >"$1/status-$2.tmp"
      mv "$1/status-$2.tmp" "$1/status-$2"' sh "$X" "$n" "$LAB_CWD" &
    n=$((n + 1))
    continue
  fi
  for k in "$X"/kill-*; do
    [ -e "$k" ] || continue
    id=${k##*/kill-}
    pid=$(cat "$X/pid-$id" 2>/dev/null)
    # dash's kill takes no "--": a process group is just the negative pid.
    [ -n "$pid" ] && kill -9 "-$pid" 2>/dev/null
    [ -e "$X/status-$id" ] || { echo 137 >"$X/status-$id.tmp"; mv "$X/status-$id.tmp" "$X/status-$id"; }
    rm -f "$k"
  done
  if [ -e "$X/poweroff" ]; then
    [ -e "$X/dmesg-on-poweroff" ] && dmesg >"$X/dmesg.txt" 2>&1
    sync
    "$BB" poweroff -f
  fi
  sleep 0.1
done
