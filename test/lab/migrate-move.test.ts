// vmtier's migrate module (src/migrate/move.ts, move_pages through koffi) on a real tiered
// kernel: the workload's pages go DRAM → slow node → DRAM, confirmed by a move_pages query and by
// the kernel's /proc/<pid>/numa_maps; and every way the kernel refuses a page is reported per page:
// ENOMEM with the slow node full, EFAULT on a devdax mapping, EBUSY on THP tails, and pages held
// by a pipe. lab/guest/migrate-probe.js runs inside the guest and prints what happened.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LabSession, ensureWorkload } from '../../lab/index.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
describe('migrate: move_pages in the lab (tiered)', { timeout: 900_000 }, () => {
  let lab: LabSession;

  async function probe(...args: string[]): Promise<any> {
    const r = await lab.run(['node', 'dist/lab/guest/migrate-probe.js', ...args], { timeoutMs: 300_000 });
    assert.equal(r.status, 0, `migrate-probe ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-3000)}`);
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  }

  before(async () => {
    ensureWorkload();
    lab = await LabSession.start({ topology: 'tiered' });
  });
  after(async () => {
    await lab?.close();
  });

  for (const thp of [false, true]) {
    test(`pages move 0 → 1 → 0 (${thp ? 'THP' : '4 KiB pages'}), confirmed by query and numa_maps`, async () => {
      const r = await probe('roundtrip', ...(thp ? ['--thp'] : []));
      const n = r.pages;
      assert.equal(n, 8192);
      assert.deepEqual(r.before, { 'node:0': n }, 'first touch on the CPU node');
      assert.equal(r.toSlow.moved, n);
      assert.deepEqual(r.afterSlow, { 'node:1': n });
      assert.deepEqual(r.numaMapsSlow.nodes, { 1: n }, r.numaMapsSlow.line);
      assert.equal(r.toFast.moved, n);
      assert.deepEqual(r.afterFast, { 'node:0': n });
      assert.deepEqual(r.numaMapsFast.nodes, { 0: n }, r.numaMapsFast.line);
      if (thp) {
        // The footprint was THP-backed, and the kernel answered EBUSY for the second 4 KiB address
        // of each huge page (the folio was already isolated by the first): one per 2 MiB. Those
        // pages did move, so the outcome counts them moved, keeping the raw answer in byStatus.
        assert.equal(r.anonHugeKiB, 32 * 1024);
        assert.equal(r.toSlow.byStatus.EBUSY, n / 512);
        assert.equal(r.toSlow.byClass.busy, 0);
      } else {
        assert.deepEqual(r.toSlow.byStatus, { 'node:1': n });
        assert.deepEqual(r.toFast.byStatus, { 'node:0': n });
      }
    });
  }

  test('node 1 full: pages that cannot move are reported ENOMEM, the few that moved are counted', async () => {
    const r = await probe('enomem');
    assert.ok(r.freeFilled < r.freeBefore / 10, `node 1 not filled: ${r.freeFilled} of ${r.freeBefore} bytes free`);
    assert.equal(r.thrown, null, 'ENOMEM for the whole call must not escape as an exception');
    const o = r.outcome;
    assert.equal(o.requested, r.pages);
    assert.ok(o.byClass.noMemory > r.pages / 2, JSON.stringify(o.byStatus));
    assert.equal(o.moved + o.byClass.noMemory, r.pages);
    // The outcome agrees with where the pages really are.
    assert.equal(r.after['node:1'] ?? 0, o.moved);
    assert.equal(r.after['node:0'], o.byClass.noMemory);
    assert.equal(o.failures[0].error, 'ENOMEM');
  });

  test('devdax mapping: every page EFAULT (not movable), in both directions', async () => {
    const device = (await lab.check('cat /run/lab/xchg/devdax')).trim();
    assert.match(device, /^dax\d+\.\d+$/);
    const r = await probe('devdax', `/dev/${device}`);
    // The query reports devdax pages as not present (ZONE_DEVICE pages have no node to report).
    assert.deepEqual(r.before, [-2, -2, -2, -2]);
    for (const o of [r.toFast, r.toSlow]) {
      assert.equal(o.requested, 512);
      assert.equal(o.moved, 0);
      assert.deepEqual(o.byStatus, { EFAULT: 512 });
      assert.equal(o.byClass.fault, 512);
    }
  });

  test('pages referenced by a pipe stay put and are reported, the rest move', async () => {
    const r = await probe('pinned');
    // 6.12 gives no per-page errno here: move_pages returns the count of unmoved pages and leaves
    // status[] of that whole call unwritten. vmtier asks where the pages are: the ones that moved
    // count as moved, the pinned ones as busy; byStatus keeps the raw "nostatus" for the batch.
    assert.equal(r.pinnedPages, 256);
    assert.deepEqual(r.pinnedWhere, { 'node:0': 256 });
    assert.deepEqual(r.otherWhere, { 'node:1': r.pages - 256 });
    assert.equal(r.outcome.moved, r.pages - 256);
    assert.equal(r.outcome.byClass.busy, 256);
    assert.equal(r.outcome.byStatus.nostatus, 1024, 'the pinned pages lie in the first batch of 1024');
    assert.ok(r.outcome.failures.every((f: any) => f.error === 'nostatus'));
  });
});
