/**
 * Where each page of a VM sits, kept from round to round instead of queried whole every round
 * (a move_pages query runs at ≈1.3 M pages/s here: ~200 s per round for 1 TiB of 4 KiB pages).
 *
 * vmtier knows what it moved: a page that reached its target is recorded at once. Everything
 * else — pages the kernel moved (NUMA balancing, demotion in reclaim), pages that became present
 * or were reclaimed — is refreshed by a window that rotates over the VM's pages, so every page is
 * queried again within `refreshRounds` rounds and a round queries about 1/refreshRounds of them.
 * The first round after a (re)layout queries everything. The nodes are kept as runs of pages
 * (node-runs.ts): a VM costs per stretch of pages on one node, not per 4 KiB page.
 */
import { VmtierError } from '../errors.js';
import { PAGE_SIZE } from '../units.js';
import { NodeRuns, RunList, type RunListData } from './node-runs.js';

/** A run of page numbers to query: [first, first + count). */
export interface PageWindow {
  first: number;
  count: number;
}

/** A run of consecutive addresses to query: `pages` pages from `start`, page `firstPage` of the numbering. */
export interface AddressRun {
  start: number;
  pages: number;
  firstPage: number;
}

/**
 * The address runs that cover a window of pages, given the VM's segments (its ranges laid end to
 * end and numbered page by page): a window may span several ranges, a range several windows.
 */
export function windowRuns(segments: ReadonlyArray<{ start: number; firstPage: number; pages: number }>, w: PageWindow): AddressRun[] {
  const end = w.first + w.count;
  const runs: AddressRun[] = [];
  for (const s of segments) {
    const lo = Math.max(s.firstPage, w.first);
    const hi = Math.min(s.firstPage + s.pages, end);
    if (lo < hi) runs.push({ start: s.start + (lo - s.firstPage) * PAGE_SIZE, pages: hi - lo, firstPage: lo });
  }
  return runs;
}

/**
 * Host node of the pages of `w`, as runs (sorted, inside the window; pages in no run are
 * recorded as -1: not present or not queryable). Runs, not a node per page: the VM's thread
 * answers with a few small arrays whatever the window's size.
 */
export type WindowQuery = (w: PageWindow) => Promise<RunListData>;

export class PlacementCache {
  /** Host node per page as runs of consecutive pages on one node (6 bytes per run; node-runs.ts). */
  readonly node: NodeRuns;
  readonly refreshRounds: number;
  private cursor = 0;
  private full = true;
  /** Pages queried by the last refresh (diagnostic). */
  lastQueried = 0;

  constructor(readonly totalPages: number, refreshRounds = 8) {
    if (!Number.isInteger(refreshRounds) || refreshRounds < 1) throw new VmtierError('INVALID_INPUT', `refreshRounds must be >= 1, not ${refreshRounds}`);
    this.refreshRounds = refreshRounds;
    this.node = new NodeRuns(totalPages, -1);
  }

  /** Bytes the cache holds for its pages (the runs' arrays). */
  get bytes(): number {
    return this.node.bytes;
  }

  /** Pages one rotating refresh queries. */
  get windowPages(): number {
    return Math.ceil(this.totalPages / this.refreshRounds);
  }

  /** This round's windows: everything the first time, else the next slice of the rotation (split where it wraps). */
  windows(): PageWindow[] {
    if (this.totalPages === 0) return [];
    if (this.full) return [{ first: 0, count: this.totalPages }];
    const n = Math.min(this.windowPages, this.totalPages);
    const first = this.cursor;
    const tail = Math.min(n, this.totalPages - first);
    return tail === n ? [{ first, count: n }] : [{ first, count: tail }, { first: 0, count: n - tail }];
  }

  /** Queries this round's windows and stores the answers; advances the rotation. */
  async refresh(query: WindowQuery): Promise<void> {
    const ws = this.windows();
    let queried = 0;
    for (const w of ws) {
      const runs = await query(w);
      // The window's pages the answer does not cover are not present: the whole window is rewritten.
      const filled = new RunList(runs.count * 2 + 2);
      let pos = w.first;
      const end = w.first + w.count;
      for (let k = 0; k < runs.count; k++) {
        const s = runs.starts[k]!;
        const e = s + runs.lengths[k]!;
        if (s < pos || e > end) throw new VmtierError('INVALID_INPUT', `placement query answered pages [${s}, ${e}) outside or out of order in window [${w.first}, ${end})`);
        filled.push(pos, s - pos, -1);
        filled.push(s, e - s, runs.nodes[k]!);
        pos = e;
      }
      filled.push(pos, end - pos, -1);
      this.node.apply(filled);
      queried += w.count;
    }
    this.lastQueried = queried;
    if (this.full) this.full = false;
    else if (this.totalPages > 0) this.cursor = (this.cursor + Math.min(this.windowPages, this.totalPages)) % this.totalPages;
  }

  /** Records vmtier's own moves: pages[i] reached `target` where reached[i] is 1 (cost per moved page and per run, not per VM page). */
  recordMoves(pages: ArrayLike<number>, reached: ArrayLike<number>, target: number): void {
    let n = 0;
    for (let i = 0; i < pages.length; i++) if (reached[i]) n++;
    if (n === 0) return;
    const arrived = new Int32Array(n);
    n = 0;
    for (let i = 0; i < pages.length; i++) if (reached[i]) arrived[n++] = pages[i]!;
    this.node.apply(RunList.ofPages(arrived, target));
  }
}
