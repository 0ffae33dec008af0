// Migration budgets and backoff, driven by an injected clock (no sleeping, no timing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MigrationBudget, TokenBucket } from '../../src/migrate/budget.js';
import { Backoff } from '../../src/daemon/backoff.js';

const MB = 1 << 20;

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

test('token bucket: starts full at rate x burst, pays, refills with time, never above capacity', () => {
  const b = new TokenBucket(10 * MB, 2, 0);
  assert.equal(b.available(0), 20 * MB);
  b.take(15 * MB, 0);
  assert.equal(b.available(0), 5 * MB);
  assert.equal(b.available(500), 10 * MB); // +5 MB in 0.5 s
  assert.equal(b.available(60_000), 20 * MB); // capped
  b.take(30 * MB, 60_000); // overrun: paid back by waiting
  assert.equal(b.available(60_000), 0);
  assert.equal(b.available(61_000), 0); // -10 MB + 10 MB
  assert.equal(b.available(62_000), 10 * MB);
});

test('token bucket: a lower rate drops tokens above the new capacity', () => {
  const b = new TokenBucket(100 * MB, 1, 0);
  b.setRate(10 * MB, 0);
  assert.equal(b.available(0), 10 * MB);
});

test('per-VM budget: a VM gets its own MB/s, and only that', () => {
  const c = clock();
  const budget = new MigrationBudget({ hostMBps: 1000, burstSeconds: 1, dramFreeWatermarkBytes: 0, now: c.now });
  assert.equal(budget.available('a', 10), 10 * MB);
  budget.lease('a', 10, { demoteBytes: 10 * MB, promoteBytes: 0, dramFreeBytes: 1e12 }).settle(10 * MB);
  assert.equal(budget.available('a', 10), 0);
  assert.equal(budget.available('b', 10), 10 * MB, 'another VM has its own bucket');
  c.advance(300);
  assert.equal(budget.available('a', 10), 3 * MB);
  // A policy change to 20 MB/s takes effect at once (tokens kept, capacity raised).
  c.advance(700);
  assert.equal(budget.available('a', 20), 10 * MB);
  c.advance(1000);
  assert.equal(budget.available('a', 20), 20 * MB);
});

test('host-wide budget caps the sum over VMs', () => {
  const c = clock();
  const budget = new MigrationBudget({ hostMBps: 30, burstSeconds: 1, dramFreeWatermarkBytes: 0, now: c.now });
  assert.equal(budget.available('a', 100), 30 * MB);
  budget.lease('a', 100, { demoteBytes: 25 * MB, promoteBytes: 0, dramFreeBytes: 1e12 }).settle(25 * MB);
  assert.equal(budget.available('b', 100), 5 * MB, 'b is limited by what a left of the host bucket');
  c.advance(1000);
  assert.equal(budget.available('b', 100), 30 * MB);
});

test('lease: demotion first, promotion gets the rest of the grant', () => {
  const c = clock();
  const budget = new MigrationBudget({ hostMBps: 1000, burstSeconds: 1, dramFreeWatermarkBytes: 100 * MB, now: c.now });
  const p = budget.lease('a', 50, { demoteBytes: 30 * MB, promoteBytes: 40 * MB, dramFreeBytes: 10_000 * MB });
  assert.equal(p.grantedBytes, 50 * MB);
  assert.equal(p.demoteBytes, 30 * MB);
  assert.equal(p.promoteBytes, 20 * MB);
  assert.equal(p.promotionPaused, false);
  assert.equal(p.dramShort, false);
});

test('lease: promotion pauses under the DRAM free watermark; demotion still runs', () => {
  const c = clock();
  const budget = new MigrationBudget({ hostMBps: 1000, burstSeconds: 1, dramFreeWatermarkBytes: 100 * MB, now: c.now });
  const short = budget.lease('a', 500, { demoteBytes: 0, promoteBytes: 40 * MB, dramFreeBytes: 60 * MB });
  assert.equal(short.dramShort, true);
  assert.equal(short.promotionPaused, true);
  assert.equal(short.promoteBytes, 0);
  // Demoting 50 MB frees DRAM: promotion may use what ends up above the watermark (60+50-100 = 10 MB).
  const mixed = budget.lease('a', 500, { demoteBytes: 50 * MB, promoteBytes: 40 * MB, dramFreeBytes: 60 * MB });
  assert.equal(mixed.demoteBytes, 50 * MB);
  assert.equal(mixed.promoteBytes, 10 * MB);
  assert.equal(mixed.promotionPaused, false);
  assert.equal(mixed.dramShort, true);
});

