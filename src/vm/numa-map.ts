/**
 * Guest NUMA node → exact host virtual address ranges inside the QEMU process.
 *
 * libvirt backs guest cell N with a memory backend "ram-node<N>" (one ramblock); a domain
 * without <numa> has one block ("pc.ram" on x86 pc/q35). The HVA of a block comes from the
 * monitor: the HVA column of `info ramblock` when this QEMU prints it, else `info mtree -f`
 * (which GPA ranges map which block, at which offset) plus `gpa2hva` on each of those GPA
 * ranges. On the `pc` machine a block larger than the low-memory window appears as two GPA
 * ranges (below the PCI hole and above 4 GiB); both resolve into the same block, so the node
 * is still one contiguous HVA range. Every range is cross-checked against /proc/<pid>/maps.
 *
 * Inputs are injected (monitor, proc files) so the logic runs on captured text in unit tests.
 */
import { VmtierError } from '../errors.js';
import type { HvaRange } from '../units.js';
import { PAGE_SIZE } from '../units.js';
import type { DomainConfig } from './domain-xml.js';
import { classifyBacking, coveringMappings, parseMaps, type BackingContext } from './maps.js';
import { parseFlatView, parseGpa2hva, parseRamblocks, type FlatRange, type RamblockInfo } from './monitor-text.js';
import { readHostHugepages } from '../host/hugepages.js';
import { domainGates, gateForCell, type HostHugepages } from './tiering-gates.js';
import type { GuestMemoryDevice, GuestNode, GuestNodeBacking, GuestNodeMap } from './types.js';

export interface MonitorPort {
  /** Runs an HMP command and returns its text. */
  hmp(cmd: string): Promise<string>;
}

