/**
 * The VM's memory in 2 MiB units numbered the same way on every host, for the hot map carried in
 * the domain's metadata (src/vm/vm-metadata.ts).
 *
 * PageMap numbers pages in host-virtual-address order, which differs between two QEMU processes
 * of the same VM (each maps its memory backends wherever mmap puts them). The hot map instead
 * numbers guest memory by guest node, then main RAM before memory devices, then address within
 * the node's backing (ascending HVA inside one backend is ascending guest-physical address): the
 * same guest definition gives the same numbering on the source and the destination.
 *
 * Cost: building the map reads one count per tracked page (the round's accounting pass does the
 * same); turning a map into pages costs per page of a hot unit, i.e. it grows with the hot set.
 */
import { HOT_UNIT_BYTES } from '../vm/vm-metadata.js';
import { PAGE_SIZE } from '../units.js';
import type { PageMap } from './page-map.js';

const UNIT_PAGES = HOT_UNIT_BYTES / PAGE_SIZE;

export class HotUnits {
  readonly pages: number;
  readonly units: number;
  /** Canonical page number of each PageMap segment's first page. */
  private readonly canonFirst: Float64Array;

  constructor(private readonly pm: PageMap) {
    this.pages = pm.totalPages;
    this.units = Math.ceil(this.pages / UNIT_PAGES);
    const order = pm.segments.map((s, i) => ({ s, i }));
    order.sort((a, b) => a.s.guestNode - b.s.guestNode || Number(a.s.device !== undefined) - Number(b.s.device !== undefined) || a.s.start - b.s.start);
    this.canonFirst = new Float64Array(pm.segments.length);
    let next = 0;
    for (const { s, i } of order) {
      this.canonFirst[i] = next;
      next += s.pages;
    }
  }

  /** Bitmap (LSB first) of the units holding at least one page with `counts[p] >= hotMin`. */
  hotBits(counts: Uint8Array, hotMin: number): Uint8Array {
    const bits = new Uint8Array(Math.ceil(this.units / 8));
    this.pm.segments.forEach((s, i) => {
      const c0 = this.canonFirst[i]!;
      for (let k = 0; k < s.pages; k++) {
        if (counts[s.firstPage + k]! < hotMin) continue;
        const u = Math.floor((c0 + k) / UNIT_PAGES);
        bits[u >> 3]! |= 1 << (u & 7);
        // The rest of this unit inside the segment cannot add anything.
        k = (u + 1) * UNIT_PAGES - c0 - 1;
      }
    });
    return bits;
  }

  /** This host's page numbers (PageMap order, ascending) of the units set in `bits`. */
  pagesOf(bits: Uint8Array): Int32Array {
    const out: number[] = [];
    this.pm.segments.forEach((s, i) => {
      const c0 = this.canonFirst[i]!;
      const firstUnit = Math.floor(c0 / UNIT_PAGES);
      const lastUnit = Math.floor((c0 + s.pages - 1) / UNIT_PAGES);
      for (let u = firstUnit; u <= lastUnit; u++) {
        if (!(bits[u >> 3]! & (1 << (u & 7)))) continue;
        const from = Math.max(0, u * UNIT_PAGES - c0);
        const to = Math.min(s.pages, (u + 1) * UNIT_PAGES - c0);
        for (let k = from; k < to; k++) out.push(s.firstPage + k);
      }
    });
    return Int32Array.from(out.sort((a, b) => a - b));
  }
}
