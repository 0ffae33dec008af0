/**
 * The lab's emulated host topology → QEMU machine / memory / NUMA / HMAT arguments. This is the
 * ONE place that asks for them (boot arguments such as -kernel, -virtfs, -serial live in session.ts);
 * the figures themselves live in qemu-profiles/lab-<topology>.yaml, rendered through src/qemu.
 *
 * A slow tier is a CPU-less node made of a small plain RAM backend (without it the NVDIMM would
 * join node 0) plus an NVDIMM that the guest turns into devdax and onlines as system RAM (kmem).
 * HMAT figures put it in a lower memory tier; without HMAT all nodes share one tier.
 */
import { renderLabTopology } from '../src/qemu/lab.js';

/** 'gigantic': 'tiered' with a 4 GiB DRAM node, room for a boot-time 1 GiB hugetlb page (see its profile). */
export type LabTopologyName = 'tiered' | 'three-tier' | 'gigantic';
export const LAB_TOPOLOGIES: readonly LabTopologyName[] = ['tiered', 'three-tier', 'gigantic'];

/** One NVDIMM of the lab host: backed by a per-session file, onlined as kmem or kept as devdax. */
export interface LabNvdimm {
  id: string;
  path: string;
  sizeBytes: number;
  node: number;
  role: 'kmem' | 'devdax';
}

export interface LabMachine {
  topology: LabTopologyName;
  /** -machine, -m, -smp, -object, -numa, -device nvdimm arguments. */
  args: string[];
  /** The guest places each by size (kmem if at least 256 MiB), not by order: region numbers follow nodes. */
  nvdimms: LabNvdimm[];
  /** NUMA nodes the kernel must show once the tiers are set up. */
  nodes: number[];
}

/** QEMU arguments for the topology; NVDIMM backing files go into `runDir` (the session creates them). */
export function labMachine(topology: LabTopologyName, runDir: string): LabMachine {
  // Rendered from qemu-profiles/lab-<topology>.yaml through src/qemu: the profile is the one source of truth.
  const { args, layout } = renderLabTopology(`lab-${topology}`, { labDir: runDir });
  const nvdimms: LabNvdimm[] = layout.nvdimms.map((d) => ({ id: d.id, path: d.backend.path ?? '', sizeBytes: d.sizeBytes, node: d.node, role: d.guestUse }));
  return { topology, args, nvdimms, nodes: layout.nodes.map((n) => n.node) };
}
