/**
 * `vmtier doctor`: checks a host before vmtier tiers it, in the manner of virt-host-validate:
 * one PASS/WARN/FAIL line per check, with the exact command that fixes a WARN or FAIL. Reads
 * sysfs/procfs under configurable roots (fixture trees in tests) and never writes anything.
 *
 * Severity: FAIL = vmtier cannot tier on this host as it is (no tracker, no slow tier, missing
 * capabilities, libvirtd unreachable, a module speaking another ABI); WARN = it runs, but
 * something works against it (the kernel's own tiering, a foreign kdamond) or a VM is excluded.
 * Exit status: 0 all PASS, 1 some WARN and no FAIL, 2 any FAIL.
 */
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ioc, ioctlBuffer } from '../sys/ioctl.js';
import { parseDomainXml } from '../vm/domain-xml.js';
import { domainGates } from '../vm/tiering-gates.js';
import { defaultHugepageBytes, readHugepagePools } from './hugepages.js';
import { nodesOfClass, readHostTopology, type HostTopology } from './topology.js';

export type DoctorStatus = 'PASS' | 'WARN' | 'FAIL';

export interface DoctorCheck {
  /** Stable id ("kmod", "damon", "vm:<name>", ...). */
  id: string;
  status: DoctorStatus;
  message: string;
  /** The command or setting that fixes a WARN/FAIL. */
  fix?: string;
}

export interface DoctorReport {
  checks: DoctorCheck[];
  summary: { pass: number; warn: number; fail: number };
  exitCode: 0 | 1 | 2;
}

export interface DoctorVm {
  name: string;
  uuid: string;
  xml: string;
  /** The VM's policy mode in force (domain metadata, else the store), null when none is set. */
  mode: 'off' | 'observe' | 'tier' | null;
}

export type LibvirtProbe = { ok: true; uri: string; vms: DoctorVm[] } | { ok: false; uri: string; error: string };

export interface DoctorOptions {
  sysRoot?: string;
  procRoot?: string;
  /** Where kernel configs live (config-<release>), default /boot. */
  bootRoot?: string;
  kmodDevice?: string;
  /** Reads the module's ABI version through the device; throws a node fs error when it cannot open it. */
  kmodAbi?: (device: string) => number;
  /** Where vmtier's own DAMON ownership record lives (its kdamond is not foreign). */
  runDir?: string;
  /** Per-node class overrides from the configuration. */
  tierOverrides?: Record<string, 'top' | 'slow'>;
  /** libvirtd and its running domains; omitted = not checked. */
  libvirt?: LibvirtProbe;
}

/** The ABI this vmtier speaks (kmod/vmtier_idle_uapi.h VMTIER_IDLE_ABI_VERSION). */
export const KMOD_ABI_VERSION = 1;

