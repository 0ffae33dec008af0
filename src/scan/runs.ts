/**
 * Range and run arithmetic shared by every tracker and by `vmtier scan`: half-open
 * page-aligned ranges, their page counts, and maximal runs of equal count (the CLI's
 * output and the compact form the daemon stores).
 */
import { VmtierError } from '../errors.js';
import type { MappingRuns } from './mapping-runs.js';
import type { ScannedRange } from './tracker.js';
import { PAGE_SIZE, type HvaRange } from '../units.js';

/** User-space addresses stay below 2^47 on x86_64, so they are exact in a double. */
export const MAX_USER_ADDRESS = 2 ** 47;

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

export function pagesIn(r: HvaRange): number {
  return (r.end - r.start) / PAGE_SIZE;
}

export function totalPages(ranges: readonly HvaRange[]): number {
  let n = 0;
  for (const r of ranges) n += pagesIn(r);
  return n;
}

function isAligned(n: number): boolean {
  return Number.isSafeInteger(n) && n % PAGE_SIZE === 0;
}

/** Throws INVALID_INPUT unless [start, end) is a non-empty page-aligned user-space range. */
export function checkRange(r: HvaRange): void {
  if (!isAligned(r.start) || !isAligned(r.end) || r.start < 0 || r.end > MAX_USER_ADDRESS || r.end <= r.start) {
    throw new VmtierError('INVALID_INPUT', `range ${fmtRange(r)} is not a non-empty, page-aligned user-space range`, {
      start: r.start,
      end: r.end,
    });
  }
}

export function fmtRange(r: HvaRange): string {
  return `${Number.isFinite(r.start) ? hex(r.start) : String(r.start)}-${Number.isFinite(r.end) ? hex(r.end) : String(r.end)}`;
}

/** Parses `0xS-0xE` (hex; the 0x prefix is optional) into a checked range. */
export function parseRange(text: string): HvaRange {
  const m = /^\s*(?:0x)?([0-9a-fA-F]+)\s*-\s*(?:0x)?([0-9a-fA-F]+)\s*$/.exec(text);
  if (!m) throw new VmtierError('INVALID_INPUT', `range "${text}" is not of the form 0xSTART-0xEND`);
  // Reject before parseInt loses precision on absurdly long hex strings.
  if (m[1]!.length > 13 || m[2]!.length > 13) throw new VmtierError('INVALID_INPUT', `range "${text}" is outside user space`);
  const r = { start: parseInt(m[1]!, 16), end: parseInt(m[2]!, 16) };
  checkRange(r);
  return r;
}

/**
 * Sorts ranges and merges overlapping or touching ones, so every page is tracked once.
 * Every range must pass checkRange.
 */
export function normalizeRanges(ranges: readonly HvaRange[]): HvaRange[] {
  for (const r of ranges) checkRange(r);
  const sorted = ranges.map((r) => ({ start: r.start, end: r.end })).sort((a, b) => a.start - b.start);
  const out: HvaRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
    else out.push(r);
  }
  return out;
}

/** Intersection of two sorted, non-overlapping range lists. */
export function intersectRanges(a: readonly HvaRange[], b: readonly HvaRange[]): HvaRange[] {
  const out: HvaRange[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const start = Math.max(a[i]!.start, b[j]!.start);
    const end = Math.min(a[i]!.end, b[j]!.end);
    if (start < end) out.push({ start, end });
    if (a[i]!.end < b[j]!.end) i++;
    else j++;
  }
  return out;
}

/** A scan's ranges: each with the index of its first page in the counts and where it was mapped (`mapped[k]` for `ranges[k]`). */
export function scannedRanges(ranges: readonly HvaRange[], mapped: readonly MappingRuns[]): ScannedRange[] {
  const out: ScannedRange[] = [];
  let firstPage = 0;
  ranges.forEach((r, k) => {
    out.push({ start: r.start, end: r.end, firstPage, mapped: mapped[k]! });
    firstPage += pagesIn(r);
  });
  return out;
}

export interface CountRun {
  start: number;
  end: number;
  count: number;
}

/**
 * Maximal runs of equal count over present pages, in address order. A not-present page
 * ends a run and is omitted; runs never join across two tracked ranges that do not touch.
 * The work is per present page; absent stretches cost nothing.
 */
export function countRuns(ranges: readonly ScannedRange[], counts: Uint8Array): CountRun[] {
  const out: CountRun[] = [];
  let cur: CountRun | null = null;
  for (const r of ranges) {
    const m = r.mapped;
    for (let k = 0; k < m.length; k += 3) {
      const first = m[k]!;
      const last = first + m[k + 1]!;
      for (let i = first; i < last; i++) {
        const addr = r.start + i * PAGE_SIZE;
        const c = counts[r.firstPage + i]!;
        if (cur && cur.end === addr && cur.count === c) cur.end = addr + PAGE_SIZE;
        else {
          cur = { start: addr, end: addr + PAGE_SIZE, count: c };
          out.push(cur);
        }
      }
    }
  }
  return out;
}

/**
 * Page index of `addr` across `ranges` laid end to end (the numbering a trace uses),
 * or -1 when no range holds it. `ranges` must be sorted and non-overlapping.
 */
export function pageIndexOf(ranges: readonly HvaRange[], addr: number): number {
  let base = 0;
  for (const r of ranges) {
    if (addr >= r.start && addr < r.end) return base + Math.floor((addr - r.start) / PAGE_SIZE);
    base += pagesIn(r);
  }
  return -1;
}
