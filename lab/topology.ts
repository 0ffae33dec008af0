/**
 * The lab's emulated host topology → QEMU machine / memory / NUMA / HMAT arguments. This is the
 * ONE place that knows them (boot arguments such as -kernel, -virtfs, -serial live in session.ts),
 * so that the topology can later be rendered from qemu-profiles/ through src/qemu.
 *
 * A slow tier is a CPU-less node made of a small plain RAM backend (without it the NVDIMM would
 * join node 0) plus an NVDIMM that the guest turns into devdax and onlines as system RAM (kmem).
 * HMAT figures put it in a lower memory tier; without HMAT all nodes share one tier.
 */
import { join } from 'node:path';
import { renderLabTopology } from '../src/qemu/lab.js';

export type LabTopologyName = 'tiered' | 'three-tier';
export const LAB_TOPOLOGIES: readonly LabTopologyName[] = ['tiered', 'three-tier'];

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

const MiB = 1024 * 1024;

interface NodeSpec {
  /** RAM in MiB given at boot (node 0: the DRAM; slow nodes: a small seed backend). */
  ramMiB: number;
  /** NVDIMM (MiB, 2 MiB aligned plus room for the label) onlined as kmem on this node. */
  kmemMiB?: number;
  cpus?: string;
  latencyNs: number;
  bandwidth: string;
  distance: number;
}

/** The small devdax-only NVDIMM on node 1 (kept devdax: move_pages on its mapping must fail per page). */
const DEVDAX_SPARE_MiB = 66;

function nodeSpecs(topology: LabTopologyName): NodeSpec[] {
  const dram: NodeSpec = { ramMiB: 2048, cpus: '0-1', latencyNs: 80, bandwidth: '20G', distance: 10 };
  switch (topology) {
    case 'tiered':
      // PMEM-like: ~3.75x DRAM latency, a quarter of its bandwidth.
      return [dram, { ramMiB: 32, kmemMiB: 1026, latencyNs: 300, bandwidth: '5G', distance: 28 }];
    case 'three-tier':
      // CXL-like (node 1) between DRAM and PMEM-like (node 2).
      return [
        dram,
        { ramMiB: 32, kmemMiB: 514, latencyNs: 170, bandwidth: '10G', distance: 20 },
        { ramMiB: 32, kmemMiB: 514, latencyNs: 300, bandwidth: '5G', distance: 28 },
      ];
  }
}

/** QEMU arguments for the topology; NVDIMM backing files go into `runDir` (the session creates them). */
export function labMachine(topology: LabTopologyName, runDir: string): LabMachine {
  // Rendered from qemu-profiles/lab-<topology>.yaml through src/qemu: the profile is the one source of truth.
  const { args, layout } = renderLabTopology(`lab-${topology}`, { labDir: runDir });
  const nvdimms: LabNvdimm[] = layout.nvdimms.map((d) => ({ id: d.id, path: d.backend.path ?? '', sizeBytes: d.sizeBytes, node: d.node, role: d.guestUse }));
  return { topology, args, nvdimms, nodes: layout.nodes.map((n) => n.node) };
}