/** Capabilities the service uses (deploy/systemd/vmtier.service says why each). */
const CAPS: Array<{ bit: number; name: string; why: string }> = [
  { bit: 2, name: 'CAP_DAC_READ_SEARCH', why: "read QEMU's /proc/<pid>/pagemap (mode 0400, QEMU's user)" },
  { bit: 19, name: 'CAP_SYS_PTRACE', why: "move_pages, process_madvise and /proc/<pid> reads of QEMU's process (another user)" },
  { bit: 21, name: 'CAP_SYS_ADMIN', why: 'open /dev/vmtier_idle; PFNs in /proc/<pid>/pagemap' },
  { bit: 23, name: 'CAP_SYS_NICE', why: "move_pages(MPOL_MF_MOVE_ALL) and process_madvise on QEMU's pages" },
];

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function list(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** VMTIER_IDLE_IOC_GET_INFO = _IOR(0xb9, 3, struct vmtier_idle_info) (kmod/vmtier_idle_uapi.h). */
const IOC_GET_INFO = ioc(2, 0xb9, 3, 64);

/** The module's abi_version, read through GET_INFO on a fresh open (no target set). */
function deviceKmodAbi(device: string): number {
  const fd = openSync(device, 'r');
  try {
    const info = Buffer.alloc(64);
    ioctlBuffer(fd, IOC_GET_INFO, info, 'VMTIER_IDLE_IOC_GET_INFO');
    return info.readUInt32LE(0);
  } finally {
    closeSync(fd);
  }
}

function checkKmod(o: Required<Pick<DoctorOptions, 'sysRoot' | 'kmodDevice'>> & DoctorOptions): { check: DoctorCheck; usable: boolean } {
  const fix = 'modprobe vmtier_idle   (built by DKMS for each kernel: dkms status vmtier-idle; dkms autoinstall)';
  if (!existsSync(join(o.sysRoot, 'module/vmtier_idle'))) {
    return { usable: false, check: { id: 'kmod', status: 'WARN', message: 'the vmtier_idle module is not loaded: the kmod tracker is unavailable', fix } };
  }
  let abi: number;
  try {
    abi = (o.kmodAbi ?? deviceKmodAbi)(o.kmodDevice);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    if (code === 'ENOENT') {
      return { usable: false, check: { id: 'kmod', status: 'FAIL', message: `vmtier_idle is loaded but ${o.kmodDevice} does not exist`, fix: 'check udev/devtmpfs; rmmod vmtier_idle && modprobe vmtier_idle' } };
    }
    return {
      usable: false,
      check: { id: 'kmod', status: 'WARN', message: `vmtier_idle is loaded; cannot open ${o.kmodDevice} (${code}): its ABI is not checked`, fix: 'run vmtier doctor as root (CAP_SYS_ADMIN)' },
    };
  }
  if (abi !== KMOD_ABI_VERSION) {
    return {
      usable: false,
      check: { id: 'kmod', status: 'FAIL', message: `vmtier_idle speaks ABI ${abi}, this vmtier speaks ABI ${KMOD_ABI_VERSION}`, fix: 'rmmod vmtier_idle && modprobe vmtier_idle (the DKMS build of this vmtier version)' },
    };
  }
  return { usable: true, check: { id: 'kmod', status: 'PASS', message: `vmtier_idle loaded, ${o.kmodDevice} answers ABI ${abi}` } };
}

function comm(procRoot: string, pid: string): string | null {
  return read(join(procRoot, pid, 'comm'))?.trim() ?? null;
}

/** vmtier's own kdamond (src/scan/damon.ts ownership record), if the service runs one. */
function ownKdamondPid(runDir: string): number | null {
  const t = read(join(runDir, 'damon-kdamond.json'));
  if (t === null) return null;
  try {
    const r = JSON.parse(t) as { kdamondPid?: unknown };
    return typeof r.kdamondPid === 'number' && r.kdamondPid > 0 ? r.kdamondPid : null;
  } catch {
    return null;
  }
}

function checkDamon(o: Required<Pick<DoctorOptions, 'sysRoot' | 'procRoot' | 'bootRoot' | 'runDir'>>): { checks: DoctorCheck[]; usable: boolean } {
  const admin = join(o.sysRoot, 'kernel/mm/damon/admin');
  if (!existsSync(admin)) {
    return { usable: false, checks: [{ id: 'damon', status: 'WARN', message: 'DAMON sysfs (/sys/kernel/mm/damon/admin) is absent: the damon tracker is unavailable', fix: 'a kernel with CONFIG_DAMON_SYSFS=y and CONFIG_DAMON_VADDR=y' }] };
  }
  const kdamonds = list(join(admin, 'kdamonds')).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(a) - Number(b));
  let ops: string[] | null = null;
  for (const k of kdamonds) {
    const t = read(join(admin, 'kdamonds', k, 'contexts/0/avail_operations'));
    if (t !== null) {
      ops = t.trim().split(/\s+/).filter(Boolean);
      break;
    }
  }
  // Without a kdamond directory, avail_operations cannot be read without creating one (a
  // write); the kernel's build configuration says the same thing.
  let source = 'avail_operations';
  if (ops === null) {
    const release = read(join(o.procRoot, 'sys/kernel/osrelease'))?.trim();
    const cfg = release ? read(join(o.bootRoot, `config-${release}`)) : null;
    if (cfg !== null) {
      source = `config-${release}`;
      ops = /^CONFIG_DAMON_PADDR=y/m.test(cfg) ? ['paddr'] : [];
      if (/^CONFIG_DAMON_VADDR=y/m.test(cfg)) ops.unshift('vaddr', 'fvaddr');
    }
  }
  const checks: DoctorCheck[] = [];
  const vaddr = ops?.includes('vaddr') ?? null;
  if (vaddr === true) checks.push({ id: 'damon', status: 'PASS', message: `DAMON offers vaddr (${ops!.join(' ')}; from ${source})` });
  else if (vaddr === false) checks.push({ id: 'damon', status: 'WARN', message: `DAMON offers "${ops!.join(' ')}", not vaddr: the damon tracker is unavailable`, fix: 'a kernel with CONFIG_DAMON_VADDR=y, or the vmtier_idle module' });
  else checks.push({ id: 'damon', status: 'WARN', message: 'cannot tell whether DAMON offers vaddr (no kdamond directory and no kernel config to read)' });

  const own = ownKdamondPid(o.runDir);
  const threads = list(o.procRoot).filter((p) => /^\d+$/.test(p) && Number(p) !== own && (comm(o.procRoot, p) ?? '').startsWith('kdamond'));
  const on = kdamonds.filter((k) => read(join(admin, 'kdamonds', k, 'state'))?.trim() === 'on');
  if (threads.length > 0 || on.length > (own !== null ? 1 : 0)) {
    checks.push({
      id: 'damon-foreign',
      status: 'WARN',
      message: `kdamonds vmtier did not create are running (${[...on.map((k) => `kdamond ${k} on`), ...threads.map((p) => `thread pid ${p}`)].join(', ')}): vmtier's damon tracker never disturbs them and will not start beside them; the kmod tracker is unaffected`,
      fix: 'use the kmod tracker (modprobe vmtier_idle), or stop the other DAMON user',
    });
    return { checks, usable: false };
  }
  if (kdamonds.length > 0 && own === null) {
    checks.push({ id: 'damon-foreign', status: 'WARN', message: `${kdamonds.length} kdamond director${kdamonds.length === 1 ? 'y' : 'ies'} configured by someone else exist: the damon tracker will not replace them` });
    return { checks, usable: false };
  }
  checks.push({ id: 'damon-foreign', status: 'PASS', message: 'no foreign kdamond' });
  return { checks, usable: vaddr === true };
}

