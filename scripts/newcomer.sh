#!/usr/bin/env bash
# What README.md tells a newcomer, step by step, each timed, on the machine it runs on. Run by
# scripts/fresh-root.sh inside a clean Debian root (where it proves set-up from nothing); it can
# also run on any machine of this kind from the repository root. It installs and starts what the
# README says the commands install and start, and checks each result rather than trusting exit codes.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
summary=()
log() { printf 'newcomer: [%4ds] %s\n' "$((SECONDS - t0))" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
# step NAME CMD...: runs one README step; its output goes to stderr; a failure names the step.
step() {
  local name="$1"; shift
  local s=$SECONDS
  log "step: $name"
  "$@" >&2 || die "step '$name' failed: $*"
  summary+=("$(printf '%-42s %4d s' "$name" "$((SECONDS - s))")")
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

node --version >/dev/null || die "no Node.js on PATH"
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || die "Node.js 20 or newer is needed"

# What the set-up must bring, recorded before it runs: on a fresh root none of it is there.
before_kernels=$(dpkg-query -W -f='${Package}\n' 'linux-image-*' 2>/dev/null | grep -c '^linux-image-[0-9]' || true)
before_qemu=0; installed qemu-system-x86 && before_qemu=1
log "before set-up: $before_kernels kernel image package(s), qemu-system-x86 installed: $before_qemu"

step "npm ci" npm ci --no-audit --no-fund
step "npm run build" npm run build --silent
step "host set-up (scripts/ensure-host.sh)" bash scripts/ensure-host.sh
installed qemu-system-x86 || die "ensure-host.sh did not install qemu-system-x86"
virsh -c qemu:///system version >/dev/null || die "libvirtd does not answer after ensure-host.sh"

lab_out=$(mktemp)
step "lab set-up (scripts/ensure-lab.sh)" bash -c "bash scripts/ensure-lab.sh >$lab_out"
ver=$(tail -n 1 "$lab_out")
installed "linux-image-$ver" && installed "linux-headers-$ver" ||
  die "ensure-lab.sh printed '$ver' but linux-image-$ver / linux-headers-$ver are not installed"
[ -f "/boot/vmlinuz-$ver" ] && [ -s "/lib/modules/$ver/modules.dep" ] || die "the lab kernel $ver is not complete (/boot, modules.dep)"
case "$ver" in 6.1.*) die "ensure-lab.sh resolved bookworm's 6.1 ($ver) instead of the backports kernel" ;; esac
log "lab kernel: $ver"

ko_out=$(mktemp)
step "kmod build for the lab kernel ($ver)" bash -c "bash scripts/build-kmod.sh --debian 6.12 >$ko_out"
[ -f "$(tail -n 1 "$ko_out")" ] || die "build-kmod.sh --debian 6.12 printed no module"
step "kmod build for bookworm's 6.1" bash -c "bash scripts/build-kmod.sh --debian 6.1 >$ko_out"
ko61=$(tail -n 1 "$ko_out")
[ -f "$ko61" ] || die "build-kmod.sh --debian 6.1 printed no module"
modinfo -F vermagic "$ko61" | grep -q '^6\.1\.' || die "$ko61 is not built for 6.1: $(modinfo -F vermagic "$ko61")"

step "npx vmtier --help" bash -c 'npx vmtier --help | grep -q "Usage: vmtier"'
host_json=$(mktemp)
step "npx vmtier host --json" bash -c "npx vmtier host --json >$host_json"
node -e 'const h = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); if (!(h.nodes.length >= 1)) process.exit(1)' "$host_json" ||
  die "vmtier host --json did not list a NUMA node: $(head -c 400 "$host_json")"
step "npx vmtier profile render cxl-expander" bash -c 'npx vmtier profile render cxl-expander | grep -q -- "-numa"'

# `npm start` (after set-up it only starts the service): serves /healthz on its listen address.
port=$((20000 + RANDOM % 20000))
start_log=$(mktemp)
start_service() {
  # Its own process group, so that stopping it stops npm, start.mjs and the service alike.
  setsid npm start -- --listen "127.0.0.1:$port" --db /tmp/newcomer.db >"$start_log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then kill -- "-$pid"; wait "$pid" 2>/dev/null || true; return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -- "-$pid" 2>/dev/null || true
  tail -n 30 "$start_log" >&2
  return 1
}
step "npm start answers /healthz" start_service

# One lab boot that runs a command: the module loaded (--kmod), a kernel word appended (--append),
# and vmtier called as README says (inside the lab: `vmtier`, see README "The lab").
lab_cmd_out=$(mktemp)
step "npm run lab -- --kmod --append (one lab boot)" bash -c \
  "npm run lab --silent -- --kmod --append maxcpus=1 'vmtier --help >/dev/null && grep -q ^vmtier_idle /proc/modules && uname -r && echo cpus=\$(nproc) && echo lab-command-ok' >$lab_cmd_out"
grep -q '^lab-command-ok$' "$lab_cmd_out" || die "the lab command did not run: $(cat "$lab_cmd_out")"
grep -qx "$ver" "$lab_cmd_out" || die "the lab did not boot $ver: $(cat "$lab_cmd_out")"
grep -qx 'cpus=1' "$lab_cmd_out" || die "--append maxcpus=1 did not reach the lab kernel: $(cat "$lab_cmd_out")"

# The Debian package (built, installed, checked and purged), where the repository has one.
if [ -f scripts/fresh-root-deb.sh ]; then
  step "package: build, install, purge (scripts/fresh-root-deb.sh)" bash scripts/fresh-root-deb.sh "$ver"
fi

log "all steps passed in $((SECONDS - t0)) s:"
printf '  %s\n' "${summary[@]}" >&2
