// Mapping runs (src/scan/mapping-runs.ts): what trackers report about presence and mapping size,
// per run instead of per 4 KiB page, and the trackers writing their counts into the caller's buffer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MappingRunsBuilder, markPresent, pagesMappedWith, presentPages, runsOfPresent, zeroUnmapped,
} from '../../src/scan/mapping-runs.js';
import { ReplayTracker } from '../../src/scan/replay.js';
import type { Trace } from '../../src/scan/trace.js';
import { isVmtierError } from '../../src/errors.js';

const triples = (r: Uint32Array): number[][] => Array.from({ length: r.length / 3 }, (_, k) => [r[3 * k]!, r[3 * k + 1]!, r[3 * k + 2]!]);

test('adjacent runs of one page size merge; a different size or an absent gap starts a new run', () => {
  const b = new MappingRunsBuilder();
  b.add(0, 4, 12);
  b.add(4, 2, 12); // touches, same size: merged
  b.add(6, 1, 21); // touches, another size
  b.add(10, 3, 21); // pages 7..9 absent
  b.add(13, 0, 12); // empty: nothing
  b.add(13, 1, 21);
  assert.deepEqual(triples(b.finish()), [[0, 6, 12], [6, 1, 21], [10, 4, 21]]);
});

test('2 MiB leaves: consecutive 512-page runs are one run, costing 3 numbers whatever the length', () => {
  const b = new MappingRunsBuilder();
  for (let leaf = 0; leaf < 4096; leaf++) b.add(leaf * 512, 512, 21);
  const runs = b.finish();
  assert.deepEqual(triples(runs), [[0, 4096 * 512, 21]], '8 GiB of THP is one run');
  assert.equal(runs.byteLength, 12);
  assert.equal(pagesMappedWith(runs, 21), 4096 * 512);
  assert.equal(pagesMappedWith(runs, 12), 0);
});

test('absent gaps are in no run, and the helpers count and mask only present pages', () => {
  const present = [0, 1, 1, 0, 0, 1, 1, 1, 0, 1];
  const runs = runsOfPresent(present, 0, present.length, 12);
  assert.deepEqual(triples(runs), [[1, 2, 12], [5, 3, 12], [9, 1, 12]]);
  assert.equal(presentPages(runs), 6);
  assert.equal(presentPages(runs, 2, 6), 2, 'pages 2 and 5 of [2, 6)');
  const mask = new Uint8Array(12);
  markPresent(runs, mask, 2);
  assert.deepEqual([...mask], [0, 0, ...present]);
  const counts = Uint8Array.from([9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
  zeroUnmapped(counts, 1, 10, runs);
  assert.deepEqual([...counts], [9, 0, 9, 9, 0, 0, 9, 9, 9, 0, 9, 9], 'absent pages of the range zeroed; the rest, and outside it, kept');
  assert.deepEqual(triples(runsOfPresent(present, 1, 4, 0)), [[0, 2, 0]], 'a window of a presence array, page size unknown');
  assert.equal(runsOfPresent(new Uint8Array(8), 0, 8, 12).length, 0, 'nothing present: no run');
});

test('runs must come in address order; a reused builder leaves what it finished alone', () => {
  const b = new MappingRunsBuilder();
  b.add(10, 5, 12);
  assert.throws(() => b.add(12, 1, 12), (e) => isVmtierError(e, 'INVALID_INPUT'));
  assert.throws(() => b.add(3, 1, 12), (e) => isVmtierError(e, 'INVALID_INPUT'));
  const first = b.finish();
  b.reset();
  for (let i = 0; i < 100; i++) b.add(2 * i, 1, 12); // grows past its first storage
  assert.deepEqual(triples(first), [[10, 5, 12]]);
  assert.equal(b.finish().length, 300);
});

test('the replay tracker fills the buffer it is given, round after round, and its result holds runs, not arrays per page', async () => {
  const PAGES = 1 << 18; // 1 GiB of 4 KiB pages
  const known = new Uint8Array(PAGES).fill(1);
  known.fill(0, 1000, 2000);
  const tr: Trace = { epochs: 2, pages: PAGES, accessed: [Uint32Array.of(0, 5, PAGES - 1), Uint32Array.of(5)], known, vms: [] };
  const t = new ReplayTracker({ trace: tr, loop: true });
  const base = 0x7f0000000000;
  // Two ranges that do not touch, given out of order: A = trace pages 0..4095, B = the rest.
  await t.track(1, [{ start: base + 8192 * 4096, end: base + (8192 + PAGES - 4096) * 4096 }, { start: base, end: base + 4096 * 4096 }]);
  const counts = new Uint8Array(PAGES).fill(0xff);
  for (let round = 0; round < 3; round++) {
    const r = await t.scan({ scans: 2, intervalMs: 0, counts });
    assert.deepEqual([counts[0], counts[5], counts[PAGES - 1], counts[1]], [1, 2, 1, 0], `round ${round}: counted into the caller's buffer`);
    assert.equal(counts.reduce((a, c) => a + c, 0), 4, 'every other byte overwritten with 0');
    // Nothing in the result is a per-page array: each range carries a few numbers of runs.
    for (const x of r.ranges) {
      assert.deepEqual(Object.keys(x).sort(), ['end', 'firstPage', 'mapped', 'start']);
      assert.ok(x.mapped.length <= 6, `${x.mapped.length} numbers of runs for ${(x.end - x.start) / 4096} pages`);
    }
    assert.deepEqual(r.ranges.map((x) => [x.start, x.firstPage]), [[base, 0], [base + 8192 * 4096, 4096]]);
    assert.deepEqual(triples(r.ranges[0]!.mapped), [[0, 1000, 12], [2000, 2096, 12]]);
    assert.deepEqual(triples(r.ranges[1]!.mapped), [[0, PAGES - 4096, 12]]);
  }
  const before = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 20; i++) await t.scan({ scans: 2, intervalMs: 0, counts });
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(grown < PAGES / 4, `20 rounds over ${PAGES} pages grew ArrayBuffer memory by ${grown} bytes (one per-page array is ${PAGES})`);
});
