/**
 * What vmtier needs from a libvirt domain XML: guest NUMA cells, memory backing, numatune and
 * memory devices, read the way libvirt's QEMU driver reads them, so the sizes and backings here are
 * what QEMU gets (checked against libvirt's own test data in test/unit/vm-libvirt-corpus.test.ts):
 * guest RAM is the sum of the <numa> cells when there are cells (libvirt ignores <memory> then);
 * without cells it is <memory> minus the memory devices, one implicit node; cell sizes are rounded
 * up as libvirt rounds them; a <page> of the base page size is ordinary memory.
 * Malformed or incomplete XML throws INVALID_XML; nothing else is assumed about the layout.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { VmtierError } from '../errors.js';
import { deviceAlignment, parseNodeset, pciAddressText, ramAlignment, roundUp } from './domain-values.js';

export interface DomainCell {
  id: number;
  /** Guest cpulist as written ("0-1"), null for a CPU-less cell. */
  cpus: string | null;
  /** As QEMU gets it: the declared size rounded up to libvirt's alignment (1 MiB; ppc64 256 MiB). */
  memoryBytes: number;
  memAccess: 'shared' | 'private' | null;
  discard: boolean | null;
}

/** How QEMU backs one guest node's RAM, as libvirt chooses it. */
export interface CellBacking {
  /** QEMU memory backend type. */
  backend: 'memory-backend-ram' | 'memory-backend-file' | 'memory-backend-memfd';
  /** Huge page size backing the cell; null = ordinary (base-size) pages; 'default' = the host's default huge page size. */
  hugepageBytes: number | 'default' | null;
  /** share=on/off when libvirt sets it (memAccess of the cell, else <access mode>), else null. */
  shared: boolean | null;
  /** numatune for this cell: host nodes and mode, null when unrestricted or placement is automatic. */
  hostNodes: number[] | null;
  policy: 'bind' | 'preferred' | 'interleave' | 'restrictive' | null;
}

export interface HugepageSpec {
  sizeBytes: number | null;
  /** Guest cells this page size applies to ("0-1"), null = all. */
  nodeset: string | null;
}

export interface MemoryBackingConfig {
  /** <source type>: null when absent (QEMU's default anonymous RAM). */
  sourceType: 'anonymous' | 'file' | 'memfd' | null;
  accessMode: 'shared' | 'private' | null;
  /** null without <hugepages>; [] = default huge page size for every cell. */
  hugepages: HugepageSpec[] | null;
  locked: boolean;
  discard: boolean;
}

export interface NumatuneConfig {
  memory: { mode: string | null; nodeset: string | null; placement: string | null } | null;
  memnodes: Array<{ cellid: number; mode: string | null; nodeset: string | null }>;
}

export interface MemoryDeviceConfig {
  model: string;
  /** libvirt alias (e.g. "dimm0", "nvdimm0"); the QEMU backend id is "mem" + alias. */
  alias: string | null;
  /** Guest node the device is plugged into (null: none, e.g. virtio-pmem). */
  node: number | null;
  /** As QEMU gets it: the declared size rounded up to the device's alignment. */
  sizeBytes: number;
  /** As declared; without <numa> libvirt subtracts this from <memory>. */
  declaredBytes: number;
  sourcePath: string | null;
  /** <source><nodemask>: host nodes the device's memory is bound to. */
  hostNodes: number[] | null;
  /** <source><pagesize>: huge page size of the device's backing. */
  pageBytes: number | null;
  access: 'shared' | 'private' | null;
}