function checkTiers(t: HostTopology): DoctorCheck {
  const top = nodesOfClass(t, 'top');
  const slow = nodesOfClass(t, 'slow');
  const tiers = t.tiers.length === 0 ? 'no kernel memory tiers' : t.tiers.map((x) => `memory_tier${x.tier}=[${x.nodes.join(',')}]`).join(' ');
  if (slow.length === 0) {
    return {
      id: 'tiers', status: 'FAIL',
      message: `no slow-tier node (top: ${top.join(',') || 'none'}; ${tiers}): there is nowhere to demote cold pages`,
      fix: 'online the PMEM/CXL memory as a NUMA node (daxctl reconfigure-device --mode=system-ram dax0.0), or name slow nodes under tiers: in /etc/vmtier/vmtier.yaml',
    };
  }
  if (top.length === 0) return { id: 'tiers', status: 'FAIL', message: `no top-tier (DRAM) node (${tiers})`, fix: 'check tiers: in /etc/vmtier/vmtier.yaml' };
  return { id: 'tiers', status: 'PASS', message: `top nodes ${top.join(',')}, slow nodes ${slow.join(',')} (${tiers})` };
}

function checkKernelTiering(t: HostTopology): DoctorCheck[] {
  const out: DoctorCheck[] = [];
  const nb = t.kernel.numaBalancing;
  if (nb === null) out.push({ id: 'numa-balancing', status: 'PASS', message: 'kernel NUMA balancing is not built in' });
  else if ((nb.value & 2) !== 0) {
    const keep = nb.value & 1;
    out.push({
      id: 'numa-balancing', status: 'WARN',
      message: `kernel.numa_balancing=${nb.value} (${nb.mode}): the kernel promotes the same pages vmtier places`,
      fix: `sysctl -w kernel.numa_balancing=${keep}   (persist: echo kernel.numa_balancing=${keep} > /etc/sysctl.d/60-vmtier.conf)`,
    });
  } else out.push({ id: 'numa-balancing', status: 'PASS', message: `kernel.numa_balancing=${nb.value} (${nb.mode}): no kernel memory tiering` });
  const slow = nodesOfClass(t, 'slow').length > 0;
  if (t.kernel.demotionEnabled === true && slow) {
    out.push({
      id: 'demotion', status: 'WARN',
      message: 'demotion_enabled=true: reclaim demotes pages to the slow tier behind vmtier',
      fix: 'echo false > /sys/kernel/mm/numa/demotion_enabled   (persist with a tmpfiles.d entry: w /sys/kernel/mm/numa/demotion_enabled - - - - false)',
    });
  } else {
    out.push({ id: 'demotion', status: 'PASS', message: `demotion_enabled=${t.kernel.demotionEnabled ?? 'absent'}${t.kernel.demotionEnabled && !slow ? ' (no slow node to demote to)' : ''}` });
  }
  return out;
}

function checkThp(sysRoot: string): DoctorCheck {
  const t = read(join(sysRoot, 'kernel/mm/transparent_hugepage/enabled'));
  const mode = t === null ? null : /\[(\w+)\]/.exec(t)?.[1] ?? null;
  if (mode === null) return { id: 'thp', status: 'PASS', message: 'transparent huge pages not available: guest RAM is tracked and moved per 4 KiB' };
  const why = mode === 'never' ? 'anonymous guest RAM is tracked and moved per 4 KiB' : 'THP-backed guest RAM is tracked and moved per 2 MiB (accessed bits exist per huge page)';
  return { id: 'thp', status: 'PASS', message: `transparent_hugepage=${mode}: ${why}` };
}

