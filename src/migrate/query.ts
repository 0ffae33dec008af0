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
import { PAGE_SIZE as PAGE_BYTES } from '../units.js';
import { RunList, type RunListData } from './node-runs.js';
import type { AddressRun } from './placement-cache.js';

/** Where a window of the VM's pages sits, and how long the longest single query call held the thread. */
export interface WindowPlacement {
  /** Host node of the window's present pages, as runs (pages in no run: not present or not queryable). */
  runs: RunListData;
  /** Pages the kernel answered with an error other than "not present". */
  unqueryable: number;
  longestCallMs: number;
}

/** The query's per-call buffers (addresses, statuses), `batch` entries each, reused by every call that is given them. */
export class QueryScratch {
  addrs = new Float64Array(0);
  status = new Int32Array(0);

  /** Buffers of at least `n` entries (grown once, never per call). */
  ensure(n: number): void {
    if (this.addrs.length < n) {
      this.addrs = new Float64Array(n);
      this.status = new Int32Array(n);
    }
  }

  get bytes(): number {
    return this.addrs.byteLength + this.status.byteLength;
  }
}

/**
 * Host node of pages [base, base + totalPages) of the VM's page numbering, given the address
 * runs that cover them (placement-cache.ts windowRuns), queried `batch` pages per call.
 */
export function queryWindow(pid: number, runs: readonly AddressRun[], base: number, totalPages: number, batch = MOVE_PAGES_BATCH, scratch = new QueryScratch()): WindowPlacement {
  const size = Math.max(1, batch);
  for (const r of runs) {
    if (r.firstPage < base || r.firstPage + r.pages > base + totalPages) throw new VmtierError('INVALID_INPUT', `address run at page ${r.firstPage} (${r.pages} pages) is outside the window [${base}, ${base + totalPages})`);
  }
  scratch.ensure(size);
  const addrs = scratch.addrs;
  const st = scratch.status;
  const out = new RunList(16);
  let unqueryable = 0;
  let longest = 0;
  for (const r of runs) {
    for (let off = 0; off < r.pages; off += size) {
      const n = Math.min(size, r.pages - off);
      const from = r.start + off * PAGE_BYTES;
      for (let i = 0; i < n; i++) addrs[i] = from + i * PAGE_BYTES;
      const t = performance.now();
      queryPageNodes(pid, addrs.subarray(0, n), size, st);
      longest = Math.max(longest, performance.now() - t);
      const first = r.firstPage + off;
      for (let i = 0; i < n; ) {
        const v = st[i]!;
        let j = i + 1;
        while (j < n && st[j] === v) j++;
        if (v >= 0) out.push(first + i, j - i, v);
        else if (v !== -ENOENT) unqueryable += j - i;
        i = j;
      }
    }
  }
  return { runs: out.trimmed(), unqueryable, longestCallMs: longest };
}
