/**
 * Safety gates: guests (or guest cells) whose memory vmtier must never move, each with the
 * reason reported to the operator. Decided from the domain XML, the host's hugetlb pools and
 * the VM's policy; pure (the caller reads the host). The engine marks gated ranges not
 * migratable (src/vm/numa-map.ts), `vmtier doctor` lists them.
 */
import type { HugepagePool } from '../host/hugepages.js';
import { parseList } from '../host/lists.js';
import type { DomainConfig } from './domain-xml.js';

export type GateCode = 'ENCRYPTED_MEMORY' | 'LOCKED_MEMORY' | 'VFIO_PINNED' | 'GIGANTIC_HUGEPAGES' | 'OPERATOR_OPT_OUT';

export interface GateFinding {
  code: GateCode;
  reason: string;
  /** Guest cells the gate applies to; null = the whole VM. */
  cells: number[] | null;
}

export interface HostHugepages {
  /** Host nodes pages would be demoted to. */
  slowNodes: number[];
  pools: HugepagePool[];
  /** The kernel's default huge page size (/proc/meminfo Hugepagesize), used by <hugepages/> without a size. */
  defaultBytes: number | null;
}

const GIB = 2 ** 30;

/** Gates that follow from the domain XML alone (no host state). */
export function configGates(config: DomainConfig): GateFinding[] {
  const out: GateFinding[] = [];
  if (config.launchSecurity !== null) {
    out.push({
      code: 'ENCRYPTED_MEMORY',
      cells: null,
      reason: `memory encrypted by <launchSecurity type='${config.launchSecurity}'>: the host cannot read its accessed state, and its pages are pinned`,
    });
  }
  if (config.memoryBacking.locked) {
    out.push({ code: 'LOCKED_MEMORY', cells: null, reason: '<memoryBacking><locked/>: the operator asked for guest memory to stay where it is (mlocked)' });
  }
  if (config.pciPassthrough.length > 0) {
    out.push({
      code: 'VFIO_PINNED',
      cells: null,
      reason: `pinned for VFIO device assignment (${config.pciPassthrough.join(', ')}): move_pages cannot migrate pinned pages`,
    });
  }
  return out;
}

/** Guest cells backed by 1 GiB (or larger) hugetlb pages; null = every cell, [] = none. */
export function giganticCells(config: DomainConfig, defaultBytes: number | null): number[] | null {
  const specs = config.memoryBacking.hugepages;
  if (specs === null) return [];
  // <hugepages/> with no <page>: the default size for every cell.
  const pages = specs.length === 0 ? [{ sizeBytes: null, nodeset: null }] : specs;
  const cells = new Set<number>();
  for (const p of pages) {
    const size = p.sizeBytes ?? defaultBytes;
    if (size === null || size < GIB) continue;
    if (p.nodeset === null) return null;
    for (const c of parseList(p.nodeset)) cells.add(c);
  }
  return [...cells].sort((a, b) => a - b);
}

/**
 * 1 GiB hugetlb pages move only into a free gigantic page on the target node (the kernel
 * cannot assemble one at run time): without one on any slow node, nothing can be demoted.
 */
export function giganticGate(config: DomainConfig, host: HostHugepages): GateFinding | null {
  const cells = giganticCells(config, host.defaultBytes);
  if (cells !== null && cells.length === 0) return null;
  const free = host.pools.filter((p) => p.sizeBytes >= GIB && host.slowNodes.includes(p.node) && p.free > 0);
  if (free.length > 0) return null;
  const slow = host.slowNodes.length === 0 ? 'no slow node' : `slow node${host.slowNodes.length > 1 ? 's' : ''} ${host.slowNodes.join(',')}`;
  return {
    code: 'GIGANTIC_HUGEPAGES',
    cells,
    reason: `backed by 1 GiB hugetlb pages and ${slow} has no free 1 GiB page to move them into (echo N > /sys/devices/system/node/nodeX/hugepages/hugepages-1048576kB/nr_hugepages)`,
  };
}

export function policyGate(mode: 'off' | 'observe' | 'tier' | null): GateFinding | null {
  return mode === 'off' ? { code: 'OPERATOR_OPT_OUT', cells: null, reason: "the VM's policy has mode: off (operator opt-out)" } : null;
}

/** Every gate that applies to the domain. */
export function domainGates(config: DomainConfig, host: HostHugepages | null, mode: 'off' | 'observe' | 'tier' | null = null): GateFinding[] {
  const out = configGates(config);
  const g = host ? giganticGate(config, host) : null;
  if (g) out.push(g);
  const p = policyGate(mode);
  if (p) out.push(p);
  return out;
}

/** The first gate that forbids moving guest cell `cell`'s memory, if any. */
export function gateForCell(findings: readonly GateFinding[], cell: number): GateFinding | undefined {
  return findings.find((f) => f.cells === null || f.cells.includes(cell));
}
