/**
 * Where a window of the VM's page numbering sits, for the daemon's placement cache (millions of
 * pages over the rotation): the address runs of the window queried with src/sys's
 * queryPageNodes, the one placement query, `batch` pages per call into buffers reused from call
 * to call (a QueryScratch, batch-sized whatever the window), answered as runs of pages on one
 * node (node-runs.ts): nothing per page is allocated or sent back.
 */
import { ENOENT } from '../errno.js';
import { VmtierError } from '../errors.js';
import { MOVE_PAGES_BATCH, queryPageNodes } from '../sys/syscalls.js';
import { PAGE_SIZE as PAGE_BYTES, type UnitShift } from '../units.js';
import { RunList, type RunListData } from './node-runs.js';
import type { AddressRun } from './placement-cache.js';

/** Where a window of the VM's pages sits, and how long the longest single query call held the thread. */
export interface WindowPlacement {
  /** Host node of the window's present pages, as runs (pages in no run: not present or not queryable). */
  runs: RunListData;
  /** Pages the kernel answered with an error other than "not present". */
  unqueryable: number;
  /** Addresses asked: one per 4 KiB page, one per huge unit the tracker saw mapped whole. */
  asked: number;
  longestCallMs: number;
}

/**
 * Pages [firstPage, firstPage + pages) of the VM's numbering that the tracker's last scan saw
 * mapped with units of 2^shift bytes (2 MiB THP or hugetlb, 1 GiB hugetlb; sorted, disjoint).
 * A unit is on one node: its head page is asked for all of it (one query per unit, not 512).
 * Should the kernel split a THP since, its subpages take the head's node until the next scan
 * says 4 KiB and the rotation asks them again.
 */
export interface UnitRun {
  firstPage: number;
  pages: number;
  shift: UnitShift;
}

/** The query's per-call buffers (addresses, statuses), `batch` entries each, reused by every call that is given them. */
export class QueryScratch {
  addrs = new Float64Array(0);
  status = new Int32Array(0);
  /** Per address asked: the first page it stands for and how many pages (1, or a huge unit's pages in the window). */
  first = new Int32Array(0);
  pages = new Int32Array(0);

  /** Buffers of at least `n` entries (grown once, never per call). */
  ensure(n: number): void {
    if (this.addrs.length < n) {
      this.addrs = new Float64Array(n);
      this.status = new Int32Array(n);
      this.first = new Int32Array(n);
      this.pages = new Int32Array(n);
    }
  }

  get bytes(): number {
    return this.addrs.byteLength + this.status.byteLength + this.first.byteLength + this.pages.byteLength;
  }
}

/**
 * Host node of pages [base, base + totalPages) of the VM's page numbering, given the address
 * runs that cover them (placement-cache.ts windowRuns), queried `batch` addresses per call;
 * pages in `units` are asked once per unit.
 */
export function queryWindow(pid: number, runs: readonly AddressRun[], base: number, totalPages: number, batch = MOVE_PAGES_BATCH, scratch = new QueryScratch(), units: readonly UnitRun[] = []): WindowPlacement {
  const size = Math.max(1, batch);
  for (const r of runs) {
    if (r.firstPage < base || r.firstPage + r.pages > base + totalPages) throw new VmtierError('INVALID_INPUT', `address run at page ${r.firstPage} (${r.pages} pages) is outside the window [${base}, ${base + totalPages})`);
  }
  for (let k = 1; k < units.length; k++) {
    if (units[k]!.firstPage < units[k - 1]!.firstPage + units[k - 1]!.pages) throw new VmtierError('INVALID_INPUT', `unit runs overlap or are not sorted at page ${units[k]!.firstPage}`);
  }
  scratch.ensure(size);
  const { addrs, status: st, first, pages } = scratch;
  const out = new RunList(16);
  let unqueryable = 0;
  let longest = 0;
  let asked = 0;
  let n = 0;
  const flush = () => {
    if (n === 0) return;
    const t = performance.now();
    queryPageNodes(pid, addrs.subarray(0, n), size, st);
    longest = Math.max(longest, performance.now() - t);
    asked += n;
    for (let k = 0; k < n; k++) {
      const v = st[k]!;
      if (v >= 0) out.push(first[k]!, pages[k]!, v);
      else if (v !== -ENOENT) unqueryable += pages[k]!;
    }
    n = 0;
  };
  // Runs are in page order (windowRuns), and so are units: one pointer walks the units.
  let u = 0;
  for (const r of runs) {
    for (let i = 0; i < r.pages; ) {
      const p = r.firstPage + i;
      const addr = r.start + i * PAGE_BYTES;
      while (u < units.length && units[u]!.firstPage + units[u]!.pages <= p) u++;
      let len = 1;
      const un = units[u];
      if (un && un.firstPage <= p) {
        const bytes = 2 ** un.shift;
        const toUnitEnd = (bytes - (addr % bytes)) / PAGE_BYTES;
        len = Math.min(toUnitEnd, un.firstPage + un.pages - p, r.pages - i);
      }
      addrs[n] = addr;
      first[n] = p;
      pages[n] = len;
      n++;
      if (n === size) flush();
      i += len;
    }
  }
  flush();
  return { runs: out.trimmed(), unqueryable, asked, longestCallMs: longest };
}
