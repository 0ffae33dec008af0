/**
 * The decision core's state per unit the kernel maps (README "Policy and simulator"): 2 MiB regions,
 * 4 KiB detail only for regions whose heat is scattered, bounded; the bytes it keeps per GiB of guest
 * RAM against issue 13's budget; and the move-skill gate on swaps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TieringPolicy, parsePolicy, TIER_DRAM, TIER_SLOW, type ScanPlan } from '../../src/policy/index.js';

const PAGE = 4096;
const HUGE = 2 * 1024 * 1024;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const N4: ScanPlan = { intervalMultiplier: 1, scansPerRound: 4 };
const policy = parsePolicy({ mode: 'tier' });
/** Issue 13: whole-daemon memory per GiB of guest RAM. */
const BUDGET_4K = 0.25 * MiB;
const BUDGET_THP = 0.0125 * MiB;

/** Worst case for detail: every region's heat scattered (counts differ page to page), a few rounds. */
function stateBytesFor(pol: TieringPolicy, gib: number, pageBytes: number): number {
  const pages = (gib * GiB) / pageBytes;
  const counts = new Uint8Array(pages);
  const tiers = new Uint8Array(pages).fill(TIER_SLOW);
  tiers.fill(TIER_DRAM, 0, pages / 4);
  let seed = 99;
  for (let r = 0; r < 3; r++) {
    for (let p = 0; p < pages; p++) counts[p] = ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 29) & 3 ? 4 : 0;
    pol.decide({ dramCapacityBytes: (gib * GiB) / 4, vms: [{ vmId: `v${gib}`, policy, counts, tiers, pageBytes, plan: N4 }] });
  }
  return pol.stateBytes(`v${gib}`);
}

test('state per GiB of guest RAM: within issue 13 budget for 4 KiB- and THP-backed memory, and only because detail is bounded', () => {
  const b1 = stateBytesFor(new TieringPolicy(), 1, PAGE);
  const b4 = stateBytesFor(new TieringPolicy(), 4, PAGE);
  const slope4k = (b4 - b1) / 3;
  assert.ok(b4 / 4 <= BUDGET_4K, `4 KiB-backed: ${(b4 / 4 / MiB).toFixed(4)} MiB per GiB > ${BUDGET_4K / MiB}`);
  assert.ok(slope4k <= BUDGET_4K, `4 KiB-backed slope ${(slope4k / MiB).toFixed(4)} MiB per GiB`);
  const thp = stateBytesFor(new TieringPolicy(), 64, HUGE) / 64;
  assert.ok(thp <= BUDGET_THP, `THP-backed: ${(thp / MiB).toFixed(5)} MiB per GiB > ${BUDGET_THP / MiB}`);
  // The same workload with detail for every region (no bound) is far over: the bound is what holds.
  const unbounded = stateBytesFor(new TieringPolicy({ detailShare: 1 }), 1, PAGE);
  assert.ok(unbounded > 4 * BUDGET_4K, `unbounded detail only ${unbounded} bytes per GiB`);
  console.log(`policy state: ${(b4 / 4 / MiB).toFixed(4)} MiB/GiB (4 KiB, 4 GiB), slope ${(slope4k / MiB).toFixed(4)}; ${(thp / MiB).toFixed(5)} MiB/GiB (THP, 64 GiB); unbounded ${(unbounded / MiB).toFixed(3)}`);
});

test('a region whose pages agree stays one unit; scattered heat splits it to 4 KiB; an idle region merges back', () => {
  const pol = new TieringPolicy();
  const pages = 3 * 512;
  const tiers = new Uint8Array(pages).fill(TIER_SLOW);
  tiers.fill(TIER_DRAM, 0, 512); // region 0 in DRAM, regions 1 and 2 slow
  const counts = new Uint8Array(pages);
  // Region 1 uniformly hot; region 2: every 8th page hot.
  counts.fill(4, 512, 1024);
  for (let p = 1024; p < 1536; p += 8) counts[p] = 4;
  const d = pol.decide({ dramCapacityBytes: 1536 * PAGE, vms: [{ vmId: 'a', policy, counts, tiers, pageBytes: PAGE, plan: N4 }] });
  assert.equal(pol.splitRegions('a'), 1, 'only the scattered region is tracked page by page');
  // A shift (new hot pages) promotes at once: region 1 whole, region 2's hot pages only.
  const promoted = new Set(d.vms[0]!.promote);
  for (let p = 512; p < 1024; p++) assert.ok(promoted.has(p), `uniform region page ${p} promoted`);
  for (let p = 1024; p < 1536; p++) assert.equal(promoted.has(p), p % 8 === 0, `scattered region page ${p}`);
  // Everything idle for long enough: the split region folds back into one unit.
  counts.fill(0);
  for (let r = 0; r < 12; r++) pol.decide({ dramCapacityBytes: 1024 * PAGE, vms: [{ vmId: 'a', policy: parsePolicy({ mode: 'observe' }), counts, tiers, pageBytes: PAGE, plan: N4 }] });
  assert.equal(pol.splitRegions('a'), 0, 'idle regions hold no 4 KiB detail');
  // Detail is bounded: with a floor of 1 region and no share, a second scattered region stays coarse.
  const one = new TieringPolicy({ detailFloorRegions: 1, detailShare: 0 });
  const mixed = new Uint8Array(pages);
  for (let p = 0; p < pages; p += 2) mixed[p] = 4;
  one.decide({ dramCapacityBytes: 1024 * PAGE, vms: [{ vmId: 'b', policy, counts: mixed, tiers, pageBytes: PAGE, plan: N4 }] });
  assert.equal(one.splitRegions('b'), 1);
});

