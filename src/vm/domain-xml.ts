/**
 * What vmtier needs from a libvirt domain XML: guest NUMA cells, memory backing, numatune and
 * memory devices. A domain without <numa> is one implicit node holding all memory and vCPUs.
 * Malformed or incomplete XML throws INVALID_XML; nothing else is assumed about the layout.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { VmtierError } from '../errors.js';

export interface DomainCell {
  id: number;
  /** Guest cpulist as written ("0-1"), null for a CPU-less cell. */
  cpus: string | null;
  memoryBytes: number;
  memAccess: 'shared' | 'private' | null;
  discard: boolean | null;
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
  /** Guest node the device is plugged into. */
  node: number | null;
  sizeBytes: number;
  sourcePath: string | null;
  access: 'shared' | 'private' | null;
}

export interface DomainConfig {
  name: string;
  uuid: string;
  /** libvirt domain id from a live XML; -1 for an inactive definition. */
  id: number;
  memoryBytes: number;
  vcpus: number;
  /** false when the XML has <numa> cells; true for the single implicit node. */
  implicitNuma: boolean;
  cells: DomainCell[];
  memoryBacking: MemoryBackingConfig;
  numatune: NumatuneConfig;
  memoryDevices: MemoryDeviceConfig[];
  /**
   * PCI devices assigned to the guest (<hostdev type='pci'>, or <interface type='hostdev'>): VFIO
   * pins all guest RAM for device DMA, so none of it can be migrated.
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

export function parseDomainXml(xml: string): DomainConfig {
  if (typeof xml !== 'string' || xml.trim() === '') throw new VmtierError('INVALID_XML', 'domain XML is empty');
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    const e = valid.err;
    throw new VmtierError('INVALID_XML', `domain XML is malformed: ${e.msg} (line ${e.line}, column ${e.col})`, { line: e.line, col: e.col });
  }
  const doc = parser.parse(xml) as Node;
  const dom = obj(doc.domain);
  if (!dom) throw new VmtierError('INVALID_XML', 'not a libvirt domain XML: no <domain> root element');
  const name = text(dom.name);
  const uuid = text(dom.uuid);
  if (!name) throw new VmtierError('INVALID_XML', 'domain XML has no <name>');
  const memoryBytes = dom.memory !== undefined ? sizeOf(dom.memory, '<memory>') : null;
  const vcpuText = text(dom.vcpu);
  const vcpus = vcpuText === null ? 1 : Number(vcpuText);
  if (!Number.isInteger(vcpus) || vcpus < 1) throw new VmtierError('INVALID_XML', `<vcpu>: not a count: ${vcpuText}`);
  const idAttr = attr(dom, 'id');

  const numa = obj(obj(dom.cpu)?.numa);
  const cells: DomainCell[] = list(numa?.cell).map((c, i) => {
    const what = `<cell> #${i}`;
    const id = attr(c, 'id') === null ? i : intAttr(c, 'id', what);
    return {
      id,
      cpus: attr(c, 'cpus') || null,
      memoryBytes: scaledBytes(attr(c, 'memory'), attr(c, 'unit'), `${what} memory`),
      memAccess: sharedPrivate(attr(c, 'memAccess'), `${what} memAccess`),
      discard: yesNo(attr(c, 'discard')),
    };
  });
  const ids = new Set(cells.map((c) => c.id));
  if (ids.size !== cells.length) throw new VmtierError('INVALID_XML', '<numa>: duplicate cell ids');
  cells.sort((a, b) => a.id - b.id);
  const implicitNuma = cells.length === 0;
  if (implicitNuma) {
    if (memoryBytes === null) throw new VmtierError('INVALID_XML', 'domain XML has neither <memory> nor <numa> cells');
    cells.push({ id: 0, cpus: vcpus > 1 ? `0-${vcpus - 1}` : '0', memoryBytes, memAccess: null, discard: null });
  }

  const mb = obj(dom.memoryBacking);
  const sourceTypeRaw = attr(obj(mb?.source), 'type');
  if (sourceTypeRaw !== null && !['anonymous', 'file', 'memfd'].includes(sourceTypeRaw)) {
    throw new VmtierError('INVALID_XML', `<memoryBacking><source type>: unknown ${JSON.stringify(sourceTypeRaw)}`);
  }
  const hp = mb && 'hugepages' in mb ? obj(mb.hugepages) ?? {} : null;
  const memoryBacking: MemoryBackingConfig = {
    sourceType: sourceTypeRaw as MemoryBackingConfig['sourceType'],
    accessMode: sharedPrivate(attr(obj(mb?.access), 'mode'), '<memoryBacking><access mode>'),
    hugepages: hp === null ? null : list(hp.page).map((p) => ({
      sizeBytes: attr(p, 'size') === null ? null : scaledBytes(attr(p, 'size'), attr(p, 'unit'), '<hugepages><page size>'),
      nodeset: attr(p, 'nodeset'),
    })),
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

  const memoryDevices: MemoryDeviceConfig[] = list(obj(dom.devices)?.memory).map((m, i) => {
    const what = `<memory> device #${i}`;
    const target = obj(m.target);
    const node = text(target?.node);
    const src = obj(m.source);
    return {
      model: attr(m, 'model') ?? 'dimm',
      alias: attr(obj(m.alias), 'name'),
      node: node === null ? null : Number(node),
      sizeBytes: target?.size !== undefined ? sizeOf(target.size, `${what} size`) : 0,
      sourcePath: text(src?.path),
      access: sharedPrivate(attr(m, 'access'), `${what} access`),
    };
  });

  const devs = obj(dom.devices);
  const pciAddress = (h: Record<string, unknown>): string => {
    const a = obj(obj(h.source)?.address);
    const f = (k: string): string => (attr(a, k) ?? '?').replace(/^0x/, '');
    return a ? `${f('domain')}:${f('bus')}:${f('slot')}.${f('function')}` : 'pci';
  };
  const pciPassthrough = [
    ...list(devs?.hostdev).filter((h) => attr(h, 'type') === 'pci'),
    ...list(devs?.interface).filter((h) => attr(h, 'type') === 'hostdev'),
  ].map(pciAddress);

  return {
    name,
    uuid: (uuid ?? '').toLowerCase(),
    id: idAttr !== null && /^\d+$/.test(idAttr) ? Number(idAttr) : -1,
    memoryBytes: memoryBytes ?? cells.reduce((s, c) => s + c.memoryBytes, 0),
    vcpus,
    implicitNuma,
    cells,
    memoryBacking,
    numatune,
    memoryDevices,
    pciPassthrough,
    launchSecurity: dom.launchSecurity === undefined ? null : (attr(obj(dom.launchSecurity), 'type') ?? 'unknown'),
  };
}
