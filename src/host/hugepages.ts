/**
 * Per-node hugetlb pools (<sys>/devices/system/node/nodeN/hugepages/hugepages-<size>kB), read
 * under a configurable sysfs root like the rest of src/host. Only reads.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { nodesOfClass, readHostTopology, type HostReadOptions } from './topology.js';

export interface HugepagePool {
  node: number;
  sizeBytes: number;
  total: number;
  free: number;
}

function readCount(path: string): number | null {
  try {
    const t = readFileSync(path, 'utf8').trim();
    return /^\d+$/.test(t) ? Number(t) : null;
  } catch {
    return null;
  }
}

/** Every node's hugetlb pools; [] when the kernel has no per-node hugepages directory. */
export function readHugepagePools(sysRoot = '/sys'): HugepagePool[] {
  const base = join(sysRoot, 'devices/system/node');
  const out: HugepagePool[] = [];
  let nodes: string[];
  try {
    nodes = readdirSync(base).filter((d) => /^node\d+$/.test(d));
  } catch {
    return out;
  }
  for (const nd of nodes) {
    let sizes: string[];
    try {
      sizes = readdirSync(join(base, nd, 'hugepages'));
    } catch {
      continue;
    }
    for (const sd of sizes) {
      const m = /^hugepages-(\d+)kB$/.exec(sd);
      if (!m) continue;
      const total = readCount(join(base, nd, 'hugepages', sd, 'nr_hugepages'));
      const free = readCount(join(base, nd, 'hugepages', sd, 'free_hugepages'));
      if (total === null || free === null) continue;
      out.push({ node: Number(nd.slice(4)), sizeBytes: Number(m[1]) * 1024, total, free });
    }
  }
  return out.sort((a, b) => a.node - b.node || a.sizeBytes - b.sizeBytes);
}

/** "Hugepagesize:    2048 kB" of /proc/meminfo, in bytes; null when absent. */
export function defaultHugepageBytes(procRoot = '/proc'): number | null {
  try {
    const m = /^Hugepagesize:\s+(\d+) kB/m.exec(readFileSync(join(procRoot, 'meminfo'), 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** What the 1 GiB hugetlb gate (src/vm/tiering-gates.ts) needs from the host. */
export function readHostHugepages(opts: HostReadOptions = {}): { slowNodes: number[]; pools: HugepagePool[]; defaultBytes: number | null } {
  let slowNodes: number[] = [];
  try {
    slowNodes = nodesOfClass(readHostTopology(opts), 'slow');
  } catch {
    // No NUMA information: no slow node to move gigantic pages into.
  }
  return { slowNodes, pools: readHugepagePools(opts.sysRoot), defaultBytes: defaultHugepageBytes(opts.procRoot) };
}
