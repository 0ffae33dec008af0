/**
 * The main-thread side of a VM loop's worker thread (vm-thread.ts): typed requests, answered in
 * order; errors come back as the same typed errors (KernelError with errno, so ESRCH still means
 * "VM gone"). Closing terminates the thread at once, even inside a blocked system call's wait.
 */
import { Worker } from 'node:worker_threads';
import { KernelError, VmtierError, type ErrorCode } from '../errors.js';
import type { AddressRun } from '../migrate/placement-cache.js';
import type { UnitRun } from '../migrate/query.js';
import type { DamonScanJob } from '../scan/damon-scan.js';
import type { ScanResult, TrackerOptions } from '../scan/index.js';
import type { HvaRange } from '../units.js';
import type { WorkerHeap } from './thread-heap.js';
import type { MoveResult, QueryResult, VmThreadReply, VmThreadRequest } from './vm-thread.js';

/**
 * The VM thread's young generation, MiB. V8's default (16 MiB semi-spaces) is sized for a main
 * thread; a VM thread allocates little between rounds, and every VM pays for its own isolate
 * (bench:scale: ~40 MiB of RSS per VM). Smaller, it is scavenged more often, which also frees the
 * batch-sized buffers a placement query leaves (external memory) sooner.
 */
export const WORKER_YOUNG_MB = 4;

type Pending = { resolve: (r: unknown) => void; reject: (e: Error) => void };
type Body<T> = T extends unknown ? Omit<T, 'id'> : never;
/** A scan request before its counts buffer is chosen (scanInto). */
type ScanCall = Body<Extract<VmThreadRequest, { op: 'trackerScan' | 'damonScan' }>> extends infer B ? (B extends unknown ? Omit<B, 'counts'> : never) : never;

export class VmWorker {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** The thread's V8 heap as of its newest reply; null before the first one and after the thread ended. */
  heap: WorkerHeap | null = null;

  private get(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL('./vm-thread.js', import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_MB } });
    w.on('message', (r: VmThreadReply) => {
      if (r.heap && this.worker === w) this.heap = r.heap;
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r.result);
      else if (r.error.errno !== undefined) p.reject(new KernelError(r.error.syscall ?? 'syscall', r.error.errno, r.error.message));
      else p.reject(new VmtierError((r.error.code as ErrorCode | undefined) ?? 'INVALID_INPUT', r.error.message, r.error.details));
    });
    const fail = (why: string) => {
      if (this.worker !== w) return;
      this.worker = null;
      this.heap = null;
      for (const [, p] of this.pending) p.reject(new VmtierError('UNSUPPORTED', `VM worker thread ${why}`));
      this.pending.clear();
    };
    w.on('error', (e) => fail(`failed: ${e.message}`));
    w.on('exit', (code) => fail(`exited (${code})`));
    this.worker = w;
    return w;
  }

  /**
   * `soft`: the request (a scan) yields in the thread, so an abort is a message and the thread
   * lives on with its tracker; otherwise the thread may be inside a system call and is replaced.
   */
  private call<R>(req: Body<VmThreadRequest>, signal?: AbortSignal, transfer: ArrayBuffer[] = [], soft = false): Promise<R> {
    const w = this.get();
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        this.pending.delete(id);
        reject(signal!.reason);
        if (soft && this.worker === w) w.postMessage({ op: 'abort', id: this.nextId++, target: id } satisfies VmThreadRequest);
        else void this.close();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        resolve: (r) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(r as R);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      });
      w.postMessage({ ...req, id } as VmThreadRequest, transfer);
    });
  }

  /**
   * Host node of pages [base, base + totalPages) of the page numbering, given the address runs that
   * cover them (src/migrate/query.ts queryWindow), answered as runs of pages on one node; pages
   * of `units` (huge units the tracker saw) are asked once per unit.
   */
  query(pid: number, runs: AddressRun[], base: number, totalPages: number, batch: number, signal?: AbortSignal, units?: UnitRun[]): Promise<QueryResult> {
    return this.call<QueryResult>({ op: 'query', pid, segments: runs, base, totalPages, batch, ...(units && units.length > 0 ? { units } : {}) }, signal);
  }

  move(pid: number, addrs: Float64Array, target: number, batch: number, signal?: AbortSignal): Promise<MoveResult> {
    return this.call<MoveResult>({ op: 'move', pid, addrs, target, batch }, signal, [addrs.buffer as ArrayBuffer]);
  }

  /** Creates the VM's tracker in the thread (kmod, replay: they live there whole). */
  trackerOpen(name: string, options: TrackerOptions): Promise<void> {
    return this.call<void>({ op: 'trackerOpen', name, options });
  }

  trackerTrack(pid: number, ranges: HvaRange[], signal?: AbortSignal): Promise<void> {
    return this.call<void>({ op: 'trackerTrack', pid, ranges }, signal);
  }

  /** One round of the thread's tracker into `counts` (see scanInto). */
  trackerScan(scans: number, intervalMs: number, counts: Uint8Array, signal?: AbortSignal): Promise<ScanResult> {
    return this.scanInto({ op: 'trackerScan', scans, intervalMs }, counts, signal);
  }

  /**
   * Closes the thread's tracker (its device fd lives in this process); with no thread running
   * there is nothing to close. A thread stuck in the kernel longer than `timeoutMs` is left to close().
   */
  async trackerClose(timeoutMs = 5000): Promise<void> {
    if (!this.worker) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    try {
      await Promise.race([this.call<void>({ op: 'trackerClose' }), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The DAMON tracker's data path for one round (src/scan/damon-scan.ts), in the thread. */
  damonScan(job: DamonScanJob, scans: number, intervalMs: number, counts: Uint8Array, signal?: AbortSignal): Promise<ScanResult> {
    return this.scanInto({ op: 'damonScan', job, scans, intervalMs }, counts, signal);
  }

  /**
   * A scan in the thread writes `counts` in place when it sits on a SharedArrayBuffer (the round's
   * buffer: nothing per page is allocated, transferred or copied); a private buffer cannot be
   * reached from the thread, so it gets the counts copied in from a shared one.
   */
  private async scanInto(req: ScanCall, counts: Uint8Array, signal?: AbortSignal): Promise<ScanResult> {
    const shared = counts.buffer instanceof SharedArrayBuffer ? counts : new Uint8Array(new SharedArrayBuffer(counts.length));
    const r = await this.call<ScanResult>({ ...req, counts: shared } as Body<VmThreadRequest>, signal, [], true);
    if (shared !== counts) counts.set(shared);
    return r;
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    this.heap = null;
    for (const [, p] of this.pending) p.reject(new VmtierError('VM_GONE', 'VM worker closed'));
    this.pending.clear();
    if (w) await w.terminate();
  }
}
