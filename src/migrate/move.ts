/**
 * Moving pages of a process to a NUMA node with move_pages(2), in batches, counting every
 * page's outcome. Failures are per page (the kernel reports them in status[]), never thrown
 * away: callers see how many pages moved, were busy, not present, out of memory, and which.
 */
import { MOVE_PAGES_BATCH, MOVE_STATUS_UNSET, MPOL_MF_MOVE, movePagesRaw, queryPageNodes } from '../sys/syscalls.js';
import { EAGAIN, EBUSY, EFAULT, ENOENT, ENOMEM, errnoName } from '../errno.js';
import { KernelError } from '../errors.js';
import { addMoveCounts, emptyMoveCounts, type MoveClass, type MoveCounts } from './counts.js';

/** Pages per move_pages call (src/sys/syscalls.ts). */
export const DEFAULT_BATCH = MOVE_PAGES_BATCH;

export interface MoveOutcome extends MoveCounts {
  /** Pages that ended on the target node (already there counts as moved). */
  moved: number;
  /**
   * Count per raw result: "node:N", or the errno name, or "nostatus"/"ENOMEM" for pages the kernel
   * gave no status for. Raw: such a page found on the target node afterwards counts as moved.
   */
  byStatus: Record<string, number>;
  /** First failures (address + errno name), at most `maxFailures`. */
  failures: Array<{ addr: number; error: string }>;
  calls: number;
}

export interface MoveOptions {
  batch?: number;
  flags?: number;
  maxFailures?: number;
  /** Checked between batches: a destroyed VM or stopping daemon ends the move early. */
  signal?: AbortSignal;
  onBatch?: (done: number, total: number) => void;
  /** Set to 1 for every page that ended on the target node (same length as addrs): vmtier's own record of its moves. */
  reached?: Uint8Array;
  /** Per-batch buffers to reuse (the VM thread keeps one): without it each call allocates its own, batch-sized. */
  scratch?: MoveScratch;
}

/**
 * A move's per-batch buffers (addresses as 64-bit words, target nodes, the kernel's statuses,
 * recheck addresses and answers, arrival flags), `batch` entries each: grown once to the batch and reused by every
 * batch and every call given the same scratch, so moving a million pages allocates no array
 * sized by them.
 */
export class MoveScratch {
  words = new BigUint64Array(0);
  nodes = new Int32Array(0);
  recheck = new Float64Array(0);
  where = new Int32Array(0);
  /** The kernel's status per page of a batch (all unset for a batch it refused whole, ENOMEM). */
  status = new Int32Array(0);
  onTarget = new Uint8Array(0);

  ensure(n: number): void {
    if (this.words.length >= n) return;
    this.words = new BigUint64Array(n);
    this.nodes = new Int32Array(n);
    this.recheck = new Float64Array(n);
    this.where = new Int32Array(n);
    this.status = new Int32Array(n);
    this.onTarget = new Uint8Array(n);
  }

  get bytes(): number {
    return this.words.byteLength + this.nodes.byteLength + this.recheck.byteLength + this.where.byteLength + this.status.byteLength + this.onTarget.byteLength;
  }
}

export function classifyStatus(status: number, target: number): MoveClass {
  if (status === target) return 'moved';
  if (status >= 0) return 'other';
  switch (-status) {
    case EBUSY: // page pinned or under I/O
    case EAGAIN:
      return 'busy';
    case ENOENT: // not present (never touched, or swapped)
      return 'notPresent';
    case ENOMEM: // target node full
      return 'noMemory';
    case EFAULT: // not a movable mapping (devdax, VM_PFNMAP, ...)
      return 'fault';
    default:
      return 'other';
  }
}

export function emptyOutcome(): MoveOutcome {
  return {
    ...emptyMoveCounts(),
    moved: 0,
    byStatus: {},
    failures: [],
    calls: 0,
  };
}

