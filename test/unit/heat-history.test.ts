/** Heat history: frames from per-page arrays, folding rounds into cells, queries, retention (real SQLite). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HEAT_CELL_MS, HEAT_MAX_BUCKETS, heatFrameOf, heatHistoryOf, recordHeat } from '../../src/store/heat-history.js';
import { Store } from '../../src/store/store.js';
import { TIER_DRAM, TIER_NONE, TIER_SLOW } from '../../src/policy/types.js';

const VM = '00000000-0000-4000-8000-0000000000aa';
const PAGE = 4096;

/** 4096 pages; HVA order puts guest node 1 first (as QEMU may), node 0 second. */
function round(hotNode0: boolean) {
  const pages = 4096;
  const segments = [{ firstPage: 0, pages: 2048, guestNode: 1 }, { firstPage: 2048, pages: 2048, guestNode: 0 }];
  const counts = new Uint8Array(pages);
  const tiers = new Uint8Array(pages);
  for (let p = 0; p < pages; p++) {
    const node0 = p >= 2048;
    tiers[p] = p % 1024 === 0 ? TIER_NONE : node0 ? TIER_DRAM : TIER_SLOW;
    counts[p] = node0 && hotNode0 ? 4 : 0;
  }
  return { segments, totalPages: pages, pageSize: PAGE, counts, scans: 4, tiers };
}

test('a frame: at most 1024 buckets in guest order; hotness, DRAM share and residency per bucket', () => {
  const f = heatFrameOf(round(true), 123);
  assert.equal(f.dram.length, HEAT_MAX_BUCKETS);
  assert.equal(f.bucketBytes, 4 * PAGE);
  assert.deepEqual(f.nodes, [{ guestNode: 0, start: 0, end: 2048 * PAGE }, { guestNode: 1, start: 2048 * PAGE, end: 4096 * PAGE }]);
  // Guest node 0 (second in HVA order) comes first on the axis: hot, in DRAM.
  assert.equal(f.hot![1], 255);
  assert.equal(f.dram[1], 255);
  assert.equal(f.hot![600], 0);
  assert.equal(f.dram[600], 0);
  // Bucket 0 holds page 2048 (node 0's first page, not resident): 3 of 4 pages resident.
  assert.equal(f.resident[0], Math.round((255 * 3) / 4));
  assert.equal(f.resident[1], 255);
  const unscanned = heatFrameOf({ ...round(true), counts: null }, 0);
  assert.equal(unscanned.hot, null);
});

test('rounds of one minute fold into one row (means weighted by rounds); queries fold columns; bad ranges are typed errors', () => {
  const store = Store.open(':memory:');
  try {
    const t0 = 10 * HEAT_CELL_MS;
    assert.equal(recordHeat(store, VM, t0 + 1000, round(true)), true);
    assert.equal(recordHeat(store, VM, t0 + 2000, round(false)), true);
    assert.equal(recordHeat(store, VM, t0 + HEAT_CELL_MS, round(false)), true);
    const h = heatHistoryOf(store);
    const q = h.query(VM, t0, t0 + 2 * HEAT_CELL_MS, 10);
    assert.equal(q.stepMs, HEAT_CELL_MS);
    assert.equal(q.frames.length, 2);
    assert.equal(q.frames[0]!.samples, 2);
    assert.equal(q.frames[0]!.hot![1], 128, 'one hot round and one cold round: the mean');
    assert.equal(q.frames[1]!.hot![1], 0);
    const one = h.query(VM, t0, t0 + 2 * HEAT_CELL_MS, 1);
    assert.equal(one.frames.length, 1);
    assert.equal(one.frames[0]!.samples, 3);
    assert.equal(one.frames[0]!.hot![1], 85);
    assert.throws(() => h.query(VM, 5, 5, 10), /from < to/);
    assert.throws(() => h.query(VM, 0, 5, 0), /frames must be/);
  } finally {
    store.close();
  }
});

test('retention: minute cells older than full resolution fold into coarse cells; older than max age are dropped', () => {
  const store = Store.open(':memory:');
  try {
    const h = heatHistoryOf(store);
    const day = 86_400_000;
    const now = 40 * day;
    for (let i = 0; i < 10; i++) recordHeat(store, VM, now - 2 * day + i * HEAT_CELL_MS, round(i % 2 === 0));
    recordHeat(store, VM, now - 31 * day, round(true));
    recordHeat(store, VM, now - 1000, round(true));
    const r = h.applyRetention(now, { fullResolutionMs: day, coarseStepMs: 5 * HEAT_CELL_MS, maxAgeMs: 30 * day });
    assert.deepEqual(r, { coarsenedFrames: 10, coarseFrames: 2, droppedFrames: 1 });
    const q = h.query(VM, now - 3 * day, now, 1440);
    assert.deepEqual(q.frames.map((f) => f.samples), [5, 5, 1]);
    assert.equal(q.frames[0]!.hot![1], Math.round((255 * 3) / 5));
    assert.equal(h.query(VM, now - 32 * day, now - 30 * day, 10).frames.length, 0);
  } finally {
    store.close();
  }
});
