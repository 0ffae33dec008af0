/**
 * Host node per page of a VM, kept as runs of consecutive pages on the same node instead of one
 * entry per 4 KiB page (issue 13: the placement cache was 2 bytes per page). A run costs 6 bytes
 * (its first page, Int32; its node, Int16) whatever its length: a VM whose memory sits in a few
 * long stretches per node — THP-backed, mostly untouched, or demoted in large cold regions —
 * costs a few hundred bytes whatever its size. The worst case, nodes alternating page by page,
 * is 6 bytes per page (3× the old array); `bytes` reports what the runs really hold.
 */
import { VmtierError } from '../errors.js';

/** Sorted, disjoint runs `[start, start + length)` of one node each, built in order (a query's answer, a batch of moves). */
export class RunList {
  starts: Int32Array;
  lengths: Int32Array;
  nodes: Int16Array;
  count = 0;

  constructor(capacity = 16) {
    const c = Math.max(1, capacity);
    this.starts = new Int32Array(c);
    this.lengths = new Int32Array(c);
    this.nodes = new Int16Array(c);
  }

  /** Appends pages [start, start + length) on `node`; extends the last run when it ends at `start` on the same node. */
  push(start: number, length: number, node: number): void {
    if (length <= 0) return;
    const k = this.count - 1;
    if (k >= 0) {
      const end = this.starts[k]! + this.lengths[k]!;
      if (start < end) throw new VmtierError('INVALID_INPUT', `run at page ${start} starts before the previous run's end ${end}`);
      if (end === start && this.nodes[k] === node) {
        this.lengths[k] = this.lengths[k]! + length;
        return;
      }
    }
    if (this.count === this.starts.length) this.grow();
    this.starts[this.count] = start;
    this.lengths[this.count] = length;
    this.nodes[this.count] = node;
    this.count++;
  }

  private grow(): void {
    const c = this.starts.length * 2;
    const s = new Int32Array(c);
    const l = new Int32Array(c);
    const n = new Int16Array(c);
    s.set(this.starts);
    l.set(this.lengths);
    n.set(this.nodes);
    this.starts = s;
    this.lengths = l;
    this.nodes = n;
  }

  /** Pages the runs cover. */
  pages(): number {
    let n = 0;
    for (let i = 0; i < this.count; i++) n += this.lengths[i]!;
    return n;
  }

  /** A copy trimmed to its runs (to send to another thread: three small buffers, transferable). */
  trimmed(): { starts: Int32Array; lengths: Int32Array; nodes: Int16Array; count: number } {
    return { starts: this.starts.slice(0, this.count), lengths: this.lengths.slice(0, this.count), nodes: this.nodes.slice(0, this.count), count: this.count };
  }

  /** Runs of the sorted pages of `pages` (copied and sorted here), all on `node`. */
  static ofPages(pages: ArrayLike<number>, node: number): RunList {
    const sorted = Int32Array.from(pages as ArrayLike<number>).sort();
    const out = new RunList(16);
    for (let i = 0; i < sorted.length; ) {
      let j = i + 1;
      while (j < sorted.length && sorted[j]! <= sorted[j - 1]! + 1) j++;
      // Duplicates fold into the run (<= above); the run is [first, last + 1).
      out.push(sorted[i]!, sorted[j - 1]! - sorted[i]! + 1, node);
      i = j;
    }
    return out;
  }
}

/** What a run list looks like after crossing a thread (plain typed arrays). */
export type RunListData = Pick<RunList, 'starts' | 'lengths' | 'nodes' | 'count'>;

/** Runs covering pages [0, totalPages) end to end: run i is [starts[i], starts[i + 1]) (the last ends at totalPages). */
export class NodeRuns {
  private starts: Int32Array;
  private nodes: Int16Array;
  private n = 0;
  /** The other pair of arrays: apply() writes there and swaps, so a round allocates nothing while the run count holds. */
  private spareStarts: Int32Array;
  private spareNodes: Int16Array;

  constructor(readonly totalPages: number, node = -1) {
    if (!Number.isInteger(totalPages) || totalPages < 0 || totalPages >= 2 ** 31) throw new VmtierError('INVALID_INPUT', `page count ${totalPages} out of range`);
    this.starts = new Int32Array(4);
    this.nodes = new Int16Array(4);
    this.spareStarts = new Int32Array(4);
    this.spareNodes = new Int16Array(4);
    if (totalPages > 0) {
      this.starts[0] = 0;
      this.nodes[0] = node;
      this.n = 1;
    }
  }