/** Moves `addrs` (page-aligned) of `pid` to `node`. Throws KernelError only when a whole call fails (e.g. ESRCH). */
export function movePagesToNode(pid: number, addrs: ArrayLike<number>, node: number, opts: MoveOptions = {}): MoveOutcome {
  const batch = Math.max(1, opts.batch ?? DEFAULT_BATCH);
  const maxFailures = opts.maxFailures ?? 64;
  const out = emptyOutcome();
  out.requested = addrs.length;
  const scratch = opts.scratch ?? new MoveScratch();
  scratch.ensure(Math.min(batch, addrs.length));
  for (let off = 0; off < addrs.length; off += batch) {
    if (opts.signal?.aborted) break;
    const n = Math.min(batch, addrs.length - off);
    // 64-bit addresses written as two 32-bit halves (x86_64 is little-endian): no BigInt per page.
    const slice = scratch.words.subarray(0, n);
    const halves = new Uint32Array(slice.buffer, slice.byteOffset, 2 * n);
    for (let i = 0; i < n; i++) {
      const a = addrs[off + i]!;
      halves[2 * i] = a % 0x1_0000_0000;
      halves[2 * i + 1] = Math.floor(a / 0x1_0000_0000);
    }
    const addrAt = (i: number) => addrs[off + i]!;
    const nodes = scratch.nodes.subarray(0, n).fill(node);
    let status: Int32Array;
    // Pages the kernel reported nothing for (seen on 6.12 in the lab): a positive return (some
    // pages pinned: no status for the batch at all), or ENOMEM for the whole call once the
    // target node is full (while earlier pages of the batch did move).
    let unreported: { cls: MoveClass; key: string } = { cls: 'busy', key: 'nostatus' };
    try {
      status = movePagesRaw(pid, slice, nodes, opts.flags ?? MPOL_MF_MOVE, scratch.status);
    } catch (e) {
      if (!(e instanceof KernelError) || e.errno !== ENOMEM) throw e;
      status = scratch.status.subarray(0, n).fill(MOVE_STATUS_UNSET);
      unreported = { cls: 'noMemory', key: 'ENOMEM' };
    }
    out.calls++;
    // Those, and EBUSY (also given for the second 4 KiB address of a THP that the first address
    // already moved), are checked with a query: a page on the target node moved.
    const onTarget = scratch.onTarget.subarray(0, n).fill(0);
    let rechecks = 0;
    for (let i = 0; i < n; i++) if (status[i] === MOVE_STATUS_UNSET || status[i] === -EBUSY) scratch.recheck[rechecks++] = addrAt(i);
    if (rechecks > 0) {
      // One query call for the batch's rechecks (rechecks <= n <= batch).
      const where = queryPageNodes(pid, scratch.recheck.subarray(0, rechecks), batch, scratch.where);
      out.calls++;
      let k = 0;
      for (let i = 0; i < n; i++) if (status[i] === MOVE_STATUS_UNSET || status[i] === -EBUSY) onTarget[i] = where[k++] === node ? 1 : 0;
    }
    const keyOf = (s: number) => (s === MOVE_STATUS_UNSET ? unreported.key : s >= 0 ? `node:${s}` : errnoName(-s));
    // Raw status → pages, folded into byStatus once per batch: no string per page on the hot path.
    const rawCounts = new Map<number, number>();
    let onNode = 0;
    for (let i = 0; i < n; i++) {
      const s = status[i]!;
      if (s === node) {
        onNode++;
        continue;
      }
      rawCounts.set(s, (rawCounts.get(s) ?? 0) + 1);
      const cls = onTarget[i] ? 'moved' : s === MOVE_STATUS_UNSET ? unreported.cls : classifyStatus(s, node);
      out.byClass[cls]++;
      if (cls !== 'moved' && out.failures.length < maxFailures) out.failures.push({ addr: addrAt(i), error: keyOf(s) });
    }
    out.byClass.moved += onNode;
    if (onNode > 0) rawCounts.set(node, onNode);
    if (opts.reached) for (let i = 0; i < n; i++) if (status[i] === node || onTarget[i]) opts.reached[off + i] = 1;
    // The kernel's own answers, even where the query showed the page moved after all.
    for (const [s, c] of rawCounts) out.byStatus[keyOf(s)] = (out.byStatus[keyOf(s)] ?? 0) + c;
    opts.onBatch?.(off + n, addrs.length);
  }
  out.moved = out.byClass.moved;
  return out;
}

/** One mover batch carried out: its counts, which addresses arrived, the longest single call. */
export interface BatchMove {
  counts: MoveCounts;
  /** 1 for every address that ended on the target node. */
  reached: Uint8Array;
  longestCallMs: number;
}

/**
 * Moves `addrs` to `target`, `batch` pages per move_pages call (each call holds the process's
 * mmap lock: the batch bounds how long), counting outcomes in the mover's MoveCounts.
 */
export function moveBatch(pid: number, addrs: Float64Array, target: number, batch = DEFAULT_BATCH, scratch = new MoveScratch()): BatchMove {
  const counts = emptyMoveCounts();
  let longest = 0;
  const reached = new Uint8Array(addrs.length);
  for (let off = 0; off < addrs.length; off += batch) {
    const t = performance.now();
    const o = movePagesToNode(pid, addrs.subarray(off, off + batch), target, { maxFailures: 0, reached: reached.subarray(off, off + batch), scratch });
    longest = Math.max(longest, performance.now() - t);
    addMoveCounts(counts, { requested: o.requested, byClass: o.byClass });
  }
  return { counts, reached, longestCallMs: longest };
}