export interface DomainConfig {
  name: string;
  uuid: string;
  /** libvirt domain id from a live XML; -1 for an inactive definition. */
  id: number;
  /** <os><type arch>, null when absent. */
  arch: string | null;
  /** Guest RAM QEMU boots with (-m size): the sum of the cells; memory devices come on top. */
  memoryBytes: number;
  vcpus: number;
  /** false when the XML has <numa> cells; true for the single implicit node. */
  implicitNuma: boolean;
  cells: DomainCell[];
  /** Per cell, same order as `cells`. */
  cellBackings: CellBacking[];
  memoryBacking: MemoryBackingConfig;
  numatune: NumatuneConfig;
  memoryDevices: MemoryDeviceConfig[];
  /**
   * Devices assigned to the guest through VFIO (<hostdev type='pci'> with a guest address, an
   * <interface type='hostdev'>, an mdev of model vfio-pci): VFIO pins all guest RAM for device DMA,
   * so none of it can be migrated. Host PCI addresses as "dddd:bb:ss.f" (lowercase hex), mdevs as
   * "mdev:<uuid>". A hostdev with <address type='unassigned'/> is not given to QEMU.
   */
  pciPassthrough: string[];
  /**
   * <launchSecurity type>: 'sev', 'sev-snp', 'tdx', 's390-pv'; null without one. Encrypted
   * guest memory is pinned and unreadable to the host (see src/vm/tiering-gates.ts).
   */
  launchSecurity: string | null;
}

const UNIT_BYTES: Record<string, number> = {
  b: 1, bytes: 1,
  kb: 1e3, k: 2 ** 10, kib: 2 ** 10,
  mb: 1e6, m: 2 ** 20, mib: 2 ** 20,
  gb: 1e9, g: 2 ** 30, gib: 2 ** 30,
  tb: 1e12, t: 2 ** 40, tib: 2 ** 40,
  pb: 1e15, p: 2 ** 50, pib: 2 ** 50,
};

/** libvirt's scaled integers: `unit` defaults to KiB; "KB" is 1000 but "k"/"KiB" are 1024. */
export function scaledBytes(value: unknown, unit: unknown, what: string): number {
  const text = String(value ?? '').trim();
  if (!/^\d+$/.test(text)) throw new VmtierError('INVALID_XML', `${what}: not a size: ${JSON.stringify(value)}`);
  const u = unit === undefined || unit === null || unit === '' ? 'kib' : String(unit).toLowerCase();
  const mult = UNIT_BYTES[u];
  if (mult === undefined) throw new VmtierError('INVALID_XML', `${what}: unknown unit ${JSON.stringify(unit)}`);
  const bytes = Number(text) * mult;
  if (!Number.isSafeInteger(bytes)) throw new VmtierError('INVALID_XML', `${what}: size out of range`);
  return bytes;
}

type Node = Record<string, unknown>;

const ARRAYS = new Set(['cell', 'memnode', 'page', 'memory']);
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  textNodeName: '#text',
  parseAttributeValue: false,
  parseTagValue: false,
  trimValues: true,
  // Repeated elements become arrays always, so one cell and many cells read the same.
  isArray: (name) => ARRAYS.has(name),
});

function obj(v: unknown): Node | undefined {
  if (Array.isArray(v)) return obj(v[0]);
  return v !== null && typeof v === 'object' ? (v as Node) : undefined;
}

function list(v: unknown): Node[] {
  if (v === undefined || v === null) return [];
  return (Array.isArray(v) ? v : [v]).map((x) => (typeof x === 'object' && x !== null ? (x as Node) : { '#text': x }));
}

function text(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'object') {
    const t = (obj(v) ?? {})['#text'];
    return t === undefined || t === null ? null : String(t);
  }
  return String(v);
}

function attr(n: Node | undefined, name: string): string | null {
  const v = n?.[`@${name}`];
  return v === undefined || v === null ? null : String(v);
}

function yesNo(v: string | null): boolean | null {
  if (v === null) return null;
  return v === 'yes' || v === 'on';
}

function sharedPrivate(v: string | null, what: string): 'shared' | 'private' | null {
  if (v === null) return null;
  if (v === 'shared' || v === 'private') return v;
  throw new VmtierError('INVALID_XML', `${what}: must be shared or private, got ${JSON.stringify(v)}`);
}

