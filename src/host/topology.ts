/**
 * The host's memory as vmtier needs it: NUMA nodes (CPUs, memory, distances), the kernel's
 * memory tiers, dax devices, and whether the kernel itself tiers memory. Everything is read
 * from sysfs/procfs under a configurable root so tests can use a fixture tree of a tiered
 * host (this machine has one node). Only reads; never writes a kernel knob.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { VmtierError } from '../errors.js';
import { formatList, parseList } from './lists.js';

export type TierClass = 'top' | 'slow';

export interface NodeTier {
  /** N of the kernel's memory_tierN holding this node (lower = faster); null when the kernel has none. */
  kernelTier: number | null;
  class: TierClass;
  /** What decided `class`: the kernel's tiers, CPU-less-ness (fallback), or a config override (last word). */
  source: 'kernel' | 'cpuless' | 'config';
}

export interface HostNode {
  node: number;
  /** cpulist ("0-1"), null for a CPU-less node. */
  cpus: string | null;
  memTotalBytes: number;
  memFreeBytes: number;
  /** SLIT distance from this node to each online node, keyed by node id. */
  distances: Record<string, number>;
  tier: NodeTier;
}

export interface MemoryTier {
  /** N of memory_tierN. */
  tier: number;
  nodes: number[];
  class: TierClass;
}

export interface DaxDevice {
  device: string;
  /** devdax: a character device (not migratable); system-ram: onlined as NUMA memory by kmem. */
  mode: 'devdax' | 'system-ram' | 'unbound';
  /** The node whose memory it becomes with kmem (target_node); null when unknown. */
  targetNode: number | null;
  sizeBytes: number;
}

export interface KernelTiering {
  /** /proc/sys/kernel/numa_balancing: 0 off, 1 NUMA balancing, 2 memory tiering, 3 both; null if absent. */
  numaBalancing: { value: number; mode: 'off' | 'normal' | 'tiering' | 'normal+tiering' } | null;
  /** /sys/kernel/mm/numa/demotion_enabled; null if absent. */
  demotionEnabled: boolean | null;
  /** kernel.numa_balancing_promote_rate_limit_MBps; null if absent. */
  promoteRateLimitMBps: number | null;
}

export interface HostTopology {
  nodes: HostNode[];
  tiers: MemoryTier[];
  dax: DaxDevice[];
  kernel: KernelTiering;
  /** Ways the kernel may fight vmtier over the same pages. */
  warnings: string[];
}

export interface HostReadOptions {
  /** Root of sysfs (default /sys). */
  sysRoot?: string;
  /** Root of procfs (default /proc). */
  procRoot?: string;
  /** Per-node class overrides from configuration, applied last. */
  tierOverrides?: Record<string, TierClass>;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new VmtierError('KERNEL_ERROR', `cannot read ${path}: ${(e as Error).message}`, { path });
  }
}

function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

function numbered(entries: string[], prefix: string): number[] {
  const re = new RegExp(`^${prefix}(\\d+)$`);
  return entries.flatMap((e) => {
    const m = re.exec(e);
    return m ? [Number(m[1])] : [];
  }).sort((a, b) => a - b);
}

/** "Node 0 MemTotal:  5466316 kB" lines of a node's meminfo -> bytes by field. */
export function parseNodeMeminfo(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^Node\s+\d+\s+(\w+):\s+(\d+)(?:\s+kB)?\s*$/.exec(line);
    if (m) out[m[1]] = Number(m[2]) * (line.trimEnd().endsWith('kB') ? 1024 : 1);
  }
  return out;
}

function readKernelTiering(sysRoot: string, procRoot: string): KernelTiering {
  const nb = readText(join(procRoot, 'sys/kernel/numa_balancing'));
  let numaBalancing: KernelTiering['numaBalancing'] = null;
  if (nb !== null && /^\d+$/.test(nb.trim())) {
    const value = Number(nb.trim());
    const mode = value === 0 ? 'off' : value === 1 ? 'normal' : value === 2 ? 'tiering' : 'normal+tiering';
    numaBalancing = { value, mode };
  }
  const de = readText(join(sysRoot, 'kernel/mm/numa/demotion_enabled'));
  const demotionEnabled = de === null ? null : /^(true|1|y)/i.test(de.trim());
  const rl = readText(join(procRoot, 'sys/kernel/numa_balancing_promote_rate_limit_MBps'));
  const promoteRateLimitMBps = rl !== null && /^\d+$/.test(rl.trim()) ? Number(rl.trim()) : null;
  return { numaBalancing, demotionEnabled, promoteRateLimitMBps };
}

