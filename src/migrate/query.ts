/**
 * Where a run of pages sits, for the daemon's per-round placement of whole VMs (millions of
 * pages): move_pages in query mode in batches, without a BigInt per page — addresses are written
 * as two 32-bit halves into one reused buffer, so a round leaves no garbage for the GC to chase.
 */
import { VmtierError } from '../errors.js';
import { movePagesRaw } from '../sys/syscalls.js';
import { PAGE_SIZE as PAGE_BYTES } from '../units.js';
import { DEFAULT_BATCH } from './move.js';
import type { AddressRun } from './placement-cache.js';

/** move_pages' status for a page that is not present (never touched, or swapped out). */
const ENOENT = 2;
const TWO_32 = 0x1_0000_0000;

/** Fills out[0..pages) with the node of each page from `start` (or -errno: -ENOENT = not present). */
export function queryPageRun(pid: number, start: number, pages: number, out: Int32Array, batch = DEFAULT_BATCH): void {
  if (out.length < pages) throw new VmtierError('INVALID_INPUT', `queryPageRun: output holds ${out.length} of ${pages} pages`);
  if (pages === 0) return;
  const n0 = Math.min(batch, pages);
  const addrs = new BigUint64Array(n0);
  const halves = new Uint32Array(addrs.buffer);
  for (let off = 0; off < pages; off += batch) {
    const n = Math.min(batch, pages - off);
    for (let i = 0; i < n; i++) {
      const a = start + (off + i) * PAGE_BYTES;
      // x86_64 is little-endian: low word first.
      halves[2 * i] = a % TWO_32;
      halves[2 * i + 1] = Math.floor(a / TWO_32);
    }
    out.set(movePagesRaw(pid, n === n0 ? addrs : addrs.subarray(0, n), null, 0), off);
  }
}

/** Where a window of the VM's pages sits, and how long the longest single query call held the thread. */
export interface WindowPlacement {
  /** Host node per page of the window, -1 when not present or not queryable. */
  node: Int16Array;
  /** Pages the kernel answered with an error other than "not present". */
  unqueryable: number;
  longestCallMs: number;
}

/**
 * Host node of pages [base, base + totalPages) of the VM's page numbering, given the address
 * runs that cover them (placement-cache.ts windowRuns), queried `batch` pages per call.
 */
export function queryWindow(pid: number, runs: readonly AddressRun[], base: number, totalPages: number, batch = DEFAULT_BATCH): WindowPlacement {
  const node = new Int16Array(totalPages).fill(-1);
  const st = new Int32Array(batch);
  let unqueryable = 0;
  let longest = 0;
  for (const r of runs) {
    for (let off = 0; off < r.pages; off += batch) {
      const n = Math.min(batch, r.pages - off);
      const t = performance.now();
      queryPageRun(pid, r.start + off * PAGE_BYTES, n, st, batch);
      longest = Math.max(longest, performance.now() - t);
      const first = r.firstPage - base + off;
      for (let i = 0; i < n; i++) {
        const v = st[i]!;
        if (v >= 0) node[first + i] = v;
        else if (v !== -ENOENT) unqueryable++;
      }
    }
  }
  return { node, unqueryable, longestCallMs: longest };
}
