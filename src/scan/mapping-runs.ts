/**
 * Where a tracked range was mapped, as runs rather than a byte per 4 KiB page: the kernel tells
 * presence and mapping size in runs (the kmod's records, stretches of pagemap), and a guest's RAM
 * is mostly a few long runs (present in 4 KiB pages, or in 2 MiB leaves), so this costs 12 bytes
 * per run whatever the range's size (issue 13: state that grows with what matters).
 *
 * The encoding is a Uint32Array of triples [firstPage, pages, pageShift]: pages
 * [firstPage, firstPage + pages) of the range (numbered from the range's start) were present,
 * mapped with pages of 2^pageShift bytes (12 = 4 KiB, 21 = 2 MiB, 30 = 1 GiB; 0 = present, size
 * unknown: pagemap does not say). Runs are sorted and disjoint, and two that touch with the same
 * pageShift are one run. A page in no run was not present. A typed array, not objects, so that a
 * result crosses from a worker thread as one transferable buffer per range.
 */
import { VmtierError } from '../errors.js';

export type MappingRuns = Uint32Array;

/** Builds MappingRuns in address order; reset() reuses its storage for the next scan. */
export class MappingRunsBuilder {
  private buf = new Uint32Array(3 * 8);
  private len = 0;

  reset(): void {
    this.len = 0;
  }

  /** Pages [firstPage, firstPage + pages) present with 2^pageShift-byte pages; after every page added so far. */
  add(firstPage: number, pages: number, pageShift: number): void {
    if (pages <= 0) return;
    const b = this.buf;
    const n = this.len;
    if (n > 0) {
      const lastEnd = b[n - 3]! + b[n - 2]!;
      if (firstPage < lastEnd) {
        throw new VmtierError('INVALID_INPUT', `mapping run at page ${firstPage} overlaps or precedes the run ending at page ${lastEnd}`);
      }
      if (firstPage === lastEnd && b[n - 1] === pageShift) {
        b[n - 2]! += pages;
        return;
      }
    }
    if (n + 3 > b.length) {
      const grown = new Uint32Array(b.length * 2);
      grown.set(b);
      this.buf = grown;
    }
    this.buf[n] = firstPage;
    this.buf[n + 1] = pages;
    this.buf[n + 2] = pageShift;
    this.len = n + 3;
  }

  /** The runs added since the last reset, in an array of their own (the builder's storage is reused). */
  finish(): MappingRuns {
    return this.buf.slice(0, this.len);
  }
}

/** Runs of the present pages of `present` (non-zero = present), all with `pageShift`. */
export function runsOfPresent(present: ArrayLike<number>, from: number, pages: number, pageShift: number): MappingRuns {
  const b = new MappingRunsBuilder();
  for (let i = 0; i < pages; ) {
    if (!present[from + i]) {
      i++;
      continue;
    }
    const s = i;
    while (i < pages && present[from + i]) i++;
    b.add(s, i - s, pageShift);
  }
  return b.finish();
}

/** Present pages in [from, to) of the range. */
export function presentPages(runs: MappingRuns, from = 0, to = Infinity): number {
  let n = 0;
  for (let k = 0; k < runs.length; k += 3) {
    const s = Math.max(runs[k]!, from);
    const e = Math.min(runs[k]! + runs[k + 1]!, to);
    if (e > s) n += e - s;
  }
  return n;
}

/** Present pages mapped with 2^pageShift-byte pages. */
export function pagesMappedWith(runs: MappingRuns, pageShift: number): number {
  let n = 0;
  for (let k = 0; k < runs.length; k += 3) if (runs[k + 2] === pageShift) n += runs[k + 1]!;
  return n;
}

/** Sets to 0 the counts of the range's pages that are in no run: counts[base + i] is page i of the range. */
export function zeroUnmapped(counts: Uint8Array, base: number, pages: number, runs: MappingRuns): void {
  let next = 0;
  for (let k = 0; k < runs.length; k += 3) {
    counts.fill(0, base + next, base + runs[k]!);
    next = runs[k]! + runs[k + 1]!;
  }
  counts.fill(0, base + next, base + pages);
}

/** Sets present[base + i] to 1 for every present page i of the range (callers that need a page mask: trace recording). */
export function markPresent(runs: MappingRuns, present: Uint8Array, base: number): void {
  for (let k = 0; k < runs.length; k += 3) present.fill(1, base + runs[k]!, base + runs[k]! + runs[k + 1]!);
}
