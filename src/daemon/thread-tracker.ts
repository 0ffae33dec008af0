/**
 * A tracker that lives in the VM's worker thread (vm-thread.ts), seen from the main thread
 * through the Tracker interface. The kmod tracker reads and decodes with synchronous reads and
 * the replay tracker counts every page: here neither holds the main thread. The DAMON tracker
 * is not one of these (its kdamond ownership is shared by every VM of the process, on the main
 * thread); only its scans run in the worker (`DamonTrackerOptions.scanRunner`).
 */
import { DamonTracker } from '../scan/damon.js';
import type { ScanRequest, ScanResult, Tracker, TrackerOptions } from '../scan/index.js';
import type { HvaRange } from '../units.js';
import { checkScanRequest } from '../scan/request.js';
import { normalizeRanges, totalPages } from '../scan/runs.js';
import type { VmWorker } from './vm-worker.js';

export class ThreadTracker implements Tracker {
  private opened = false;
  /** Pages tracked, to check a request's counts here rather than after a trip to the thread. */
  private trackedPages = 0;

  constructor(
    private readonly worker: VmWorker,
    readonly name: string,
    private readonly options: TrackerOptions,
  ) {}

  async track(pid: number, ranges: readonly HvaRange[]): Promise<void> {
    if (!this.opened) {
      await this.worker.trackerOpen(this.name, this.options);
      this.opened = true;
    }
    await this.worker.trackerTrack(pid, ranges.map((r) => ({ start: r.start, end: r.end })));
    this.trackedPages = totalPages(normalizeRanges(ranges));
  }

  async scan(req: ScanRequest): Promise<ScanResult> {
    checkScanRequest(req, this.trackedPages);
    return await this.worker.trackerScan(req.scans, req.intervalMs, req.counts, req.signal);
  }

  async close(): Promise<void> {
    if (!this.opened) return;
    this.opened = false;
    await this.worker.trackerClose();
  }
}

/**
 * The VM's tracker, with its scans off the main thread: DAMON here with its reads in the worker
 * (unless a test hands it its own sysfs io, which only this thread can reach), anything else whole
 * in the worker.
 */
export function createVmTracker(worker: VmWorker, name: string, options: TrackerOptions): Tracker {
  if (name === 'damon') {
    const damon = options.damon ?? {};
    return new DamonTracker(damon.io ? damon : { ...damon, scanRunner: (job, req) => worker.damonScan(job, req.scans, req.intervalMs, req.counts, req.signal) });
  }
  return new ThreadTracker(worker, name, options);
}