function checkCapabilities(procRoot: string): DoctorCheck {
  const status = read(join(procRoot, 'self/status'));
  const m = status ? /^CapEff:\s+([0-9a-f]+)$/m.exec(status) : null;
  if (!m) return { id: 'capabilities', status: 'WARN', message: 'cannot read CapEff of this process' };
  const eff = BigInt(`0x${m[1]}`);
  const missing = CAPS.filter((c) => (eff & (1n << BigInt(c.bit))) === 0n);
  if (missing.length === 0) return { id: 'capabilities', status: 'PASS', message: `has ${CAPS.map((c) => c.name).join(' ')}` };
  return {
    id: 'capabilities', status: 'FAIL',
    message: `missing ${missing.map((c) => `${c.name} (${c.why})`).join('; ')}`,
    fix: 'run as root; the systemd unit keeps exactly these capabilities (CapabilityBoundingSet)',
  };
}

function checkVms(l: LibvirtProbe, hugepages: Parameters<typeof domainGates>[1]): DoctorCheck[] {
  if (!l.ok) return [{ id: 'libvirt', status: 'FAIL', message: `libvirtd at ${l.uri} is not reachable: ${l.error}`, fix: 'systemctl start libvirtd; check uri: in /etc/vmtier/vmtier.yaml' }];
  const out: DoctorCheck[] = [{ id: 'libvirt', status: 'PASS', message: `libvirtd at ${l.uri} answers, ${l.vms.length} running domain${l.vms.length === 1 ? '' : 's'}` }];
  for (const vm of l.vms) {
    let reasons: string[];
    try {
      reasons = domainGates(parseDomainXml(vm.xml), hugepages, vm.mode).map((g) => g.cells === null ? g.reason : `guest node${g.cells.length > 1 ? 's' : ''} ${g.cells.join(',')}: ${g.reason}`);
    } catch (e) {
      reasons = [`its domain XML cannot be read: ${(e as Error).message}`];
    }
    out.push(reasons.length === 0
      ? { id: `vm:${vm.name}`, status: 'PASS', message: `${vm.name} (${vm.uuid}) can be tiered` }
      : { id: `vm:${vm.name}`, status: 'WARN', message: `${vm.name} (${vm.uuid}) will not be tiered: ${reasons.join('; ')}` });
  }
  return out;
}

export function runDoctor(opts: DoctorOptions = {}): DoctorReport {
  const sysRoot = opts.sysRoot ?? '/sys';
  const procRoot = opts.procRoot ?? '/proc';
  const o = { ...opts, sysRoot, procRoot, bootRoot: opts.bootRoot ?? '/boot', kmodDevice: opts.kmodDevice ?? '/dev/vmtier_idle', runDir: opts.runDir ?? '/run/vmtier' };
  const checks: DoctorCheck[] = [];
  const kmod = checkKmod(o);
  checks.push(kmod.check);
  const damon = checkDamon(o);
  checks.push(...damon.checks);
  checks.push(kmod.usable
    ? { id: 'tracker', status: 'PASS', message: "tracker 'auto' uses kmod (vmtier_idle)" }
    : damon.usable
      ? { id: 'tracker', status: 'PASS', message: "tracker 'auto' uses damon (vaddr)" }
      : { id: 'tracker', status: 'FAIL', message: 'no tracker can run: neither the vmtier_idle module nor DAMON vaddr is usable', fix: 'modprobe vmtier_idle' });
  let topo: HostTopology | null = null;
  try {
    topo = readHostTopology({ sysRoot, procRoot, tierOverrides: opts.tierOverrides });
  } catch (e) {
    checks.push({ id: 'tiers', status: 'FAIL', message: `cannot read the host's NUMA nodes: ${(e as Error).message}` });
  }
  if (topo) checks.push(checkTiers(topo), ...checkKernelTiering(topo));
  checks.push(checkThp(sysRoot), checkCapabilities(procRoot));
  if (opts.libvirt) {
    const hugepages = { slowNodes: topo ? nodesOfClass(topo, 'slow') : [], pools: readHugepagePools(sysRoot), defaultBytes: defaultHugepageBytes(procRoot) };
    checks.push(...checkVms(opts.libvirt, hugepages));
  }
  const summary = {
    pass: checks.filter((c) => c.status === 'PASS').length,
    warn: checks.filter((c) => c.status === 'WARN').length,
    fail: checks.filter((c) => c.status === 'FAIL').length,
  };
  return { checks, summary, exitCode: summary.fail > 0 ? 2 : summary.warn > 0 ? 1 : 0 };
}

/** One line per check ("PASS  id  message"), the fix of a WARN/FAIL indented below, then the counts. */
export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  for (const c of r.checks) {
    lines.push(`${c.status.padEnd(4)}  ${c.id.padEnd(16)} ${c.message}`);
    if (c.fix && c.status !== 'PASS') lines.push(`${' '.repeat(23)}fix: ${c.fix}`);
  }
  lines.push(`${r.summary.pass} passed, ${r.summary.warn} warnings, ${r.summary.fail} failed`);
  return lines.join('\n');
}
