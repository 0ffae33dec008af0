/**
 * The DAMON tracker's data path, apart from its control: one round of snapshots of a running
 * kdamond's regions turned into per-page counts. The control (ownership, setup, intervals) stays
 * with DamonTracker on the thread that owns the kdamond pool; this part reads thousands of sysfs
 * files and touches every tracked page, so the daemon runs it in the VM's worker thread
 * (`DamonTrackerOptions.scanRunner`). The job is plain data so it can cross threads.
 *
 * It never writes anything but the snapshot command, and never decides about the kdamond: when
 * the target or the kdamond is gone it throws DamonGone and leaves cleanup to the tracker.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { VmtierError, isVmtierError } from '../errors.js';
import { DamonSysfs, nodeSysfsIo, type DamonRegion, type SysfsIo } from './damon-sysfs.js';
import { zeroUnmapped, type MappingRuns } from './mapping-runs.js';
import { processAlive, presentRuns } from './procfs.js';
import { abortError, checkScanRequest } from './request.js';
import { pagesIn, scannedRanges, totalPages } from './runs.js';
import type { ScanRequest, ScanResult } from './tracker.js';
import { PAGE_SIZE, type HvaRange } from '../units.js';

export interface DamonScanJob {
  sysfsRoot: string;
  procRoot: string;
  kdamond: number;
  pid: number;
  /** Normalized (sorted, disjoint) tracked ranges. */
  ranges: HvaRange[];
  /** The kdamond's aggregation interval now (snapshots are requested half of it apart). */
  aggrMs: number;
  minAccesses: number;
}

/** Runs a scan job somewhere (in-process, or in a worker thread). */
export type DamonScanRunner = (job: DamonScanJob, req: ScanRequest) => Promise<ScanResult>;

/** The target exited mid-scan: the tracker cleans up and reports ESRCH. */
export const DAMON_GONE = 'damon-target-gone';
/**
 * The kdamond stopped mid-scan while its target lives: someone else turned it off (or took its
 * targets away, which stops it too). vmtier turns its kdamonds off only when it closes them.
 */
export const DAMON_STOPPED = 'damon-kdamond-stopped';

function gone(why: string): VmtierError {
  return new VmtierError('KERNEL_ERROR', why, { reason: DAMON_GONE });
}

export function damonStoppedError(k: number, pid: number): VmtierError {
  return new VmtierError('KERNEL_ERROR',
    `kdamond ${k} (vmtier's, tracking process ${pid}) was turned off by another writer during the scan`, { reason: DAMON_STOPPED, kdamond: k, pid });
}

export function isDamonGone(e: unknown): boolean {
  return isVmtierError(e, 'KERNEL_ERROR') && (e as VmtierError).details?.reason === DAMON_GONE;
}

export function isDamonStopped(e: unknown): boolean {
  return isVmtierError(e, 'KERNEL_ERROR') && (e as VmtierError).details?.reason === DAMON_STOPPED;
}

/** true when kdamond k reads 'off' (a failed read says nothing: false). */
async function isOff(sysfs: DamonSysfs, k: number): Promise<boolean> {
  return sysfs.state(k).then((s) => s === 'off', () => false);
}

/** Adds one scan: +1 for every tracked page inside a region with nr_accesses >= minAccesses. */
export function accumulateRegions(ranges: readonly HvaRange[], regions: readonly DamonRegion[], counts: Uint8Array, minAccesses: number): void {
  let base = 0;
  let ri = 0;
  for (const r of ranges) {
    while (ri > 0 && regions[ri - 1]!.end > r.start) ri--;
    for (; ri < regions.length && regions[ri]!.start < r.end; ri++) {
      const g = regions[ri]!;
      if (g.nrAccesses < minAccesses || g.end <= r.start) continue;
      const s = Math.max(g.start, r.start);
      const e = Math.min(g.end, r.end);
      if (s >= e) continue;
      // Region bounds are page aligned for vaddr; round outward defensively.
      const from = base + Math.floor((s - r.start) / PAGE_SIZE);
      const to = base + Math.ceil((e - r.start) / PAGE_SIZE);
      for (let i = from; i < to; i++) counts[i]!++;
    }
    base += pagesIn(r);
  }
}

/** One round of `req.scans` snapshots of kdamond `job.kdamond`, as per-page counts in `req.counts`. */
export async function scanKdamond(job: DamonScanJob, req: ScanRequest, io: SysfsIo = nodeSysfsIo): Promise<ScanResult> {
  checkScanRequest(req, totalPages(job.ranges));
  const t0 = performance.now();
  const sysfs = new DamonSysfs(job.sysfsRoot, io);
  const k = job.kdamond;
  const counts = req.counts.fill(0);
  try {
    let lastSnapshot = -Infinity;
    for (let s = 0; s < req.scans; s++) {
      if (req.signal?.aborted) throw abortError(req.signal);
      // Measured in the lab: a snapshot requested right after the previous one returned
      // sometimes came back with every region at nr_accesses 0 (whole scans lost). Requesting
      // it half an interval later lands it inside the next aggregation interval.
      const gap = job.aggrMs / 2 - (performance.now() - lastSnapshot);
      if (gap > 0) await sleep(gap, undefined, { signal: req.signal }).catch(() => { throw abortError(req.signal!); });
      let regions: DamonRegion[];
      try {
        regions = await sysfs.snapshotRegions(k);
      } catch (e) {
        if (!processAlive(job.pid, job.procRoot)) throw gone(`process ${job.pid} exited during the scan`);
        // A snapshot request to a kdamond that is off fails; say why rather than relay the errno.
        if (await isOff(sysfs, k)) throw damonStoppedError(k, job.pid);
        throw e;
      }
      // kdamond stops by itself when its target exits; an empty snapshot from a dead target is not "idle".
      if (!processAlive(job.pid, job.procRoot)) throw gone(`process ${job.pid} exited during the scan`);
      if (await isOff(sysfs, k)) throw damonStoppedError(k, job.pid);
      lastSnapshot = performance.now();
      // The counts are the caller's: a scan aborted while its snapshot was read writes nothing more.
      if (req.signal?.aborted) throw abortError(req.signal);
      accumulateRegions(job.ranges, regions, counts, job.minAccesses);
      req.onScan?.(s);
    }
  } catch (e) {
    if (isVmtierError(e) || (e as Error).name === 'AbortError') throw e;
    throw new VmtierError('KERNEL_ERROR', `DAMON scan failed: ${(e as Error).message}`, undefined, { cause: e });
  }
  if (req.signal?.aborted) throw abortError(req.signal);
  let base = 0;
  const mapped = job.ranges.map((r) => {
    let runs: MappingRuns;
    try {
      runs = presentRuns(job.pid, r, job.procRoot);
    } catch (e) {
      if (!processAlive(job.pid, job.procRoot)) throw gone(`process ${job.pid} exited during the scan`);
      throw e;
    }
    // A not-present page has no accessed bit: its region's verdict does not apply to it.
    zeroUnmapped(counts, base, pagesIn(r), runs);
    base += pagesIn(r);
    return runs;
  });
  // DAMON does not report mapping sizes: every run's pageShift is 0 (unknown).
  const out = scannedRanges(job.ranges, mapped);
  return { tracker: 'damon', pid: job.pid, scans: req.scans, intervalMs: req.intervalMs, ranges: out, elapsedMs: performance.now() - t0 };
}
