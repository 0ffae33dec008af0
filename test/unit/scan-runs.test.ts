import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkRange, countRuns, hex, intersectRanges, normalizeRanges, pageIndexOf, pagesIn, parseRange, scannedRanges, totalPages,
} from '../../src/scan/runs.js';
import { isVmtierError } from '../../src/errors.js';
import { presentPages, runsOfPresent } from '../../src/scan/mapping-runs.js';

const P = 4096;

test('parseRange accepts 0xS-0xE and rejects unaligned, empty, reversed and oversized ranges', () => {
  assert.deepEqual(parseRange('0x7f0000000000-0x7f0000200000'), { start: 0x7f0000000000, end: 0x7f0000200000 });
  assert.deepEqual(parseRange('1000-3000'), { start: 0x1000, end: 0x3000 });
  for (const bad of ['0x1001-0x2000', '0x2000-0x2000', '0x3000-0x2000', 'zz', '0x1000', '0x1000-0x1000000000000000', '0x0-0x800000001000']) {
    assert.throws(() => parseRange(bad), (e) => isVmtierError(e, 'INVALID_INPUT'), bad);
  }
});

test('hex prints lowercase with 0x and pagesIn/totalPages count 4 KiB pages', () => {
  assert.equal(hex(0x7ffABC000), '0x7ffabc000');
  assert.equal(pagesIn({ start: 0x1000, end: 0x5000 }), 4);
  assert.equal(totalPages([{ start: 0, end: 0x2000 }, { start: 0x10000, end: 0x11000 }]), 3);
  assert.throws(() => checkRange({ start: 0.5, end: 4096 }), (e) => isVmtierError(e, 'INVALID_INPUT'));
});

test('normalizeRanges sorts and merges overlapping and touching ranges', () => {
  assert.deepEqual(normalizeRanges([
    { start: 0x5000, end: 0x6000 }, { start: 0x1000, end: 0x3000 }, { start: 0x2000, end: 0x4000 }, { start: 0x4000, end: 0x5000 },
  ]), [{ start: 0x1000, end: 0x6000 }]);
  assert.deepEqual(normalizeRanges([{ start: 0x9000, end: 0xa000 }, { start: 0x1000, end: 0x2000 }]),
    [{ start: 0x1000, end: 0x2000 }, { start: 0x9000, end: 0xa000 }]);
});

test('intersectRanges of two sorted lists', () => {
  const a = [{ start: 0x0, end: 0x4000 }, { start: 0x8000, end: 0xc000 }];
  const b = [{ start: 0x2000, end: 0x9000 }, { start: 0xb000, end: 0x10000 }];
  assert.deepEqual(intersectRanges(a, b), [
    { start: 0x2000, end: 0x4000 }, { start: 0x8000, end: 0x9000 }, { start: 0xb000, end: 0xc000 },
  ]);
  assert.deepEqual(intersectRanges(a, []), []);
});

/** Ranges starting at `starts` with the counts and presence given per page, laid end to end. */
function scanned(ranges: { start: number; counts: number[]; present?: number[] }[]): { ranges: ReturnType<typeof scannedRanges>; counts: Uint8Array } {
  const counts = Uint8Array.from(ranges.flatMap((r) => r.counts));
  const mapped = ranges.map((r) => runsOfPresent(r.present ?? r.counts.map(() => 1), 0, r.counts.length, 12));
  return { ranges: scannedRanges(ranges.map((r) => ({ start: r.start, end: r.start + r.counts.length * P })), mapped), counts };
}

test('countRuns: maximal runs of equal count; not-present pages split runs and are omitted', () => {
  const s = scanned([{ start: 0x10000, counts: [3, 3, 0, 0, 3, 1, 1], present: [1, 1, 1, 0, 1, 1, 1] }]);
  assert.deepEqual(countRuns(s.ranges, s.counts), [
    { start: 0x10000, end: 0x12000, count: 3 },
    { start: 0x12000, end: 0x13000, count: 0 },
    { start: 0x14000, end: 0x15000, count: 3 },
    { start: 0x15000, end: 0x17000, count: 1 },
  ]);
});

test('countRuns joins touching tracked ranges but never across a gap', () => {
  const touching = scanned([{ start: 0x10000, counts: [2, 2] }, { start: 0x12000, counts: [2, 5] }]);
  assert.deepEqual(touching.ranges.map((r) => r.firstPage), [0, 2], 'the second range\'s counts follow the first\'s');
  assert.deepEqual(countRuns(touching.ranges, touching.counts), [{ start: 0x10000, end: 0x13000, count: 2 }, { start: 0x13000, end: 0x14000, count: 5 }]);
  const gap = scanned([{ start: 0x10000, counts: [2] }, { start: 0x20000, counts: [2] }]);
  assert.equal(countRuns(gap.ranges, gap.counts).length, 2);
  // Every present page is in exactly one run: the runs' page total equals the present total.
  const s = scanned([{ start: 0, counts: Array.from({ length: 300 }, (_, i) => (i * 7) % 3), present: Array.from({ length: 300 }, (_, i) => (i % 11 === 0 ? 0 : 1)) }]);
  const pages = countRuns(s.ranges, s.counts).reduce((a, x) => a + (x.end - x.start) / P, 0);
  assert.equal(pages, presentPages(s.ranges[0]!.mapped));
  assert.equal(pages, 300 - 28);
});

test('pageIndexOf numbers pages across ranges laid end to end', () => {
  const ranges = [{ start: 0x10000, end: 0x12000 }, { start: 0x40000, end: 0x43000 }];
  assert.equal(pageIndexOf(ranges, 0x10000), 0);
  assert.equal(pageIndexOf(ranges, 0x11fff), 1);
  assert.equal(pageIndexOf(ranges, 0x40000), 2);
  assert.equal(pageIndexOf(ranges, 0x42000), 4);
  assert.equal(pageIndexOf(ranges, 0x43000), -1);
  assert.equal(pageIndexOf(ranges, 0x20000), -1);
});
