/**
 * A VM's tracked memory laid end to end: every guest node's HVA ranges (and its memory devices'),
 * sorted by address, numbered page by page. Page p of the policy's typed arrays is page p here,
 * which is also page p of a tracker's result (trackers return ranges sorted, and merging adjacent
 * ranges keeps the numbering). Each segment remembers its guest node and whether move_pages may
 * touch it (devdax is scanned and reported, never moved).
 */
import { VmtierError } from '../errors.js';
import { PAGE_SIZE, type HvaRange } from '../units.js';
import type { BackingKind, GuestNodeMap } from '../vm/types.js';

export interface PageSegment {
  start: number;
  end: number;
  /** Page number of `start` in the VM's flat numbering. */
  firstPage: number;
  pages: number;
  guestNode: number;
  migratable: boolean;
  backing: BackingKind;
  /** Memory device model ("nvdimm", "dimm") when the segment is a device's RAM. */
  device?: string;
}

/** Also the mover's view of the VM's pages (src/migrate/mover.ts MovablePages). */
export class PageMap {
  readonly segments: readonly PageSegment[];
  readonly totalPages: number;

  private constructor(segments: PageSegment[]) {
    this.segments = segments;
    this.totalPages = segments.length === 0 ? 0 : segments[segments.length - 1]!.firstPage + segments[segments.length - 1]!.pages;
  }

  static fromNumaMap(map: GuestNodeMap): PageMap {
    const raw: Omit<PageSegment, 'firstPage' | 'pages'>[] = [];
    for (const n of map.nodes) {
      for (const r of n.hva) raw.push({ start: r.start, end: r.end, guestNode: n.node, migratable: n.backing.migratable, backing: n.backing.kind });
      for (const d of n.devices ?? []) {
        for (const r of d.hva) raw.push({ start: r.start, end: r.end, guestNode: n.node, migratable: d.backing.migratable, backing: d.backing.kind, device: d.model });
      }
    }
    raw.sort((a, b) => a.start - b.start);
    const segs: PageSegment[] = [];
    let page = 0;
    let prevEnd = -1;
    for (const r of raw) {
      if (r.start % PAGE_SIZE !== 0 || r.end % PAGE_SIZE !== 0 || r.end <= r.start) {
        throw new VmtierError('HVA_MISMATCH', `guest node ${r.guestNode} range 0x${r.start.toString(16)}-0x${r.end.toString(16)} is not a page-aligned non-empty range`);
      }
      if (r.start < prevEnd) {
        throw new VmtierError('HVA_MISMATCH', `guest memory ranges overlap at 0x${r.start.toString(16)}`);
      }
      const pages = (r.end - r.start) / PAGE_SIZE;
      segs.push({ ...r, firstPage: page, pages });
      page += pages;
      prevEnd = r.end;
    }
    return new PageMap(segs);
  }

  /** The ranges to hand to a tracker. */
  ranges(): HvaRange[] {
    return this.segments.map((s) => ({ start: s.start, end: s.end }));
  }

  guestNodes(): number[] {
    return [...new Set(this.segments.map((s) => s.guestNode))].sort((a, b) => a - b);
  }

  /** Index of the segment holding flat page p (binary search); -1 when out of range. */
  segmentIndexOfPage(p: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.segments[mid]!;
      if (p < s.firstPage) hi = mid - 1;
      else if (p >= s.firstPage + s.pages) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  addrOf(p: number): number {
    const i = this.segmentIndexOfPage(p);
    if (i < 0) throw new VmtierError('INVALID_INPUT', `page ${p} is outside the VM's ${this.totalPages} pages`);
    const s = this.segments[i]!;
    return s.start + (p - s.firstPage) * PAGE_SIZE;
  }

  /** Flat page number of an address, or -1 when it lies in no segment. */
  pageOf(addr: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.segments[mid]!;
      if (addr < s.start) hi = mid - 1;
      else if (addr >= s.end) lo = mid + 1;
      else return s.firstPage + Math.floor((addr - s.start) / PAGE_SIZE);
    }
    return -1;
  }

  /** Guest node of flat page p (the mover groups its batches by it). */
  guestNodeOf(p: number): number {
    const i = this.segmentIndexOfPage(p);
    if (i < 0) throw new VmtierError('INVALID_INPUT', `page ${p} is outside the VM's ${this.totalPages} pages`);
    return this.segments[i]!.guestNode;
  }

  /** true when the page may be moved (its backing is migratable). */
  movable(p: number): boolean {
    const i = this.segmentIndexOfPage(p);
    return i >= 0 && this.segments[i]!.migratable;
  }
}
