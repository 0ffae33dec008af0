/**
 * A guest layout as libvirt domain XML (libvirt 6.6+ for <interconnects>): the fragments a control
 * plane merges into its own domain (<cpu><numa>, <memoryBacking>, <numatune>, nvdimm <memory>
 * devices, <memory>/<maxMemory>) and a whole minimal domain for testing. libvirt has one memory
 * source per domain and no per-node backing path, so what it cannot say is returned as warnings
 * instead of being dropped silently.
 */
import { LOCAL_DISTANCE, type GuestLayout, type ResolvedNode } from './profile.js';
import { formatList } from '../host/lists.js';

export interface LibvirtFragments {
  /** <memory> (boot RAM + NVDIMMs) and, with NVDIMMs, <maxMemory>. */
  memory: string;
  memoryBacking: string | null;
  numatune: string | null;
  cpu: string;
  /** nvdimm <memory model='nvdimm'> devices, one per element. */
  memoryDevices: string[];
}

export interface LibvirtRender {
  fragments: LibvirtFragments;
  /** What libvirt cannot express of this profile (per-node paths, mixed backends). */
  warnings: string[];
}

export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}

const kib = (bytes: number): number => Math.floor(bytes / 1024);

function cpuList(c: { start: number; end: number }): string {
  return c.end - c.start === 1 ? String(c.start) : `${c.start}-${c.end - 1}`;
}


function distance(layout: GuestLayout, a: number, b: number): number {
  if (a === b) return LOCAL_DISTANCE;
  const [src, dst] = a < b ? [a, b] : [b, a];
  return layout.distances.find((d) => d.src === src && d.dst === dst)?.value ?? LOCAL_DISTANCE;
}

const SOURCE_OF: Record<string, string> = { ram: 'anonymous', memfd: 'memfd', file: 'file', hugetlbfs: 'file', devdax: 'file' };

export function renderLibvirt(layout: GuestLayout): LibvirtRender {
  const warnings: string[] = [];
  const nodes = layout.nodes;

  // One memory source per domain: the DRAM node's decides; anything else is reported.
  const dram = nodes[0].backend;
  const source = SOURCE_OF[dram.kind];
  for (const n of nodes) {
    const b = n.backend;
    if (SOURCE_OF[b.kind] !== source) {
      warnings.push(`${b.field}.type: libvirt has one memory source per domain (${source}); guest node ${n.node} gets ${source}, not ${b.kind}`);
    }
    if (b.kind === 'devdax') {
      warnings.push(`${b.field}.path: libvirt cannot back a NUMA cell with ${b.path}; give the tier as an nvdimm (tiers[].nvdimm) with that path instead`);
    } else if ((b.kind === 'file' || b.kind === 'hugetlbfs') && b.path !== null) {
      warnings.push(`${b.field}.path: libvirt puts file-backed guest RAM under qemu.conf's ${b.kind === 'hugetlbfs' ? 'hugetlbfs_mount' : 'memory_backing_dir'}, not ${b.path}`);
    }
  }
  const prealloc = nodes.filter((n) => n.backend.prealloc);
  if (prealloc.length && prealloc.length !== nodes.length) {
    warnings.push('prealloc: libvirt preallocates all guest RAM or none; rendered for all');
  }

  const hugeByNode = new Map<number, number[]>();
  for (const n of nodes) {
    if (n.backend.hugepageBytes === null) continue;
    hugeByNode.set(n.backend.hugepageBytes, [...(hugeByNode.get(n.backend.hugepageBytes) ?? []), n.node]);
  }
  const backingLines: string[] = [];
  if (hugeByNode.size) {
    backingLines.push('  <hugepages>');
    for (const [size, ids] of hugeByNode) backingLines.push(`    <page size='${kib(size)}' unit='KiB' nodeset='${formatList(ids)}'/>`);
    backingLines.push('  </hugepages>');
  }
  if (source !== 'anonymous' || hugeByNode.size === 0) backingLines.push(`  <source type='${source}'/>`);
  if (prealloc.length) backingLines.push(`  <allocation mode='immediate'/>`);
  const memoryBacking = backingLines.length ? ['<memoryBacking>', ...backingLines, '</memoryBacking>'].join('\n') : null;

  const modeOf = { bind: 'strict', preferred: 'preferred', interleave: 'interleave' } as const;
  const memnodes = nodes
    .filter((n) => n.backend.hostNodes.length)
    .map((n) => `  <memnode cellid='${n.node}' mode='${modeOf[n.backend.policy ?? 'bind']}' nodeset='${formatList(n.backend.hostNodes)}'/>`);
  const numatune = memnodes.length ? ['<numatune>', ...memnodes, '</numatune>'].join('\n') : null;

  const cells = nodes.map((n) => cell(layout, n));
  const inter: string[] = [];
  if (layout.hmat) {
    for (const n of nodes) {
      if (!n.hmat) continue;
      inter.push(`      <latency initiator='${n.hmat.initiator}' target='${n.node}' type='access' value='${n.hmat.latencyNs}'/>`);
      inter.push(`      <bandwidth initiator='${n.hmat.initiator}' target='${n.node}' type='access' value='${kib(n.hmat.bandwidthBytesPerSec)}' unit='KiB'/>`);
    }
  }
  const cpu = [
    '<cpu>',
    '  <numa>',
    ...cells,
    ...(inter.length ? ['    <interconnects>', ...inter, '    </interconnects>'] : []),
    '  </numa>',
    '</cpu>',
  ].join('\n');

  const memoryDevices = layout.nvdimms.map((d) =>
      [
        `<memory model='nvdimm'${d.backend.share ? " access='shared'" : ''}>`,
        '  <source>',
        `    <path>${xmlEscape(d.backend.path ?? '')}</path>`,
        ...(d.backend.alignExplicit ? [`    <alignsize unit='KiB'>${kib(d.backend.alignBytes)}</alignsize>`] : []),
        ...(d.backend.pmem ? ['    <pmem/>'] : []),
        '  </source>',
        '  <target>',
        `    <size unit='KiB'>${kib(d.sizeBytes)}</size>`,
        `    <node>${d.node}</node>`,
        `    <label><size unit='KiB'>${kib(d.labelSizeBytes)}</size></label>`,
        '  </target>',
        '</memory>',
      ].join('\n'),
  );

  const nvdimmBytes = layout.nvdimms.reduce((a, d) => a + d.sizeBytes, 0);
  const memory = [
    ...(layout.maxMemoryBytes !== null ? [`<maxMemory slots='${layout.slots}' unit='KiB'>${kib(layout.maxMemoryBytes)}</maxMemory>`] : []),
    `<memory unit='KiB'>${kib(layout.memoryBytes + nvdimmBytes)}</memory>`,
  ].join('\n');

  return { fragments: { memory, memoryBacking, numatune, cpu, memoryDevices }, warnings };
}