  /** Runs built from a node per page (tests, and callers that still hold a dense array). */
  static fromArray(node: ArrayLike<number>): NodeRuns {
    const r = new NodeRuns(node.length);
    const l = new RunList();
    for (let p = 0; p < node.length; ) {
      let q = p + 1;
      while (q < node.length && node[q] === node[p]) q++;
      l.push(p, q - p, node[p]!);
      p = q;
    }
    r.apply(l);
    return r;
  }

  get runs(): number {
    return this.n;
  }

  /** Bytes the runs hold (both pairs of arrays, capacity included). */
  get bytes(): number {
    return this.starts.byteLength + this.nodes.byteLength + this.spareStarts.byteLength + this.spareNodes.byteLength;
  }

  private endOf(i: number): number {
    return i + 1 < this.n ? this.starts[i + 1]! : this.totalPages;
  }

  /** Index of the run holding page p (binary search). */
  private runOf(p: number): number {
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= p) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Host node of page p (-1: not present or unknown). */
  nodeAt(p: number): number {
    if (p < 0 || p >= this.totalPages) throw new VmtierError('INVALID_INPUT', `page ${p} is outside the ${this.totalPages} pages`);
    return this.nodes[this.runOf(p)]!;
  }

  /** Calls fn(start, end, node) for each run's part inside [from, to), in order. */
  forEach(from: number, to: number, fn: (start: number, end: number, node: number) => void): void {
    const lo = Math.max(0, from);
    const hi = Math.min(this.totalPages, to);
    if (lo >= hi) return;
    for (let i = this.runOf(lo); i < this.n; i++) {
      const s = this.starts[i]!;
      if (s >= hi) break;
      fn(Math.max(s, lo), Math.min(this.endOf(i), hi), this.nodes[i]!);
    }
  }

  /** A node per page of [from, to) (tests and diagnostics: per page, so never on the daemon's path). */
  toArray(from = 0, to = this.totalPages): Int16Array {
    const out = new Int16Array(Math.max(0, to - from));
    this.forEach(from, to, (s, e, node) => out.fill(node, s - from, e - from));
    return out;
  }

  /**
   * Overwrites the pages `updates` covers with their nodes; pages it does not cover keep theirs.
   * One pass over the runs and the updates (both sorted): O(runs + updates), no per-page work.
   */
  apply(updates: RunListData): void {
    let os = this.spareStarts;
    let on = this.spareNodes;
    let m = 0;
    const push = (start: number, node: number) => {
      if (m > 0 && on[m - 1] === node) return;
      if (m === os.length) {
        const s = new Int32Array(os.length * 2);
        const nn = new Int16Array(os.length * 2);
        s.set(os);
        nn.set(on);
        os = s;
        on = nn;
      }
      os[m] = start;
      on[m] = node;
      m++;
    };
    let i = 0;
    // Old runs' nodes over [from, to).
    const old = (from: number, to: number) => {
      while (from < to) {
        while (this.endOf(i) <= from) i++;
        push(from, this.nodes[i]!);
        from = Math.min(this.endOf(i), to);
      }
    };
    let pos = 0;
    for (let k = 0; k < updates.count; k++) {
      const s = updates.starts[k]!;
      const e = s + updates.lengths[k]!;
      if (s < pos || e > this.totalPages) throw new VmtierError('INVALID_INPUT', `placement update [${s}, ${e}) is not sorted or outside the ${this.totalPages} pages`);
      if (e === s) continue;
      old(pos, s);
      push(s, updates.nodes[k]!);
      pos = e;
    }
    old(pos, this.totalPages);
    this.spareStarts = this.starts;
    this.spareNodes = this.nodes;
    this.starts = os;
    this.nodes = on;
    this.n = m;
    // The spare pair must hold as many runs as the next apply may produce from these.
    if (this.spareStarts.length < this.starts.length) {
      this.spareStarts = new Int32Array(this.starts.length);
      this.spareNodes = new Int16Array(this.starts.length);
    }
    this.shrink();
  }

  /** After the runs shrank to a quarter of their capacity, so do the arrays (a fragmented phase does not stay resident). */
  private shrink(): void {
    const cap = this.starts.length;
    if (cap <= 64 || this.n * 4 > cap) return;
    const c = Math.max(64, this.n * 2);
    this.starts = this.starts.slice(0, c);
    this.nodes = this.nodes.slice(0, c);
    this.spareStarts = new Int32Array(c);
    this.spareNodes = new Int16Array(c);
  }
}
