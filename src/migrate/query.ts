/**
 * Where a run of pages sits, for the daemon's per-round placement of whole VMs (millions of
 * pages): move_pages in query mode in batches, without a BigInt per page — addresses are written
 * as two 32-bit halves into one reused buffer, so a round leaves no garbage for the GC to chase.
 */
import { VmtierError } from '../errors.js';
import { movePagesRaw } from '../sys/syscalls.js';
import { DEFAULT_BATCH } from './move.js';

const PAGE_BYTES = 4096;
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
