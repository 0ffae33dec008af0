/**
 * A VM loop's worker thread: everything of a round that is long and synchronous runs here, so it
 * never holds node's main thread (the API, the other VMs' loops):
 *  - move_pages(2) queries and moves, which the kernel may hold for a long time (one 1024-page
 *    call on a running TCG guest took 1.7 s on this machine under load);
 *  - the tracker's scans: the kmod and replay trackers live here whole (reads, decoding, counts
 *    per page written into the round's shared buffer), and the DAMON tracker's data path
 *    (thousands of sysfs region reads, counts, pagemap) runs here while its kdamond ownership
 *    stays with the main thread's pool.
 * One thread per VM: a VM stuck in the kernel delays only itself.
 */
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { KernelError, VmtierError } from '../errors.js';
import { MoveScratch, moveBatch, type BatchMove } from '../migrate/move.js';
import type { AddressRun } from '../migrate/placement-cache.js';
import { QueryScratch, queryWindow, type UnitRun, type WindowPlacement } from '../migrate/query.js';
import { createTracker, type ScanResult, type Tracker, type TrackerOptions } from '../scan/index.js';
import type { HvaRange } from '../units.js';
import { scanKdamond, type DamonScanJob } from '../scan/damon-scan.js';
import { threadHeap as heap, type WorkerHeap } from './thread-heap.js';

export type VmThreadRequest =
  | { op: 'query'; id: number; pid: number; segments: AddressRun[]; base: number; totalPages: number; batch: number; units?: UnitRun[] }
  | { op: 'move'; id: number; pid: number; addrs: Float64Array; target: number; batch: number }
  | { op: 'trackerOpen'; id: number; name: string; options: TrackerOptions }
  | { op: 'trackerTrack'; id: number; pid: number; ranges: HvaRange[] }
  | { op: 'trackerScan'; id: number; scans: number; intervalMs: number; counts: Uint8Array }
  | { op: 'trackerClose'; id: number }
  | { op: 'damonScan'; id: number; job: DamonScanJob; scans: number; intervalMs: number; counts: Uint8Array }
  | { op: 'abort'; id: number; target: number };

export type QueryResult = WindowPlacement;
export type MoveResult = BatchMove;

type Result = QueryResult | MoveResult | ScanResult | null;

export type VmThreadReply = (
  | { id: number; ok: true; result: Result }
  | { id: number; ok: false; error: { name: string; code?: string; message: string; errno?: number; syscall?: string; details?: Record<string, unknown> } }
) & { heap?: WorkerHeap };


/** The VM's tracker (kmod, replay), when it runs here. */
let tracker: Tracker | null = null;
/**
 * Scans in progress, by request id: a scan is aborted by message (it yields between passes and
 * while it waits), so the thread and the tracker's resources (the kmod device's fd) survive it.
 */
const scans = new Map<number, AbortController>();
/** The placement query's and the mover's per-call buffers: batch-sized, reused by every round of this VM. */
const queryScratch = new QueryScratch();
const moveScratch = new MoveScratch();

/**
 * A scan's counts are the caller's memory (a view on its SharedArrayBuffer, written in place):
 * only the mapping runs travel back, one small buffer per range.
 */
function scanTransfer(r: ScanResult): ArrayBuffer[] {
  return r.ranges.map((x) => x.mapped.buffer as ArrayBuffer);
}

// On Linux setpriority(PRIO_PROCESS, 0) sets the calling thread's nice value: this thread's CPU
// work (scans, decoding) yields to node's main thread, which serves the API and the loops.
try {
  setPriority(0, 10);
} catch {
  // Not permitted (containers may forbid it): the thread still keeps work off the main thread.
}

async function run(m: VmThreadRequest): Promise<{ result: Result; transfer: ArrayBuffer[] }> {
  switch (m.op) {
    case 'trackerOpen': {
      const old = tracker;
      tracker = null;
      await old?.close();
      tracker = createTracker(m.name, m.options);
      return { result: null, transfer: [] };
    }
    case 'trackerTrack':
      if (!tracker) throw new VmtierError('TRACKER_UNAVAILABLE', 'no tracker in this VM thread (it was restarted)');
      await tracker.track(m.pid, m.ranges);
      return { result: null, transfer: [] };
    case 'trackerScan': {
      if (!tracker) throw new VmtierError('TRACKER_UNAVAILABLE', 'no tracker in this VM thread (it was restarted)');
      const ac = new AbortController();
      scans.set(m.id, ac);
      try {
        const r = await tracker.scan({ scans: m.scans, intervalMs: m.intervalMs, counts: m.counts, signal: ac.signal });
        return { result: r, transfer: scanTransfer(r) };
      } finally {
        scans.delete(m.id);
      }
    }
    case 'trackerClose': {
      const old = tracker;
      tracker = null;
      await old?.close();
      return { result: null, transfer: [] };
    }
    case 'damonScan': {
      const ac = new AbortController();
      scans.set(m.id, ac);
      try {
        const r = await scanKdamond(m.job, { scans: m.scans, intervalMs: m.intervalMs, counts: m.counts, signal: ac.signal });
        return { result: r, transfer: scanTransfer(r) };
      } finally {
        scans.delete(m.id);
      }
    }
    case 'abort':
      scans.get(m.target)?.abort(new VmtierError('VM_GONE', 'scan aborted'));
      return { result: null, transfer: [] };
    case 'query': {
      // Answered as runs (three small arrays, transferred); the per-call buffers are the thread's, reused.
      const r = queryWindow(m.pid, m.segments, m.base, m.totalPages, m.batch, queryScratch, m.units);
      return { result: r, transfer: [r.runs.starts.buffer, r.runs.lengths.buffer, r.runs.nodes.buffer] as ArrayBuffer[] };
    }
    case 'move': {
      const r = moveBatch(m.pid, m.addrs, m.target, m.batch, moveScratch);
      return { result: r, transfer: [r.reached.buffer as ArrayBuffer] };
    }
  }
}

parentPort?.on('message', (m: VmThreadRequest) => {
  run(m).then(
    ({ result, transfer }) => parentPort!.postMessage({ id: m.id, ok: true, result, heap: heap() } satisfies VmThreadReply, transfer),
    (e: unknown) => {
      const err = e as Error & { code?: string };
      const k = e instanceof KernelError ? { errno: e.errno, syscall: e.syscall } : {};
      const details = e instanceof VmtierError && e.details ? { details: JSON.parse(JSON.stringify(e.details)) as Record<string, unknown> } : {};
      parentPort!.postMessage({ id: m.id, ok: false, error: { name: err.name, code: err.code, message: err.message, ...k, ...details }, heap: heap() } satisfies VmThreadReply);
    },
  );
});
