/**
 * Where a window of the VM's page numbering sits, for the daemon's placement cache (millions of
 * pages over the rotation): the address runs of the window queried with src/sys's
 * queryPageNodes, the one placement query, `batch` pages per call into reused buffers, so a
 * round leaves no garbage for the GC to chase.
 */
import { ENOENT } from '../errno.js';
import { VmtierError } from '../errors.js';
import { MOVE_PAGES_BATCH, queryPageNodes } from '../sys/syscalls.js';
import { PAGE_SIZE as PAGE_BYTES } from '../units.js';
import type { AddressRun } from './placement-cache.js';

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
 * runs that cover them (placement-cache.ts windowRuns), queried `batch` pages per call. With
 * `into` (totalPages long) the answers are written there, each page as its call returns, and
 * `node` is `into`: no array per window.
 */
export function queryWindow(pid: number, runs: readonly AddressRun[], base: number, totalPages: number, batch = MOVE_PAGES_BATCH, into?: Int16Array): WindowPlacement {
  if (into && into.length !== totalPages) throw new VmtierError('INVALID_INPUT', `placement window of ${totalPages} pages given ${into.length} to write`);
  const covered = runs.reduce((a, r) => a + r.pages, 0);
  const node = into ? (covered < totalPages ? into.fill(-1) : into) : new Int16Array(totalPages).fill(-1);
  const size = Math.max(1, batch);
  const addrs = new Float64Array(size);
  const st = new Int32Array(size);
  let unqueryable = 0;
  let longest = 0;
  for (const r of runs) {
    for (let off = 0; off < r.pages; off += size) {
      const n = Math.min(size, r.pages - off);
      const from = r.start + off * PAGE_BYTES;
      for (let i = 0; i < n; i++) addrs[i] = from + i * PAGE_BYTES;
      const t = performance.now();
      queryPageNodes(pid, n === size ? addrs : addrs.subarray(0, n), size, st);
      longest = Math.max(longest, performance.now() - t);
      const first = r.firstPage - base + off;
      for (let i = 0; i < n; i++) {
        const v = st[i]!;
        node[first + i] = v >= 0 ? v : -1;
        if (v < 0 && v !== -ENOENT) unqueryable++;
      }
    }
  }
  return { node, unqueryable, longestCallMs: longest };
}