test('lease: maxMBps 0 moves nothing', () => {
  const budget = new MigrationBudget({ now: clock().now, dramFreeWatermarkBytes: 0 });
  const p = budget.lease('a', 0, { demoteBytes: MB, promoteBytes: MB, dramFreeBytes: 1e12 });
  assert.equal(p.demoteBytes + p.promoteBytes, 0);
});

test('leases held at once share the host bucket: four VMs planning together get 200 MiB in total, not each', async () => {
  const c = clock();
  // Host 100 MB/s x 2 s = 200 MiB; each VM's own bucket would allow all of it.
  const budget = new MigrationBudget({ hostMBps: 100, burstSeconds: 2, dramFreeWatermarkBytes: 0, now: c.now });
  const leases: number[] = [];
  let held = 0;
  let maxHeld = 0;
  // Four VM rounds interleaved as the engine runs them: each leases, yields (its move_pages run in
  // its thread), then settles with what it really attempted.
  await Promise.all(
    ['a', 'b', 'c', 'd'].map(async (vm, i) => {
      await new Promise((r) => setImmediate(r));
      const lease = budget.lease(vm, 1000, { demoteBytes: 200 * MB, promoteBytes: 0, dramFreeBytes: 1e12 });
      leases[i] = lease.demoteBytes;
      held += lease.demoteBytes;
      maxHeld = Math.max(maxHeld, held);
      await new Promise((r) => setImmediate(r));
      lease.settle(lease.demoteBytes);
      held -= lease.demoteBytes;
    }),
  );
  assert.ok(maxHeld <= 200 * MB, `leases held at once: ${maxHeld / MB} MiB > 200 MiB`);
  assert.equal(leases.reduce((a, b) => a + b, 0), 200 * MB, 'the host bucket is handed out in full, once');
  assert.equal(budget.available('e', 1000), 0, 'nothing left until the bucket refills');
});

test('settle returns what was leased but not attempted, and pays an overrun', () => {
  const c = clock();
  const budget = new MigrationBudget({ hostMBps: 100, burstSeconds: 1, dramFreeWatermarkBytes: 0, now: c.now });
  const a = budget.lease('a', 1000, { demoteBytes: 80 * MB, promoteBytes: 0, dramFreeBytes: 1e12 });
  assert.equal(a.demoteBytes, 80 * MB);
  assert.equal(budget.available('b', 1000), 20 * MB, 'reserved at lease time');
  a.settle(30 * MB); // 50 MiB were skipped (pages gone, aborted round)
  assert.equal(budget.available('b', 1000), 70 * MB, 'the unattempted rest is back');
  a.settle(0);
  assert.equal(budget.available('b', 1000), 70 * MB, 'settle is idempotent');
  const b = budget.lease('b', 1000, { demoteBytes: 10 * MB, promoteBytes: 0, dramFreeBytes: 1e12 });
  b.settle(25 * MB); // a batch overran its lease: paid in full
  assert.equal(budget.available('c', 1000), 45 * MB);
  // Refunds never lift a bucket above its capacity, however late the settle comes.
  const d = budget.lease('c', 1000, { demoteBytes: 45 * MB, promoteBytes: 0, dramFreeBytes: 1e12 });
  c.advance(10_000);
  d.settle(0);
  assert.equal(budget.available('c', 1000), 100 * MB);
});

test('unsettled promotions count against free DRAM: two VMs cannot both promote into the same room', () => {
  const c = clock();
  const budget = new MigrationBudget({ hostMBps: 10_000, burstSeconds: 1, dramFreeWatermarkBytes: 100 * MB, now: c.now });
  // 160 MiB free, 100 MiB watermark: 60 MiB of room for promotion on the host.
  const a = budget.lease('a', 10_000, { demoteBytes: 0, promoteBytes: 50 * MB, dramFreeBytes: 160 * MB });
  const b = budget.lease('b', 10_000, { demoteBytes: 0, promoteBytes: 50 * MB, dramFreeBytes: 160 * MB });
  assert.equal(a.promoteBytes, 50 * MB);
  assert.equal(b.promoteBytes, 10 * MB);
  a.settle(a.promoteBytes);
  b.settle(b.promoteBytes);
  // Settled: the next reading of free DRAM tells what the moves took.
  const next = budget.lease('b', 10_000, { demoteBytes: 0, promoteBytes: 50 * MB, dramFreeBytes: 160 * MB });
  assert.equal(next.promoteBytes, 50 * MB);
  next.settle(0);
});

test('backoff: exponential from base, capped, reset by success', () => {
  const c = clock(0);
  const b = new Backoff({ baseMs: 100, maxMs: 1000, now: c.now });
  assert.equal(b.ready(), true);
  assert.deepEqual([b.failure(), b.failure(), b.failure(), b.failure(), b.failure(), b.failure()], [100, 200, 400, 800, 1000, 1000]);
  assert.equal(b.failures, 6);
  assert.equal(b.ready(), false);
  assert.equal(b.remainingMs(), 1000);
  c.advance(999);
  assert.equal(b.ready(), false);
  c.advance(1);
  assert.equal(b.ready(), true);
  b.success();
  assert.equal(b.failures, 0);
  assert.equal(b.failure(), 100);
});

