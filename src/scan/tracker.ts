/**
 * The mechanism every tracker implements (memtierd's Tracker, minus policy): track
 * ranges of one process, run N scans `intervalMs` apart, and write per-page access counts
 * 0..N into the caller's buffer. One byte per tracked 4 KiB page, and that byte is the
 * caller's: a 2 MiB mapping seen as one unit repeats its count over its 512 pages. What a
 * tracker learns about mappings (present or not, mapping size) comes back as runs, which cost
 * per run, not per page (src/scan/mapping-runs.ts).
 */
// Ranges and page sizes are the ground floor's (src/units.ts): every layer takes them from there.
import type { HvaRange } from '../units.js';
import type { MappingRuns } from './mapping-runs.js';

export interface ScanRequest {
  scans: number;
  intervalMs: number;
  /**
   * Where the counts go: counts[p] is page p of the tracked ranges laid end to end (sorted,
   * touching ranges merged; the daemon's page numbering), so its length is the number of tracked
   * pages. The tracker overwrites all of it. The caller owns it so that a round reuses one buffer
   * (the daemon's is on a SharedArrayBuffer, which a worker thread writes in place) instead of
   * every scan allocating, transferring and copying an array per page (issue 13).
   */
  counts: Uint8Array;
  /** Aborts a round (VM destroyed, daemon stopping): the tracker rejects with VM_GONE or the abort reason. */
  signal?: AbortSignal;
  /** Called after each scan for progress reporting. */
  onScan?: (scanIndex: number) => void;
}

/** One tracked range of a scan: where its counts are and where it was mapped. */
export interface ScannedRange {
  start: number;
  end: number;
  /** Index in the request's counts of the range's first page. */
  firstPage: number;
  /**
   * The pages present in the last scan and their mapping size. A page in no run was not present
   * then; its count is what the scans that found it present saw (DAMON reports 0 for it: a
   * region's verdict says nothing about a page without an accessed bit).
   */
  mapped: MappingRuns;
}

export interface ScanResult {
  tracker: string;
  pid: number;
  scans: number;
  intervalMs: number;
  ranges: ScannedRange[];
  /** Wall time of the round in ms. */
  elapsedMs: number;
}

export interface Tracker {
  readonly name: string;
  /** Start tracking `ranges` of `pid` (replaces any previous set). */
  track(pid: number, ranges: readonly HvaRange[]): Promise<void>;
  /** Run one round of `scans` scans into `req.counts`; resolves once the counts are complete. */
  scan(req: ScanRequest): Promise<ScanResult>;
  /** Release every kernel resource (file descriptors, kdamonds). Idempotent. */
  close(): Promise<void>;
}