function readDax(sysRoot: string): DaxDevice[] {
  const base = join(sysRoot, 'bus/dax/devices');
  return listDir(base)
    .filter((d) => /^dax\d+\.\d+$/.test(d))
    .sort()
    .map((device) => {
      const dir = join(base, device);
      let driver: string | null = null;
      try {
        driver = basename(readlinkSync(join(dir, 'driver')));
      } catch {
        driver = null;
      }
      // kmem onlines the device as system RAM of target_node; device_dax keeps it a char device.
      const mode: DaxDevice['mode'] = driver === 'kmem' ? 'system-ram' : driver === 'device_dax' ? 'devdax' : 'unbound';
      const tn = readText(join(dir, 'target_node'))?.trim();
      const size = readText(join(dir, 'size'))?.trim();
      return {
        device,
        mode,
        targetNode: tn !== undefined && /^-?\d+$/.test(tn) && Number(tn) >= 0 ? Number(tn) : null,
        sizeBytes: size !== undefined && /^\d+$/.test(size) ? Number(size) : 0,
      };
    });
}

/** Reads the host's nodes, tiers, dax devices and kernel tiering state. */
export function readHostTopology(opts: HostReadOptions = {}): HostTopology {
  const sysRoot = opts.sysRoot ?? '/sys';
  const procRoot = opts.procRoot ?? '/proc';
  const nodeBase = join(sysRoot, 'devices/system/node');
  const onlineText = readText(join(nodeBase, 'online'));
  const nodeIds = onlineText !== null ? parseList(onlineText) : numbered(listDir(nodeBase), 'node');
  if (nodeIds.length === 0) {
    throw new VmtierError('UNSUPPORTED', `no NUMA nodes found under ${nodeBase}`, { path: nodeBase });
  }

  const tierBase = join(sysRoot, 'devices/virtual/memory_tiering');
  const tierIds = numbered(listDir(tierBase), 'memory_tier');
  const kernelTierOf = new Map<number, number>();
  const tierNodes = new Map<number, number[]>();
  for (const t of tierIds) {
    const nl = readText(join(tierBase, `memory_tier${t}`, 'nodelist'));
    const nodes = nl === null ? [] : parseList(nl);
    tierNodes.set(t, nodes);
    for (const n of nodes) if (!kernelTierOf.has(n)) kernelTierOf.set(n, t);
  }
  // The fastest tier that holds memory is the top tier; every other tier is slow.
  const populated = tierIds.filter((t) => (tierNodes.get(t) ?? []).length > 0);
  const topTier = populated.length > 0 ? populated[0] : null;

  const nodes: HostNode[] = nodeIds.map((node) => {
    const dir = join(nodeBase, `node${node}`);
    const cpuText = readText(join(dir, 'cpulist'));
    const cpuIds = cpuText === null ? [] : parseList(cpuText);
    const mem = parseNodeMeminfo(readText(join(dir, 'meminfo')) ?? '');
    const distText = (readText(join(dir, 'distance')) ?? '').trim();
    const distVals = distText === '' ? [] : distText.split(/\s+/).map(Number);
    // distance lists one value per online node, in node order.
    const distances: Record<string, number> = {};
    nodeIds.forEach((other, i) => {
      if (i < distVals.length && Number.isFinite(distVals[i])) distances[String(other)] = distVals[i];
    });
    const kernelTier = kernelTierOf.get(node) ?? null;
    let tier: NodeTier;
    if (kernelTier !== null && topTier !== null) {
      tier = { kernelTier, class: kernelTier === topTier ? 'top' : 'slow', source: 'kernel' };
    } else {
      tier = { kernelTier, class: cpuIds.length > 0 ? 'top' : 'slow', source: 'cpuless' };
    }
    const override = opts.tierOverrides?.[String(node)];
    if (override) tier = { kernelTier, class: override, source: 'config' };
    return {
      node,
      cpus: cpuIds.length > 0 ? formatList(cpuIds) : null,
      memTotalBytes: mem.MemTotal ?? 0,
      memFreeBytes: mem.MemFree ?? 0,
      distances,
      tier,
    };
  });

  const tiers: MemoryTier[] = tierIds.map((t) => ({ tier: t, nodes: tierNodes.get(t) ?? [], class: t === topTier ? 'top' : 'slow' }));
  const kernel = readKernelTiering(sysRoot, procRoot);
  return { nodes, tiers, dax: readDax(sysRoot), kernel, warnings: kernelWarnings(kernel, nodes) };
}

function kernelWarnings(k: KernelTiering, nodes: HostNode[]): string[] {
  const w: string[] = [];
  const hasSlow = nodes.some((n) => n.tier.class === 'slow');
  if (k.numaBalancing && (k.numaBalancing.value & 2) !== 0) {
    w.push(`kernel NUMA balancing is in memory-tiering mode (numa_balancing=${k.numaBalancing.value}): the kernel also promotes pages that vmtier manages`);
  }
  if (k.demotionEnabled && hasSlow) {
    w.push('kernel demotion is enabled (demotion_enabled=true): reclaim also demotes pages that vmtier manages');
  }
  return w;
}

/** Nodes of a class, e.g. the DRAM nodes ("top"). */
export function nodesOfClass(t: HostTopology, cls: TierClass): number[] {
  return t.nodes.filter((n) => n.tier.class === cls).map((n) => n.node);
}

