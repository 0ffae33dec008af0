/**
 * ReplayTracker: plays a recorded access trace (src/scan/trace.ts) as if a kernel tracker
 * had scanned it, so the daemon and simulator paths run without a kernel. Page p of the
 * trace is page p of the tracked ranges laid end to end. Each scan consumes the next
 * `epochsPerScan` epochs; the position carries over from round to round. Past the end of
 * the trace nothing is accessed (or, with `loop`, the trace starts over).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { VmtierError } from '../errors.js';
import type { RangeCounts, ScanRequest, ScanResult, Tracker } from './tracker.js';
import { PAGE_SIZE, type HvaRange } from '../units.js';
import { abortError, checkScanRequest } from './request.js';
import { normalizeRanges, pagesIn, totalPages } from './runs.js';
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
  }

  async scan(req: ScanRequest): Promise<ScanResult> {
    checkScanRequest(req);
    if (this.closed) throw new VmtierError('INVALID_INPUT', 'tracker is closed');
    if (this.ranges.length === 0) throw new VmtierError('INVALID_INPUT', 'track() a non-empty set of ranges before scanning');
    const t0 = performance.now();
    const n = totalPages(this.ranges);
    const counts = new Uint8Array(n);
    // A page listed in several epochs of one scan counts once: stamp it with the scan number.
    const stamp = new Uint16Array(n);
    for (let s = 0; s < req.scans; s++) {
      if (req.signal?.aborted) throw abortError(req.signal);
      if (this.paced && s > 0) await sleep(req.intervalMs, undefined, { signal: req.signal }).catch(() => { throw abortError(req.signal!); });
      for (let k = 0; k < this.epochsPerScan; k++) {
        let e = this.cursor + k;
        if (this.loop && this.trace.epochs > 0) e %= this.trace.epochs;
        const pages = this.trace.accessed[e];
        if (!pages) continue;
        for (let i = 0; i < pages.length; i++) {
          const p = pages[i]!;
          if (p >= n || stamp[p] === s + 1) continue;
          stamp[p] = s + 1;
          counts[p]!++;
        }
      }
      this.cursor += this.epochsPerScan;
      if (this.loop && this.trace.epochs > 0) this.cursor %= this.trace.epochs;
      req.onScan?.(s);
    }
    const out: RangeCounts[] = [];
    let base = 0;
    for (const r of this.ranges) {
      const len = pagesIn(r);
      const present = new Uint8Array(len);
      const pageShift = new Uint8Array(len);
      const known = this.trace.known;
      for (let i = 0; i < len; i++) {
        if (known[base + i]) {
          present[i] = 1;
          pageShift[i] = 12;
        }
      }
      out.push({ start: r.start, end: r.end, counts: counts.slice(base, base + len), present, pageShift });
      base += len;
    }
    return { tracker: this.name, pid: this.pid, scans: req.scans, intervalMs: req.intervalMs, ranges: out, elapsedMs: performance.now() - t0 };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
