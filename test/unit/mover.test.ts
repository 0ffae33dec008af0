// The mover (src/migrate/mover.ts): targets, budget lease, demotion first, groups per guest node,
// one record per group, and the lease settled with what was really attempted. movePages here is a
// recording stand-in for the VM thread's move_pages (the real call is exercised on QEMU in
// test/integration/engine.test.ts); it moves every page but those marked busy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { HostTopology } from '../../src/host/topology.js';
import { MigrationBudget } from '../../src/migrate/budget.js';
import { emptyMoveCounts } from '../../src/migrate/counts.js';
import { Mover, chooseTargets, type MoveRecord } from '../../src/migrate/mover.js';

const MB = 1 << 20;
const PAGE = 4096;

function host(free: Record<number, [number, 'top' | 'slow']>): HostTopology {
  return { nodes: Object.entries(free).map(([n, [bytes, cls]]) => ({ node: Number(n), memFreeBytes: bytes, tier: { class: cls } })) } as unknown as HostTopology;
}

const pages = { movable: (p: number) => p < 1000, guestNodeOf: (p: number) => (p < 500 ? 0 : 1), addrOf: (p: number) => 0x7f0000000000 + p * PAGE };

function recorder(busy = new Set<number>()) {
  const calls: Array<{ target: number; pages: number[] }> = [];
  const movePages = async (addrs: Float64Array, target: number) => {
    const ps = [...addrs].map((a) => (a - 0x7f0000000000) / PAGE);
    calls.push({ target, pages: ps });
    const counts = emptyMoveCounts();
    const reached = new Uint8Array(addrs.length);
    counts.requested = addrs.length;
    ps.forEach((p, i) => {
      if (busy.has(p)) counts.byClass.busy++;
      else {
        counts.byClass.moved++;
        reached[i] = 1;
      }
    });
    return { counts, reached };
  };
  return { calls, movePages };
}

test('targets: the freest node of each tier, or the overrides; null without such a node', () => {
  const h = host({ 0: [10 * MB, 'top'], 1: [5 * MB, 'slow'], 2: [50 * MB, 'top'], 3: [7 * MB, 'slow'] });
  assert.deepEqual(chooseTargets(h), { top: 2, slow: 3 });
  assert.deepEqual(chooseTargets(h, { slow: 1 }), { top: 2, slow: 1 });
  assert.deepEqual(chooseTargets(host({ 0: [MB, 'top'] })), { top: 0, slow: null });
});

test('demotion first, grouped per guest node in the policy order; unmovable pages skipped; records and placement per group', async () => {
  const budget = new MigrationBudget({ hostMBps: 1000, dramFreeWatermarkBytes: 0, now: () => 0 });
  const r = recorder(new Set([600]));
  const records: MoveRecord[] = [];
  const moved: Array<[number[], number]> = [];
  const m = new Mover({ budget, movePages: r.movePages, record: (x) => records.push(x), onMoved: (ps, reached, t) => moved.push([ps.filter((_, i) => reached[i]), t]) });
  const out = await m.run(pages, {
    vmId: 'a', promote: Int32Array.of(10, 700), demote: Int32Array.of(600, 20, 1500, 21), host: host({ 0: [1e12, 'top'], 1: [1e12, 'slow'] }),
    migration: { maxMBps: 1000, maxBytesPerRound: null },
  });
  assert.deepEqual(r.calls, [{ target: 1, pages: [600] }, { target: 1, pages: [20, 21] }, { target: 0, pages: [10] }, { target: 0, pages: [700] }]);
  assert.deepEqual(out.skipped, { 'demote: unmovable backing': 1 });
  assert.deepEqual(out.leaving, [600, 20, 21]);
  assert.equal(out.demote.requested, 3);
  assert.equal(out.demote.byClass.busy, 1);
  assert.equal(out.promote.byClass.moved, 2);
  assert.deepEqual(records.map((x) => [x.direction, x.guestNode, x.target, x.counts.requested]), [['demote', 1, 1, 1], ['demote', 0, 1, 2], ['promote', 0, 0, 1], ['promote', 1, 0, 1]]);
  assert.deepEqual(moved, [[[], 1], [[20, 21], 1], [[10], 0], [[700], 0]], 'the busy page is not recorded as moved');
});

test('the lease limits the round and is settled with what was attempted', async () => {
  // 1 MB/s x 2 s: 512 pages of budget for this VM.
  const budget = new MigrationBudget({ hostMBps: 1000, dramFreeWatermarkBytes: 0, now: () => 0 });
  const r = recorder();
  const m = new Mover({ budget, movePages: r.movePages });
  const demote = Int32Array.from({ length: 800 }, (_, i) => i);
  const out = await m.run(pages, { vmId: 'a', promote: new Int32Array(0), demote, host: host({ 0: [1e12, 'top'], 1: [1e12, 'slow'] }), migration: { maxMBps: 1, maxBytesPerRound: null } });
  assert.equal(out.demote.requested, 512);
  assert.equal(out.skipped['demote: budget'], 800 - 512);
  assert.equal(budget.available('a', 1), 0, 'the attempted bytes are paid');
  // A move that fails after the first group: only the attempted group is paid.
  const budget2 = new MigrationBudget({ hostMBps: 1000, dramFreeWatermarkBytes: 0, now: () => 0 });
  const m2 = new Mover({
    budget: budget2,
    movePages: async (addrs, target) => {
      if (target === 0) throw new Error('ESRCH');
      return r.movePages(addrs, target);
    },
  });
  await assert.rejects(m2.run(pages, { vmId: 'b', promote: Int32Array.of(1, 2), demote: Int32Array.of(3), host: host({ 0: [1e12, 'top'], 1: [1e12, 'slow'] }), migration: { maxMBps: 100, maxBytesPerRound: null } }), /ESRCH/);
  assert.equal(budget2.available('b', 100), 200 * MB - PAGE, 'one demoted page paid; the failed promotion returned');
});
