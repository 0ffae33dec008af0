/**
 * ReplayTracker: plays a recorded access trace (src/scan/trace.ts) as if a kernel tracker
 * had scanned it, so the daemon and simulator paths run without a kernel. Page p of the
 * trace is page p of the tracked ranges laid end to end. Each scan consumes the next
 * `epochsPerScan` epochs; the position carries over from round to round. Past the end of
 * the trace nothing is accessed (or, with `loop`, the trace starts over).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { VmtierError } from '../errors.js';
import type { ScanRequest, ScanResult, Tracker } from './tracker.js';
import { PAGE_SIZE, type HvaRange } from '../units.js';
import { runsOfPresent, type MappingRuns } from './mapping-runs.js';
import { abortError, checkScanRequest } from './request.js';
import { normalizeRanges, pagesIn, scannedRanges, totalPages } from './runs.js';
import { loadTrace, type Trace } from './trace.js';

export interface ReplayOptions {
  /** A parsed trace, or a path to load (`.csv` or `.csv.gz`). */
  trace: Trace | string;
  /** Select one VM of a multi-VM trace. */
  vm?: string;
  /** Epochs per scan (default 1: one epoch is one scan interval). */
  epochsPerScan?: number;
  /** First epoch to replay (default 0). */
  startEpoch?: number;
  /** Start over at epoch 0 after the last epoch. */
  loop?: boolean;
  /** Sleep intervalMs between scans like a real tracker (default false: replay as fast as possible). */
  paced?: boolean;
}

/** The ranges a trace covers when the caller gives none: its pages from address 0. */
export function traceRanges(trace: Trace): HvaRange[] {
  return trace.pages > 0 ? [{ start: 0, end: trace.pages * PAGE_SIZE }] : [];
}

export class ReplayTracker implements Tracker {
  readonly name = 'replay';
  readonly trace: Trace;
  private readonly epochsPerScan: number;
  private readonly loop: boolean;
  private readonly paced: boolean;
  private cursor: number;
  private pid = 0;
  private ranges: HvaRange[] = [];
  /** Per tracked range, the trace's known pages as 4 KiB runs: the trace never changes, so they are built once per track(). */
  private mapped: MappingRuns[] = [];
  /**
   * One bit per tracked page, reused from round to round: a page listed in several epochs of one
   * scan counts once (only with epochsPerScan > 1; one epoch's pages are distinct). A bit, not a
   * stamp per page allocated every round, so the replay tracker keeps 1/8 byte per page.
   */
  private seenInScan: Uint8Array | null = null;
  private closed = false;

  constructor(opts: ReplayOptions) {
    this.trace = typeof opts.trace === 'string' ? loadTrace(opts.trace, { vm: opts.vm }) : opts.trace;
    this.epochsPerScan = opts.epochsPerScan ?? 1;
    if (!Number.isInteger(this.epochsPerScan) || this.epochsPerScan < 1) {
      throw new VmtierError('INVALID_INPUT', `epochsPerScan must be a positive integer, not ${opts.epochsPerScan}`);
    }
    this.cursor = opts.startEpoch ?? 0;
    if (!Number.isInteger(this.cursor) || this.cursor < 0) throw new VmtierError('INVALID_INPUT', `startEpoch must be >= 0`);
    this.loop = opts.loop ?? false;
    this.paced = opts.paced ?? false;
  }

  /** The next epoch a scan will replay. */
  get epoch(): number {
    return this.cursor;
  }

  /** true once every epoch has been replayed (never with `loop`). */
  get exhausted(): boolean {
    return !this.loop && this.cursor >= this.trace.epochs;
  }

  async track(pid: number, ranges: readonly HvaRange[]): Promise<void> {
    if (this.closed) throw new VmtierError('INVALID_INPUT', 'tracker is closed');
    this.pid = pid;
    this.ranges = normalizeRanges(ranges);
    let base = 0;
    this.mapped = this.ranges.map((r) => {
      const m = runsOfPresent(this.trace.known, base, pagesIn(r), 12);
      base += pagesIn(r);
      return m;
    });
    const bytes = Math.ceil(totalPages(this.ranges) / 8);
    this.seenInScan = this.epochsPerScan > 1 ? (this.seenInScan?.length === bytes ? this.seenInScan : new Uint8Array(bytes)) : null;
  }

  async scan(req: ScanRequest): Promise<ScanResult> {
    if (this.closed) throw new VmtierError('INVALID_INPUT', 'tracker is closed');
    if (this.ranges.length === 0) throw new VmtierError('INVALID_INPUT', 'track() a non-empty set of ranges before scanning');
    const n = totalPages(this.ranges);
    checkScanRequest(req, n);
    const t0 = performance.now();
    const counts = req.counts.fill(0);
    const seen = this.seenInScan;
    for (let s = 0; s < req.scans; s++) {
      if (req.signal?.aborted) throw abortError(req.signal);
      if (this.paced && s > 0) await sleep(req.intervalMs, undefined, { signal: req.signal }).catch(() => { throw abortError(req.signal!); });
      seen?.fill(0);
      for (let k = 0; k < this.epochsPerScan; k++) {
        let e = this.cursor + k;
        if (this.loop && this.trace.epochs > 0) e %= this.trace.epochs;
        const pages = this.trace.accessed[e];
        if (!pages) continue;
        for (let i = 0; i < pages.length; i++) {
          const p = pages[i]!;
          if (p >= n) continue;
          if (seen) {
            const bit = 1 << (p & 7);
            if (seen[p >>> 3]! & bit) continue;
            seen[p >>> 3]! |= bit;
          }
          counts[p]!++;
        }
      }
      this.cursor += this.epochsPerScan;
      if (this.loop && this.trace.epochs > 0) this.cursor %= this.trace.epochs;
      req.onScan?.(s);
    }
    // Copies: a result may be transferred to another thread, which would take the tracker's own.
    const ranges = scannedRanges(this.ranges, this.mapped.map((m) => m.slice()));
    return { tracker: this.name, pid: this.pid, scans: req.scans, intervalMs: req.intervalMs, ranges, elapsedMs: performance.now() - t0 };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
