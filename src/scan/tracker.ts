/**
 * The mechanism every tracker implements (memtierd's Tracker, minus policy): track
 * ranges of one process, run N scans `intervalMs` apart, and return per-page access
 * counts 0..N. One byte of state per tracked 4 KiB page; a 2 MiB mapping seen as one
 * unit repeats its count over its 512 pages.
 */
// Ranges and page sizes are the ground floor's (src/units.ts): every layer takes them from there.
import type { HvaRange } from '../units.js';

export interface ScanRequest {
  scans: number;
  intervalMs: number;
  /** Aborts a round (VM destroyed, daemon stopping): the tracker rejects with VM_GONE or the abort reason. */
  signal?: AbortSignal;
  /** Called after each scan for progress reporting. */
  onScan?: (scanIndex: number) => void;
}

/** Counts for one tracked range: counts[i] is for page start + i * PAGE_SIZE. */
export interface RangeCounts {
  start: number;
  end: number;
  /** 0..scans: in how many scans the page was seen accessed. */
  counts: Uint8Array;
  /** 1 where the page was present (mapped) in the last scan; not-present pages have count 0. */
  present: Uint8Array;
  /** Mapping size seen per page in bytes' log2 (12 = 4 KiB, 21 = 2 MiB, 30 = 1 GiB); 0 = unknown/not present. */
  pageShift: Uint8Array;
}

export interface ScanResult {
  tracker: string;
  pid: number;
  scans: number;
  intervalMs: number;
  ranges: RangeCounts[];
  /** Wall time of the round in ms. */
  elapsedMs: number;
}

export interface Tracker {
  readonly name: string;
  /** Start tracking `ranges` of `pid` (replaces any previous set). */
  track(pid: number, ranges: readonly HvaRange[]): Promise<void>;
  /** Run one round of `scans` scans and return the counts. */
  scan(req: ScanRequest): Promise<ScanResult>;
  /** Release every kernel resource (file descriptors, kdamonds). Idempotent. */
  close(): Promise<void>;
}