function intAttr(n: Node | undefined, name: string, what: string): number {
  const v = attr(n, name);
  if (v === null || !/^\d+$/.test(v)) throw new VmtierError('INVALID_XML', `${what}: ${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** A size element like <memory unit='KiB'>1024</memory>. */
function sizeOf(v: unknown, what: string): number {
  const first = Array.isArray(v) ? v[0] : v;
  const n = obj(first) ?? { '#text': first };
  return scaledBytes(text(n), attr(n, 'unit'), what);
}

/** The base page size: a <page> of this size is ordinary memory to libvirt, not huge pages. */
const BASE_PAGE_BYTES = 4096;

/** A <node> or similar element holding a non-negative integer; absent → null. */
function intElement(v: unknown, what: string): number | null {
  if (v === undefined) return null;
  const t = text(v);
  if (t === null || !/^\d+$/.test(t.trim())) throw new VmtierError('INVALID_XML', `${what}: must be a non-negative integer, got ${JSON.stringify(t ?? '')}`);
  const n = Number(t.trim());
  if (!Number.isSafeInteger(n)) throw new VmtierError('INVALID_XML', `${what}: out of range`);
  return n;
}

function parseXmlDocument(xml: string): Node {
  if (typeof xml !== 'string' || xml.trim() === '') throw new VmtierError('INVALID_XML', 'domain XML is empty');
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    const e = valid.err;
    throw new VmtierError('INVALID_XML', `domain XML is malformed: ${e.msg} (line ${e.line}, column ${e.col})`, { line: e.line, col: e.col });
  }
  try {
    return parser.parse(xml) as Node;
  } catch (e) {
    // The validator and the parser disagree on some inputs (entities, odd DOCTYPEs): still bad XML.
    throw new VmtierError('INVALID_XML', `domain XML is malformed: ${(e as Error).message}`, undefined, { cause: e });
  }
}

export function parseDomainXml(xml: string): DomainConfig {
  const doc = parseXmlDocument(xml);
  const dom = obj(doc.domain);
  if (!dom) throw new VmtierError('INVALID_XML', 'not a libvirt domain XML: no <domain> root element');
  const name = text(dom.name);
  const uuid = text(dom.uuid);
  if (!name) throw new VmtierError('INVALID_XML', 'domain XML has no <name>');
  const declaredMemory = dom.memory !== undefined ? sizeOf(dom.memory, '<memory>') : null;
  const vcpuText = text(dom.vcpu);
  const vcpus = vcpuText === null ? 1 : Number(vcpuText);
  if (!Number.isInteger(vcpus) || vcpus < 1) throw new VmtierError('INVALID_XML', `<vcpu>: not a count: ${vcpuText}`);
  const idAttr = attr(dom, 'id');
  const arch = attr(obj(obj(dom.os)?.type), 'arch');
  const ramAlign = ramAlignment(arch);

  const numa = obj(obj(dom.cpu)?.numa);
  const cells: DomainCell[] = list(numa?.cell).map((c, i) => {
    const what = `<cell> #${i}`;
    const id = attr(c, 'id') === null ? i : intAttr(c, 'id', what);
    return {
      id,
      cpus: attr(c, 'cpus') || null,
      memoryBytes: roundUp(scaledBytes(attr(c, 'memory'), attr(c, 'unit'), `${what} memory`), ramAlign),
      memAccess: sharedPrivate(attr(c, 'memAccess'), `${what} memAccess`),
      discard: yesNo(attr(c, 'discard')),
    };
  });
  const ids = new Set(cells.map((c) => c.id));
  if (ids.size !== cells.length) throw new VmtierError('INVALID_XML', '<numa>: duplicate cell ids');
  cells.sort((a, b) => a.id - b.id);
  const implicitNuma = cells.length === 0;

  const memoryDevices: MemoryDeviceConfig[] = list(obj(dom.devices)?.memory).map((m, i) => {
    const what = `<memory> device #${i}`;
    const model = attr(m, 'model') ?? 'dimm';
    const target = obj(m.target);
    const node = intElement(target?.node, `${what} <node>`);
    if (node !== null && !implicitNuma && !ids.has(node)) throw new VmtierError('INVALID_XML', `${what}: <node> ${node} is not a guest NUMA cell`);
    if (node !== null && implicitNuma && node !== 0) throw new VmtierError('INVALID_XML', `${what}: <node> ${node} but the domain has no <numa> cells`);
    const src = obj(m.source);
    const nodemask = text(src?.nodemask);
    const pageBytes = src?.pagesize !== undefined ? sizeOf(src.pagesize, `${what} <pagesize>`) : null;
    const blockBytes = target?.block !== undefined ? sizeOf(target.block, `${what} <block>`) : null;
    const declaredBytes = target?.size !== undefined ? sizeOf(target.size, `${what} size`) : 0;
    return {
      model,
      alias: attr(obj(m.alias), 'name'),
      node,
      sizeBytes: roundUp(declaredBytes, deviceAlignment(model, arch, blockBytes, pageBytes)),
      declaredBytes,
      sourcePath: text(src?.path),
      hostNodes: nodemask === null ? null : parseNodeset(nodemask, `${what} <nodemask>`),
      pageBytes,
      access: sharedPrivate(attr(m, 'access'), `${what} access`),
    };
  });

  if (implicitNuma) {
    if (declaredMemory === null) throw new VmtierError('INVALID_XML', 'domain XML has neither <memory> nor <numa> cells');
    // <memory> counts the memory devices too; the boot RAM is the rest (libvirt's "initial memory").
    // sgx-epc sections are not hotplugged RAM and are not part of <memory>.
    const devices = memoryDevices.filter((d) => d.model !== 'sgx-epc').reduce((sum, d) => sum + d.declaredBytes, 0);
    if (devices >= declaredMemory) throw new VmtierError('INVALID_XML', `<memory> (${declaredMemory} bytes) leaves no boot RAM beside the memory devices (${devices} bytes)`);
    cells.push({ id: 0, cpus: vcpus > 1 ? `0-${vcpus - 1}` : '0', memoryBytes: roundUp(declaredMemory - devices, ramAlign), memAccess: null, discard: null });
  }

  const mb = obj(dom.memoryBacking);
  const sourceTypeRaw = attr(obj(mb?.source), 'type');
  if (sourceTypeRaw !== null && !['anonymous', 'file', 'memfd'].includes(sourceTypeRaw)) {
    throw new VmtierError('INVALID_XML', `<memoryBacking><source type>: unknown ${JSON.stringify(sourceTypeRaw)}`);
  }
  const hp = mb && 'hugepages' in mb ? obj(mb.hugepages) ?? {} : null;
  const pages = hp === null ? null : list(hp.page).map((p, i) => ({
    sizeBytes: attr(p, 'size') === null ? null : scaledBytes(attr(p, 'size'), attr(p, 'unit'), `<hugepages><page> #${i} size`),
    nodeset: attr(p, 'nodeset'),
    nodes: attr(p, 'nodeset') === null ? null : parseNodeset(attr(p, 'nodeset')!, `<hugepages><page> #${i} nodeset`),
  }));
  // Pages of the base size are ordinary memory; only the others are huge pages.
  const hugeSpecs = pages === null ? null : pages.filter((p) => p.sizeBytes === null || p.sizeBytes > BASE_PAGE_BYTES);
  const memoryBacking: MemoryBackingConfig = {
    sourceType: sourceTypeRaw as MemoryBackingConfig['sourceType'],
    accessMode: sharedPrivate(attr(obj(mb?.access), 'mode'), '<memoryBacking><access mode>'),
    hugepages: hugeSpecs === null || (hugeSpecs.length === 0 && pages!.length > 0) ? null : hugeSpecs.map((p) => ({ sizeBytes: p.sizeBytes, nodeset: p.nodeset })),
    locked: mb !== undefined && 'locked' in mb,
    discard: mb !== undefined && 'discard' in mb,
  };

  const nt = obj(dom.numatune);
  const ntMem = obj(nt?.memory);
  const numatune: NumatuneConfig = {
    memory: ntMem ? { mode: attr(ntMem, 'mode'), nodeset: attr(ntMem, 'nodeset'), placement: attr(ntMem, 'placement') } : null,
    memnodes: list(nt?.memnode).map((m, i) => ({
      cellid: intAttr(m, 'cellid', `<memnode> #${i}`),
      mode: attr(m, 'mode'),
      nodeset: attr(m, 'nodeset'),
    })),
  };
  for (const m of numatune.memnodes) {
    if (!ids.has(m.cellid)) throw new VmtierError('INVALID_XML', `<memnode cellid='${m.cellid}'>: no such guest NUMA cell`);
  }

  const cellBackings = cells.map((c): CellBacking => {
    // libvirt's choice per cell: a <page> whose nodeset names the cell, else the one without a
    // nodeset; a base-size page (or none) means ordinary memory.
    let hugepageBytes: CellBacking['hugepageBytes'] = null;
    if (pages !== null) {
      const page = pages.find((p) => p.nodes?.includes(c.id)) ?? pages.find((p) => p.nodes === null) ?? (pages.length === 0 ? { sizeBytes: null } : null);
      if (page) hugepageBytes = page.sizeBytes === null ? 'default' : page.sizeBytes > BASE_PAGE_BYTES ? page.sizeBytes : null;
    }
    const access = c.memAccess ?? memoryBacking.accessMode;
    const backend: CellBacking['backend'] = memoryBacking.sourceType === 'memfd' ? 'memory-backend-memfd'
      : hugepageBytes !== null || memoryBacking.sourceType === 'file' || access !== null ? 'memory-backend-file'
        : 'memory-backend-ram';
    const tune = cellNumatune(numatune, c.id);
    return { backend, hugepageBytes, shared: access === null ? null : access === 'shared', ...tune };
  });

  const devs = obj(dom.devices);
  const hostdevs = list(devs?.hostdev).filter((h) => (attr(h, 'mode') ?? 'subsystem') === 'subsystem');
  const pciPassthrough: string[] = [];
  hostdevs.forEach((h, i) => {
    const what = `<hostdev> #${i}`;
    // An unassigned hostdev is bound to VFIO on the host but never handed to QEMU.
    if (attr(obj(h.address), 'type') === 'unassigned') return;
    const type = attr(h, 'type');
    if (type === 'pci') pciPassthrough.push(pciAddressText(sourceAddress(h, what), `${what} source address`));
    else if (type === 'mdev' && attr(h, 'model') === 'vfio-pci') {
      const id = attr(obj(obj(h.source)?.address), 'uuid');
      if (!id) throw new VmtierError('INVALID_XML', `${what}: mdev without <source><address uuid>`);
      pciPassthrough.push(`mdev:${id.toLowerCase()}`);
    }
  });
  list(devs?.interface).filter((h) => attr(h, 'type') === 'hostdev').forEach((h, i) => {
    if (attr(obj(h.address), 'type') === 'unassigned') return;
    pciPassthrough.push(pciAddressText(sourceAddress(h, `<interface type='hostdev'> #${i}`), `<interface type='hostdev'> #${i} source address`));
  });

  return {
    name,
    uuid: (uuid ?? '').toLowerCase(),
    id: idAttr !== null && /^\d+$/.test(idAttr) ? Number(idAttr) : -1,
    arch,
    memoryBytes: cells.reduce((s, c) => s + c.memoryBytes, 0),
    vcpus,
    implicitNuma,
    cells,
    cellBackings,
    memoryBacking,
    numatune,
    memoryDevices,
    pciPassthrough: [...new Set(pciPassthrough)],
    launchSecurity: dom.launchSecurity === undefined ? null : (attr(obj(dom.launchSecurity), 'type') ?? 'unknown'),
  };
}

