/**
 * Parsers for the QEMU HMP text vmtier relies on. HMP is a human interface and changes
 * between versions, so each parser accepts the variants known and fails loudly
 * (MONITOR_ERROR) on anything else instead of guessing.
 */
import { VmtierError } from '../errors.js';

export interface RamblockInfo {
  name: string;
  pageSizeBytes: number;
  /** Offset in QEMU's ram_addr space (not a GPA, not an HVA). */
  offset: number;
  usedBytes: number;
  totalBytes: number;
  /** Host address of the block, when this QEMU prints it (newer than 7.2); else null. */
  hva: number | null;
  readOnly: boolean | null;
}

const SIZE_UNITS: Record<string, number> = { B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 };

function hexNum(s: string, what: string): number {
  const n = Number.parseInt(s.replace(/^0x/i, ''), 16);
  if (!/^(0x)?[0-9a-f]+$/i.test(s) || !Number.isSafeInteger(n)) throw new VmtierError('MONITOR_ERROR', `${what}: not a hex number: ${s}`);
  return n;
}

/**
 * `info ramblock` (same text as QMP x-query-ramblock). QEMU 7.2 prints
 * `Block Name  PSize  Offset  Used  Total`; newer versions append `HVA` and `RO` columns.
 */
export function parseRamblocks(text: string): RamblockInfo[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = lines.findIndex((l) => /Block Name\s+PSize\s+Offset\s+Used\s+Total/.test(l));
  if (header < 0) throw new VmtierError('MONITOR_ERROR', `unexpected "info ramblock" output: ${text.slice(0, 200)}`);
  const hasHva = /\bHVA\b/.test(lines[header]!);
  const hasRo = /\bRO\b/.test(lines[header]!);
  const out: RamblockInfo[] = [];
  for (const line of lines.slice(header + 1)) {
    // name, psize value + unit, offset, used, total[, hva][, ro]
    const m = /^\s*(\S+)\s+(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)(?:\s+(0x[0-9a-f]+))?(?:\s+(\S+))?\s*$/i.exec(line);
    if (!m) throw new VmtierError('MONITOR_ERROR', `unexpected "info ramblock" line: ${line}`);
    if (hasHva && m[7] === undefined) throw new VmtierError('MONITOR_ERROR', `"info ramblock" line lacks its HVA: ${line}`);
    const ro = m[8];
    out.push({
      name: m[1]!,
      pageSizeBytes: Math.round(Number(m[2]) * SIZE_UNITS[m[3]!]!),
      offset: hexNum(m[4]!, 'ramblock offset'),
      usedBytes: hexNum(m[5]!, 'ramblock used'),
      totalBytes: hexNum(m[6]!, 'ramblock total'),
      hva: hasHva ? hexNum(m[7]!, 'ramblock hva') : null,
      readOnly: hasRo && ro !== undefined ? /^(ro|true|yes)$/i.test(ro) : null,
    });
  }
  return out;
}

export interface FlatRange {
  /** Guest physical range [start, end). */
  start: number;
  end: number;
  /** "ram", "rom", "romd", "i/o", ... */
  kind: string;
  /** Memory region name: for memory backends, the backend id (= ramblock name). */
  name: string;
  /** Offset of `start` inside the region. */
  offset: number;
}

/**
 * `info mtree -f`: the flat view of the system address space ("memory"). Other flat views
 * (I/O ports, device bus-master spaces) are ignored. An absent `@offset` means offset 0.
 */
export function parseFlatView(text: string, addressSpace = 'memory'): FlatRange[] {
  const lines = text.split(/\r?\n/);
  let inWanted = false;
  let inHeader = false;
  let found = false;
  const out: FlatRange[] = [];
  for (const line of lines) {
    if (/^FlatView #\d+/.test(line)) {
      if (found && inWanted) break;
      inWanted = false;
      inHeader = true;
      continue;
    }
    const as = /^\s*AS "([^"]*)"/.exec(line);
    if (as && inHeader) {
      if (as[1] === addressSpace) {
        inWanted = true;
        found = true;
      }
      continue;
    }
    if (/^\s*Root memory region:/.test(line)) {
      inHeader = false;
      continue;
    }
    if (!inWanted) continue;
    const m = /^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, ([^)]+)\): (\S+)(?: @([0-9a-f]+))?/i.exec(line);
    if (!m) continue;
    const start = hexNum(m[1]!, 'mtree start');
    const last = hexNum(m[2]!, 'mtree end');
    out.push({ start, end: last + 1, kind: m[3]!.trim(), name: m[4]!, offset: m[5] ? hexNum(m[5], 'mtree offset') : 0 });
  }
  if (!found) throw new VmtierError('MONITOR_ERROR', `"info mtree -f" shows no flat view for address space "${addressSpace}"`);
  return out;
}

export interface Gpa2Hva {
  gpa: number;
  block: string;
  hva: number;
}

/** `gpa2hva <addr>`: "Host virtual address for 0x10000000 (ram-node1) is 0x7f7403ffe000". */
export function parseGpa2hva(text: string): Gpa2Hva {
  const m = /Host virtual address for 0x([0-9a-f]+) \((.*)\) is 0x([0-9a-f]+)/i.exec(text);
  if (!m) throw new VmtierError('MONITOR_ERROR', `gpa2hva failed: ${text.trim().slice(0, 200)}`);
  return { gpa: hexNum(m[1]!, 'gpa'), block: m[2]!, hva: hexNum(m[3]!, 'hva') };
}
