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
  const nodes = nodeSpecs(topology);
  const args: string[] = [];
  const nvdimms: LabNvdimm[] = [];
  nodes.forEach((n, i) => {
    if (n.kmemMiB) nvdimms.push({ id: `nvdimm${nvdimms.length}`, path: '', sizeBytes: n.kmemMiB * MiB, node: i, role: 'kmem' });
  });
  nvdimms.push({ id: `nvdimm${nvdimms.length}`, path: '', sizeBytes: DEVDAX_SPARE_MiB * MiB, node: 1, role: 'devdax' });
  for (const d of nvdimms) d.path = join(runDir, `${d.id}.img`);

  const ramMiB = nodes.reduce((s, n) => s + n.ramMiB, 0);
  const nvMiB = nvdimms.reduce((s, d) => s + d.sizeBytes / MiB, 0);
  const maxMiB = Math.ceil((ramMiB + nvMiB) / 1024 + 1) * 1024;
  args.push('-machine', 'pc,nvdimm=on,hmat=on', '-m', `${ramMiB}M,slots=${nvdimms.length},maxmem=${maxMiB}M`, '-smp', '2');
  nodes.forEach((n, i) => {
    args.push('-object', `memory-backend-ram,id=m${i},size=${n.ramMiB}M`);
    args.push('-numa', `node,nodeid=${i},${n.cpus ? `cpus=${n.cpus},` : ''}memdev=m${i},initiator=0`);
  });
  nodes.forEach((a, i) => nodes.forEach((b, j) => {
    if (i < j) args.push('-numa', `dist,src=${i},dst=${j},val=${Math.max(a.distance, b.distance)}`);
  }));
  nodes.forEach((n, i) => {
    args.push('-numa', `hmat-lb,initiator=0,target=${i},hierarchy=memory,data-type=access-latency,latency=${n.latencyNs}`);
    args.push('-numa', `hmat-lb,initiator=0,target=${i},hierarchy=memory,data-type=access-bandwidth,bandwidth=${n.bandwidth}`);
  });
  for (const d of nvdimms) {
    args.push('-object', `memory-backend-file,id=${d.id}-mem,share=on,mem-path=${d.path},size=${d.sizeBytes / MiB}M,align=2M`);
    args.push('-device', `nvdimm,id=${d.id},memdev=${d.id}-mem,label-size=128K,node=${d.node}`);
  }
  return { topology, args, nvdimms, nodes: nodes.map((_, i) => i) };
}