export interface ProcPort {
  maps(): string;
  mountinfo(): string;
  smaps(): string;
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** Which part of which ramblock holds a guest node. */
interface NodeSlice {
  block: RamblockInfo;
  offset: number;
  length: number;
}

function sliceNodes(config: DomainConfig, blocks: RamblockInfo[]): Map<number, NodeSlice> {
  const byName = new Map(blocks.map((b) => [b.name, b]));
  const out = new Map<number, NodeSlice>();
  const perNode = config.cells.map((c) => byName.get(`ram-node${c.id}`));
  if (perNode.every((b) => b !== undefined)) {
    config.cells.forEach((c, i) => out.set(c.id, { block: perNode[i]!, offset: 0, length: perNode[i]!.usedBytes }));
    return out;
  }
  // Without per-node backends (no <numa>, or an old libvirt using `-numa node,mem=`), all guest
  // RAM is one "pc.ram" block and QEMU lays the nodes out in it in node order.
  const main = byName.get('pc.ram') ?? (config.implicitNuma ? byName.get('ram-node0') : undefined);
  if (!main) {
    throw new VmtierError('MONITOR_ERROR', `no ramblock for the guest's memory (looked for ${config.cells.map((c) => `ram-node${c.id}`).join(', ')}, pc.ram); blocks: ${blocks.map((b) => b.name).join(', ')}`);
  }
  if (config.cells.length === 1) {
    out.set(config.cells[0]!.id, { block: main, offset: 0, length: main.usedBytes });
    return out;
  }
  let offset = 0;
  for (const c of config.cells) {
    out.set(c.id, { block: main, offset, length: c.memoryBytes });
    offset += c.memoryBytes;
  }
  if (offset > main.usedBytes) throw new VmtierError('HVA_MISMATCH', `cells need ${offset} bytes but ${main.name} holds ${main.usedBytes}`);
  return out;
}

/** Host address of each needed block, each answer checked against every GPA range of the block. */
async function blockBases(blocks: RamblockInfo[], monitor: MonitorPort): Promise<Map<string, number>> {
  const bases = new Map<string, number>();
  const need = blocks.filter((b) => b.hva === null);
  for (const b of blocks) if (b.hva !== null) bases.set(b.name, b.hva);
  if (need.length === 0) return bases;
  const flat = parseFlatView(await monitor.hmp('info mtree -f'));
  for (const b of need) {
    const pieces = flat.filter((r: FlatRange) => r.name === b.name && r.kind !== 'i/o');
    if (pieces.length === 0) {
      throw new VmtierError('MONITOR_ERROR', `ramblock ${b.name} is not mapped into the guest address space; its HVA cannot be resolved with this QEMU`);
    }
    let base: number | null = null;
    for (const p of pieces) {
      const ans = parseGpa2hva(await monitor.hmp(`gpa2hva ${hex(p.start)}`));
      if (ans.block !== b.name) {
        throw new VmtierError('HVA_MISMATCH', `gpa2hva ${hex(p.start)} names ${ans.block}, mtree says ${b.name}`);
      }
      const candidate = ans.hva - p.offset;
      if (base !== null && candidate !== base) {
        throw new VmtierError('HVA_MISMATCH', `${b.name}: GPA ${hex(p.start)} resolves to base ${hex(candidate)}, another range to ${hex(base)}`);
      }
      if (p.offset + (p.end - p.start) > b.usedBytes) {
        throw new VmtierError('HVA_MISMATCH', `${b.name}: mtree range ${hex(p.start)}-${hex(p.end)} at offset ${hex(p.offset)} exceeds the block (${hex(b.usedBytes)} bytes)`);
      }
      base = candidate;
    }
    bases.set(b.name, base!);
  }
  return bases;
}

export async function buildGuestNodeMap(args: {
  domain: { name: string; uuid: string; pid: number };
  config: DomainConfig;
  monitor: MonitorPort;
  proc: ProcPort;
  /**
   * The host's hugetlb pools and slow nodes, for the 1 GiB hugetlb gate; read from this host
   * (only when the domain uses huge pages) when not given.
   */
  hugepages?: HostHugepages;
}): Promise<GuestNodeMap> {
  const { config, monitor, proc } = args;
  const gates = domainGates(config, config.memoryBacking.hugepages === null ? null : args.hugepages ?? readHostHugepages());
  const blocks = parseRamblocks(await monitor.hmp('info ramblock'));
  const slices = sliceNodes(config, blocks);
  // libvirt names a memory device's backend "mem" + its alias (dimm0, nvdimm1, virtiomem0, ...).
  const byName = new Map(blocks.map((b) => [b.name, b]));
  const devices = config.memoryDevices.flatMap((d) => {
    const block = d.alias !== null ? byName.get(`mem${d.alias}`) : undefined;
    if (d.node === null || !block || !slices.has(d.node)) return [];
    return [{ model: d.model, node: d.node, block }];
  });
  const used = [...new Set([...slices.values()].map((s) => s.block).concat(devices.map((d) => d.block)))];
  const bases = await blockBases(used, monitor);
  const maps = parseMaps(proc.maps());
  // smaps and mountinfo are read at most once, and only when a backing needs them.
  let smaps: string | null = null;
  let mountinfo: string | null = null;
  const ctx: BackingContext = {
    smaps: () => (smaps ??= proc.smaps()),
    mountinfo: () => (mountinfo ??= proc.mountinfo()),
  };
  /** The checked HVA range of `length` bytes at `offset` in `block`, and its backing. */
  const resolveRange = (what: string, cell: number, block: RamblockInfo, offset: number, length: number): { range: HvaRange; backing: GuestNodeBacking } => {
    const start = bases.get(block.name)! + offset;
    const range: HvaRange = { start, end: start + length };
    if (range.start % PAGE_SIZE !== 0 || range.end % PAGE_SIZE !== 0) {
      throw new VmtierError('HVA_MISMATCH', `${what}: HVA range ${hex(range.start)}-${hex(range.end)} is not page aligned`);
    }
    const covering = coveringMappings(maps, range);
    const backing = classifyBacking(covering[0]!, block.name, ctx);
    const gate = gateForCell(gates, cell);
    if (backing.migratable && gate) {
      backing.migratable = false;
      backing.reason = gate.reason;
    }
    return { range, backing };
  };
  const nodes: GuestNode[] = config.cells.map((c) => {
    const s = slices.get(c.id)!;
    const { range, backing } = resolveRange(`node ${c.id}`, c.id, s.block, s.offset, s.length);
    const node: GuestNode = { node: c.id, cpus: c.cpus, sizeBytes: s.length, backing, hva: [range] };
    const devs: GuestMemoryDevice[] = devices.filter((d) => d.node === c.id).map((d) => {
      const r = resolveRange(`${d.block.name} on node ${c.id}`, c.id, d.block, 0, d.block.usedBytes);
      return { model: d.model, sizeBytes: d.block.usedBytes, backing: r.backing, hva: [r.range] };
    });
    if (devs.length > 0) node.devices = devs;
    return node;
  });
  return { domain: { ...args.domain }, nodes };
}

function backingJson(b: GuestNodeBacking): Record<string, unknown> {
  const out: Record<string, unknown> = { kind: b.kind, path: b.path, id: b.id, migratable: b.migratable };
  if (b.reason !== undefined) out.reason = b.reason;
  return out;
}

const rangesJson = (rs: HvaRange[]) => rs.map((r) => ({ start: hex(r.start), end: hex(r.end) }));

/**
 * The wire form of a GuestNodeMap (`vmtier numa --json`, GET /v1/vms/{uuid}/numa): addresses
 * as lowercase hex; `backing.reason` only when not migratable; `devices` only when present.
 */
export function guestNodeMapJson(map: GuestNodeMap): unknown {
  return {
    domain: { name: map.domain.name, uuid: map.domain.uuid, pid: map.domain.pid },
    nodes: map.nodes.map((n) => {
      const out: Record<string, unknown> = {
        node: n.node, cpus: n.cpus, sizeBytes: n.sizeBytes, backing: backingJson(n.backing), hva: rangesJson(n.hva),
      };
      if (n.devices) {
        out.devices = n.devices.map((d) => ({ model: d.model, sizeBytes: d.sizeBytes, backing: backingJson(d.backing), hva: rangesJson(d.hva) }));
      }
      return out;
    }),
  };
}