test('move skill: when what was promoted is no more used than what was demoted, swaps are cut back', () => {
  // A sweep: 320 pages, 16 of DRAM; each round a window of 16 pages is hot and moves on by 8,
  // so by the time a page is confirmed hot its burst is over, and it comes back only after 40
  // rounds — longer than the recurrence history (32 rounds), so no period can predict it either.
  const run = (skillMin: number): number => {
    const pol = new TieringPolicy({ skillMin });
    const pages = 320;
    const tiers = new Uint8Array(pages).fill(TIER_SLOW);
    tiers.fill(TIER_DRAM, 0, 16);
    let moves = 0;
    for (let r = 0; r < 80; r++) {
      const counts = new Uint8Array(pages);
      for (let k = 0; k < 16; k++) counts[(r * 8 + k) % pages] = 4;
      const pl = parsePolicy({ mode: 'tier', scan: { autoTune: false }, thresholds: { hotConfirmRounds: 2, coldConfirmRounds: 1 } });
      const d = pol.decide({ dramCapacityBytes: 16 * PAGE, vms: [{ vmId: 'c', policy: pl, counts, tiers, pageBytes: PAGE, plan: N4 }] });
      const v = d.vms[0]!;
      for (const p of v.demote) tiers[p] = TIER_SLOW;
      for (const p of v.promote) tiers[p] = TIER_DRAM;
      moves += v.promote.length + v.demote.length;
    }
    return moves;
  };
  const gated = run(0.1);
  const ungated = run(-Infinity);
  assert.ok(ungated > 0, 'the pattern makes an ungated policy move');
  assert.ok(gated * 2 < ungated, `gated ${gated} moves vs ungated ${ungated}`);
});

test('move skill: once swaps are cut, probes back off', () => {
  // The sweep above, 16 times wider (it comes back after 40 rounds): after the gate engages, count the rounds that still move anything.
  const movingRounds = (probeMaxGap: number): number => {
    const pol = new TieringPolicy({ probeMaxGap });
    const pages = 5120; // 256 of DRAM, so a probe (1/64 of DRAM) is 4 pages
    const tiers = new Uint8Array(pages).fill(TIER_SLOW);
    tiers.fill(TIER_DRAM, 0, 256);
    let moving = 0;
    for (let r = 0; r < 120; r++) {
      const counts = new Uint8Array(pages);
      for (let k = 0; k < 256; k++) counts[(r * 128 + k) % pages] = 4;
      const pl = parsePolicy({ mode: 'tier', scan: { autoTune: false }, thresholds: { hotConfirmRounds: 2, coldConfirmRounds: 1 } });
      const d = pol.decide({ dramCapacityBytes: 256 * PAGE, vms: [{ vmId: 'c', policy: pl, counts, tiers, pageBytes: PAGE, plan: N4 }] });
      const v = d.vms[0]!;
      for (const p of v.demote) tiers[p] = TIER_SLOW;
      for (const p of v.promote) tiers[p] = TIER_DRAM;
      if (r >= 40 && v.promote.length + v.demote.length > 0) moving++;
    }
    return moving;
  };
  const everyRound = movingRounds(1);
  const backedOff = movingRounds(8);
  // 80 gated rounds: probing every 8th round is ≤ 10 rounds plus the first powers of two.
  assert.ok(everyRound >= 60, `probing every round moves in ${everyRound} of 80 rounds`);
  assert.ok(backedOff <= 16, `backed-off probes move in ${backedOff} of 80 rounds`);
});