function sourceAddress(h: Node, what: string): { domain: string | null; bus: string | null; slot: string | null; function: string | null } {
  const a = obj(obj(h.source)?.address);
  if (!a) throw new VmtierError('INVALID_XML', `${what}: no <source><address>`);
  return { domain: attr(a, 'domain'), bus: attr(a, 'bus'), slot: attr(a, 'slot'), function: attr(a, 'function') };
}

const POLICY: Record<string, CellBacking['policy']> = { strict: 'bind', preferred: 'preferred', interleave: 'interleave', restrictive: 'restrictive' };

/** The host nodes and policy libvirt gives one cell's backend: its <memnode>, else <memory>. */
function cellNumatune(nt: NumatuneConfig, cellId: number): Pick<CellBacking, 'hostNodes' | 'policy'> {
  const memnode = nt.memnodes.find((m) => m.cellid === cellId);
  const src = memnode ?? (nt.memory && nt.memory.placement !== 'auto' ? nt.memory : null);
  if (!src || src.nodeset === null) return { hostNodes: null, policy: null };
  const mode = src.mode ?? 'strict';
  const policy = POLICY[mode];
  if (policy === undefined) throw new VmtierError('INVALID_XML', `<numatune>: unknown mode ${JSON.stringify(mode)}`);
  return { hostNodes: parseNodeset(src.nodeset, `<numatune> nodeset for cell ${cellId}`), policy };
}
