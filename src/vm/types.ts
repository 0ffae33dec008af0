/**
 * The domain model of a running VM as vmtier sees it. Produced by src/vm from libvirt's
 * domain XML and the QEMU monitor; consumed by the API, the CLI and the daemon.
 */
import type { HvaRange } from '../units.js';

export type DomainState = 'running' | 'paused' | 'shutoff' | 'crashed' | 'pmsuspended' | 'blocked' | 'shutdown' | 'nostate';

export interface DomainSummary {
  name: string;
  uuid: string;
  /** libvirt domain id; -1 when not running. */
  id: number;
  state: DomainState;
}

export type BackingKind = 'memfd' | 'file' | 'hugetlbfs' | 'anonymous' | 'devdax';

export interface GuestNodeBacking {
  kind: BackingKind;
  /** Path of the backing file or device; null for anonymous and memfd. */
  path: string | null;
  /** QEMU memory backend / ramblock id, e.g. "ram-node0". */
  id: string;
  /** false where move_pages cannot move the pages (devdax, ...). */
  migratable: boolean;
  /** Why not migratable, when it is not. */
  reason?: string;
}

/**
 * A memory device (libvirt <memory model='dimm|nvdimm|...'>) plugged into a guest node. Its
 * RAM is a ramblock of its own ("mem" + libvirt alias), apart from the cell's memory, and may
 * have another backing (an NVDIMM on a file or /dev/dax).
 */
export interface GuestMemoryDevice {
  model: string;
  sizeBytes: number;
  backing: GuestNodeBacking;
  hva: HvaRange[];
}

export interface GuestNode {
  node: number;
  /** Guest cpulist ("0-1") or null for a CPU-less node. */
  cpus: string | null;
  sizeBytes: number;
  backing: GuestNodeBacking;
  /** Host virtual address ranges of this node's RAM inside the QEMU process, sorted, half-open. */
  hva: HvaRange[];
  /** Memory devices plugged into this node; absent when there are none. Not part of `hva`. */
  devices?: GuestMemoryDevice[];
}

/** Every guest NUMA node of one running domain mapped to host virtual addresses. */
export interface GuestNodeMap {
  domain: { name: string; uuid: string; pid: number };
  nodes: GuestNode[];
}

/** Where the resident pages of one guest node sit, by host NUMA node. */
export interface GuestNodePlacement {
  node: number;
  /** host node id -> resident pages on it (4 KiB units). */
  pagesByHostNode: Record<string, number>;
  notPresentPages: number;
  /** Pages whose query failed with another error, by errno name. */
  errors: Record<string, number>;
  totalPages: number;
}

export interface Placement {
  domain: { name: string; uuid: string; pid: number };
  nodes: GuestNodePlacement[];
}