test("host status: the bucket, leases in flight, the last hour's leases, and who got less than asked", () => {
  const c = clock(10 * 3600_000);
  const budget = new MigrationBudget({ hostMBps: 100, burstSeconds: 2, dramFreeWatermarkBytes: 100 * MB, now: c.now });
  const empty = budget.hostStatus();
  assert.deepEqual(empty, {
    rateBytesPerSec: 100 * MB, capacityBytes: 200 * MB, availableBytes: 200 * MB, dramFreeWatermarkBytes: 100 * MB,
    outstanding: { leases: 0, reservedBytes: 0 },
    lastHour: { leases: 0, wantedBytes: 0, reservedBytes: 0, settledBytes: 0, shortLeases: 0 },
    waiting: [],
  });
  // a: everything it asks (150 of 200). b: capped by its own 10 MB/s x 2 s. c: the host has 50 left, c's bucket 200.
  const a = budget.lease('a', 1000, { demoteBytes: 150 * MB, promoteBytes: 0, dramFreeBytes: 1e12 });
  const b = budget.lease('b', 10, { demoteBytes: 30 * MB, promoteBytes: 0, dramFreeBytes: 1e12 });
  const s1 = budget.hostStatus();
  assert.deepEqual(s1.outstanding, { leases: 2, reservedBytes: 170 * MB });
  assert.equal(s1.availableBytes, 30 * MB);
  const cc = budget.lease('c', 100, { demoteBytes: 0, promoteBytes: 60 * MB, dramFreeBytes: 1e12 });
  assert.equal(cc.promoteBytes, 30 * MB);
  // d asks only to promote, the buckets have room for it but DRAM has none (free below the watermark).
  c.advance(2000); // the host bucket refills (held leases stay held)
  const d = budget.lease('d', 1000, { demoteBytes: 0, promoteBytes: 5 * MB, dramFreeBytes: 50 * MB });
  assert.equal(d.promoteBytes, 0);
  const s2 = budget.hostStatus();
  assert.deepEqual(s2.outstanding, { leases: 4, reservedBytes: 200 * MB });
  assert.deepEqual(
    s2.waiting.map((w) => [w.vm, w.wantedBytes / MB, w.reservedBytes / MB, w.limitedBy]),
    [['b', 30, 20, 'vm'], ['c', 60, 30, 'host'], ['d', 5, 0, 'dram']],
  );
  a.settle(100 * MB); // 50 MiB not attempted: returned
  b.settle(20 * MB);
  cc.settle(40 * MB); // overran its 30 MiB lease: paid in full
  d.settle(0);
  const s3 = budget.hostStatus();
  assert.deepEqual(s3.outstanding, { leases: 0, reservedBytes: 0 });
  assert.deepEqual(s3.lastHour, { leases: 4, wantedBytes: 245 * MB, reservedBytes: 200 * MB, settledBytes: 160 * MB, shortLeases: 3 });
  // A later lease that gets everything clears the VM from the waiting list; a forgotten VM leaves it.
  c.advance(60_000);
  budget.lease('c', 100, { demoteBytes: MB, promoteBytes: 0, dramFreeBytes: 1e12 }).settle(MB);
  budget.forget('d');
  assert.deepEqual(budget.hostStatus().waiting.map((w) => w.vm), ['b']);
  // An hour later the old minutes no longer count; the newest lease still does.
  c.advance(3600_000 - 62_000);
  assert.deepEqual(budget.hostStatus().lastHour, { leases: 1, wantedBytes: MB, reservedBytes: MB, settledBytes: MB, shortLeases: 0 });
  c.advance(60_000);
  assert.equal(budget.hostStatus().lastHour.leases, 0);
  assert.equal(budget.hostStatus().availableBytes, 200 * MB);
});

test('host status when the first lease falls in a later minute of the hour (the slots before it were never used)', () => {
  // 10 h 17 min: slot 17 is the first written, slots 0-16 are holes.
  const c = clock(10 * 3600_000 + 17 * 60_000);
  const budget = new MigrationBudget({ hostMBps: 100, burstSeconds: 2, dramFreeWatermarkBytes: 0, now: c.now });
  budget.lease('a', 1000, { demoteBytes: MB, promoteBytes: 0, dramFreeBytes: 1e12 }).settle(MB);
  assert.deepEqual(budget.hostStatus().lastHour, { leases: 1, wantedBytes: MB, reservedBytes: MB, settledBytes: MB, shortLeases: 0 });
});
