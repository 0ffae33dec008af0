/**
 * Rollups answer history exactly as the raw rows do: random rounds (irregular times, several
 * series, gaps), random ranges and steps (multiples of the rollup cells and not), compared with
 * the raw-row answer of the same store. Seeded, so a failure names its case.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Store, ROLLUP_RESOLUTIONS_MS, type HistorySeries, type HotnessSample } from '../../src/store/store.js';
import { rng } from '../helpers/rng.js';

const VM = '0b8f0c1e-6a2d-4f7e-9c3b-5d4e3f2a1b0c';
const OTHER = '9d3e2c1b-0a9f-4e8d-8c7b-6a5f4e3d2c1b';


function roundsFor(rand: () => number, vm: string, t0: number, hours: number): HotnessSample[] {
  const out: HotnessSample[] = [];
  const cells: Array<[number, number, 'top' | 'slow']> = [[0, 0, 'top'], [0, 1, 'slow'], [1, 0, 'top']];
  let t = t0 + Math.floor(rand() * 10_000);
  while (t < t0 + hours * 3600_000) {
    for (const [g, h, tier] of cells) {
      if (rand() < 0.15) continue; // a series missing from some rounds
      out.push({
        t, vmUuid: vm, guestNode: g, hostNode: h, hostTier: tier,
        hotBytes: 4096 * Math.floor(rand() * 5000), warmBytes: 4096 * Math.floor(rand() * 300), coldBytes: 4096 * Math.floor(rand() * 90_000),
        scannedBytes: 4096 * Math.floor(rand() * 100_000), scanMs: Math.round(rand() * 5000) / 100,
        movedBytes: rand() < 0.3 ? 4096 * Math.floor(rand() * 1000) : 0, failures: rand() < 0.1 ? Math.floor(rand() * 4) : 0,
      });
    }
    // irregular rounds, sometimes a gap of minutes
    t += rand() < 0.02 ? Math.floor(rand() * 900_000) : 5000 + Math.floor(rand() * 10_000);
  }
  return out;
}

/** Equal, except scan ms sums that may differ in the last bits (float sums in another order). */
function assertSameHistory(a: HistorySeries[], b: HistorySeries[], what: string): void {
  assert.equal(a.length, b.length, what);
  a.forEach((s, i) => {
    const r = b[i]!;
    assert.deepEqual([s.guestNode, s.hostNode, s.hostTier, s.buckets.length], [r.guestNode, r.hostNode, r.hostTier, r.buckets.length], what);
    s.buckets.forEach((x, j) => {
      const y = r.buckets[j]!;
      assert.ok(Math.abs(x.scanMs - y.scanMs) <= 1e-9 * Math.max(1, Math.abs(y.scanMs)), `${what} bucket ${j} scanMs ${x.scanMs} vs ${y.scanMs}`);
      assert.deepEqual({ ...x, scanMs: 0 }, { ...y, scanMs: 0 }, `${what} bucket ${j}`);
    });
  });
}

test('history from rollups equals history from raw rows (random rounds, ranges and steps)', () => {
  const s = Store.open(':memory:');
  const rand = rng(0x5eed17);
  const t0 = Date.UTC(2026, 10, 25, 21, 17, 3);
  const hours = 26;
  const rounds = roundsFor(rand, VM, t0, hours);
  // Inserted round by round as the engine does, interleaved with another VM's rounds.
  const other = roundsFor(rng(7), OTHER, t0, hours);
  const byT = new Map<number, HotnessSample[]>();
  for (const x of [...rounds, ...other]) (byT.get(x.t) ?? byT.set(x.t, []).get(x.t)!).push(x);
  for (const t of [...byT.keys()].sort((a, b) => a - b)) s.insertSamples(byT.get(t)!);

  const steps = [60_000, 120_000, 300_000, 600_000, 900_000, 3600_000, 7200_000, 86_400_000, 30_000, 45_000, 10_000, 7_000];
  let usedRollups = 0;
  for (let i = 0; i < 120; i++) {
    const step = steps[Math.floor(rand() * steps.length)]!;
    const from = t0 - 3600_000 + Math.floor(rand() * (hours + 1) * 3600_000);
    const span = Math.min(Math.floor(rand() * 28 * 3600_000) + 1, step * 3000);
    const to = from + span;
    if (ROLLUP_RESOLUTIONS_MS.some((r) => step % r === 0)) usedRollups++;
    assertSameHistory(s.history(VM, from, to, step), s.history(VM, from, to, step, 'raw'), `case ${i}: from=${from} to=${to} step=${step}`);
  }
  assert.ok(usedRollups > 50, 'most cases go through rollups');
  // The whole day at 5 minutes really reads rollups: its answer needs no raw row.
  const dayFrom = t0 + 3600_000;
  const full = s.history(VM, dayFrom, dayFrom + 86_400_000, 300_000);
  s.db.prepare('DELETE FROM samples WHERE t >= ? AND t < ?').run(Math.ceil(dayFrom / 300_000) * 300_000, Math.floor((dayFrom + 86_400_000) / 300_000) * 300_000);
  assert.deepEqual(s.history(VM, dayFrom, dayFrom + 86_400_000, 300_000), full);
  s.close();
});

test('rollups stay equal to raw rows across retention (raw coarsened, 1-minute cells dropped)', () => {
  const s = Store.open(':memory:');
  const rand = rng(42);
  const t0 = Date.UTC(2026, 10, 20, 0, 0, 0);
  s.insertSamples(roundsFor(rand, VM, t0, 72));
  const now = t0 + 72 * 3600_000;
  const oldRange: [number, number] = [t0 + 3600_000, t0 + 40 * 3600_000];
  const recentRange: [number, number] = [now - 20 * 3600_000 + 17_000, now];
  const before = [300_000, 3600_000].map((step) => s.history(VM, ...oldRange, step));
  const recentBefore = s.history(VM, ...recentRange, 60_000);
  s.applyRetention(now, { fullResolutionMs: 24 * 3600_000, coarseStepMs: 300_000, maxAgeMs: 30 * 24 * 3600_000 });
  [300_000, 3600_000].forEach((step, i) => {
    assertSameHistory(s.history(VM, ...oldRange, step), before[i]!, `old range at ${step}`);
    assertSameHistory(s.history(VM, ...oldRange, step, 'raw'), before[i]!, `old range raw at ${step}`);
  });
  assertSameHistory(s.history(VM, ...recentRange, 60_000), recentBefore, 'recent range at 1 min');
  // 1-minute cells older than a day are gone; a 1-minute query there falls back to the (coarsened) raw rows.
  const minuteCells = s.db.prepare('SELECT COUNT(*) AS n FROM rollups WHERE resolution_ms = 60000 AND t < ?').get(now - 24 * 3600_000 - 60_000) as { n: number };
  assert.equal(minuteCells.n, 0);
  assertSameHistory(s.history(VM, ...oldRange, 60_000), s.history(VM, ...oldRange, 60_000, 'raw'), 'old range at 1 min');
  s.close();
});
