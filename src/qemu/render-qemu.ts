/**
 * A guest layout as QEMU 7.2+ options: -machine/-m/-smp, one memory backend per guest node
 * (ids `ram-node<N>`, the names libvirt gives them too, so tools map ramblocks the same way for
 * both), -numa node/dist/hmat-lb/hmat-cache, and -device nvdimm. Only the memory topology:
 * the caller adds accelerator, firmware, kernel and devices.
 */
import type { GuestLayout, ResolvedBackend } from './profile.js';
import { qemuSize } from './size.js';
import { formatList } from '../host/lists.js';

export const QEMU_BINARY = 'qemu-system-x86_64';

/** QEMU option values escape a comma by doubling it. */
function optValue(v: string): string {
  return v.replace(/,/g, ',,');
}


export function backendObject(id: string, sizeBytes: number, b: ResolvedBackend): string {
  const kind = b.kind === 'ram' ? 'memory-backend-ram' : b.kind === 'memfd' ? 'memory-backend-memfd' : 'memory-backend-file';
  const props = [kind, `id=${id}`, `size=${qemuSize(sizeBytes)}`];
  if (b.path !== null) props.push(`mem-path=${optValue(b.path)}`);
  if (b.share) props.push('share=on');
  if (b.kind === 'memfd' && b.hugepageBytes !== null) props.push('hugetlb=on', `hugetlbsize=${qemuSize(b.hugepageBytes)}`);
  if (b.alignExplicit && b.kind !== 'ram' && b.kind !== 'memfd') props.push(`align=${qemuSize(b.alignBytes)}`);
  if (b.pmem) props.push('pmem=on');
  if (b.prealloc) props.push('prealloc=on');
  if (b.hostNodes.length) {
    // QEMU's list syntax: one host-nodes= per run ("0-1", "3").
    for (const r of formatList(b.hostNodes).split(',')) props.push(`host-nodes=${r}`);
    props.push(`policy=${b.policy ?? 'bind'}`);
  }
  return props.join(',');
}

function cpuList(c: { start: number; end: number }): string {
  return c.end - c.start === 1 ? String(c.start) : `${c.start}-${c.end - 1}`;
}

/** The argv (without the binary) that gives a guest this layout. */
export function renderQemuArgs(layout: GuestLayout): string[] {
  const args: string[] = [];
  const machine = [layout.machine];
  if (layout.nvdimm) machine.push('nvdimm=on');
  if (layout.hmat) machine.push('hmat=on');
  args.push('-machine', machine.join(','));
  const mem = [qemuSize(layout.memoryBytes)];
  if (layout.slots !== null && layout.maxMemoryBytes !== null) mem.push(`slots=${layout.slots}`, `maxmem=${qemuSize(layout.maxMemoryBytes)}`);
  args.push('-m', mem.join(','));
  args.push('-smp', String(layout.vcpus));
  for (const n of layout.nodes) {
    const id = `ram-node${n.node}`;
    args.push('-object', backendObject(id, n.sizeBytes, n.backend));
    const numa = ['node', `nodeid=${n.node}`];
    if (n.cpus) numa.push(`cpus=${cpuList(n.cpus)}`);
    numa.push(`memdev=${id}`);
    if (layout.hmat) numa.push(`initiator=${n.cpus ? n.node : (n.hmat?.initiator ?? 0)}`);
    args.push('-numa', numa.join(','));
  }
  for (const d of layout.distances) args.push('-numa', `dist,src=${d.src},dst=${d.dst},val=${d.value}`);
  if (layout.hmat) {
    for (const n of layout.nodes) {
      if (!n.hmat) continue;
      const base = `hmat-lb,initiator=${n.hmat.initiator},target=${n.node},hierarchy=memory`;
      args.push('-numa', `${base},data-type=access-latency,latency=${n.hmat.latencyNs}`);
      args.push('-numa', `${base},data-type=access-bandwidth,bandwidth=${qemuSize(n.hmat.bandwidthBytesPerSec)}`);
    }
    for (const n of layout.nodes) {
      const c = n.hmat?.cache;
      if (!c) continue;
      args.push('-numa', `hmat-cache,node-id=${n.node},size=${qemuSize(c.sizeBytes)},level=${c.level},associativity=${c.associativity},policy=${c.policy},line=${c.lineBytes}`);
    }
  }
  for (const d of layout.nvdimms) {
    args.push('-object', backendObject(`mem${d.id}`, d.sizeBytes, d.backend));
    args.push('-device', `nvdimm,id=${d.id},memdev=mem${d.id},label-size=${qemuSize(d.labelSizeBytes)},node=${d.node}`);
  }
  return args;
}

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** POSIX shell quoting: safe words bare, everything else in single quotes. */
export function shellQuote(word: string): string {
  if (word !== '' && SAFE_WORD.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** One line for a shell: the binary and the argv, each word quoted as needed. */
export function renderQemuCommandLine(args: readonly string[], binary = QEMU_BINARY): string {
  return [binary, ...args].map(shellQuote).join(' ');
}