function cell(layout: GuestLayout, n: ResolvedNode): string {
  const attrs = [`id='${n.node}'`];
  if (n.cpus) attrs.push(`cpus='${cpuList(n.cpus)}'`);
  attrs.push(`memory='${kib(n.sizeBytes)}'`, `unit='KiB'`);
  if (n.backend.share) attrs.push(`memAccess='shared'`);
  const inner: string[] = [];
  if (layout.nodes.length > 1) {
    inner.push('      <distances>');
    for (const o of layout.nodes) inner.push(`        <sibling id='${o.node}' value='${distance(layout, n.node, o.node)}'/>`);
    inner.push('      </distances>');
  }
  const c = layout.hmat ? n.hmat?.cache : null;
  if (c) {
    const policy = c.policy === 'write-back' ? 'writeback' : c.policy === 'write-through' ? 'writethrough' : 'none';
    inner.push(`      <cache level='${c.level}' associativity='${c.associativity}' policy='${policy}'>`);
    inner.push(`        <size value='${kib(c.sizeBytes)}' unit='KiB'/>`);
    inner.push(`        <line value='${c.lineBytes}' unit='B'/>`);
    inner.push('      </cache>');
  }
  return inner.length ? [`    <cell ${attrs.join(' ')}>`, ...inner, '    </cell>'].join('\n') : `    <cell ${attrs.join(' ')}/>`;
}

function indent(xml: string, by: string): string {
  return xml.split('\n').map((l) => by + l).join('\n');
}

/**
 * A whole domain with only this memory topology: no disks, no network, no graphics; the firmware
 * finds nothing to boot. For checking that libvirt accepts and keeps the topology.
 */
export function renderLibvirtDomain(layout: GuestLayout, opts: { name: string; type?: 'qemu' | 'kvm'; emulator?: string }): string {
  const { fragments: f } = renderLibvirt(layout);
  const parts = [
    `<name>${xmlEscape(opts.name)}</name>`,
    f.memory,
    ...(f.memoryBacking ? [f.memoryBacking] : []),
    `<vcpu placement='static'>${layout.vcpus}</vcpu>`,
    ...(f.numatune ? [f.numatune] : []),
    `<os>\n  <type arch='x86_64' machine='${xmlEscape(layout.machine)}'>hvm</type>\n</os>`,
    // HMAT and SRAT are ACPI tables.
    '<features>\n  <acpi/>\n</features>',
    f.cpu,
    '<on_poweroff>destroy</on_poweroff>',
    '<on_reboot>destroy</on_reboot>',
    '<on_crash>destroy</on_crash>',
    [
      '<devices>',
      ...(opts.emulator ? [`  <emulator>${xmlEscape(opts.emulator)}</emulator>`] : []),
      ...f.memoryDevices.map((d) => indent(d, '  ')),
      "  <memballoon model='none'/>",
      '</devices>',
    ].join('\n'),
  ];
  return [`<domain type='${opts.type ?? 'qemu'}'>`, ...parts.map((p) => indent(p, '  ')), '</domain>', ''].join('\n');
}
