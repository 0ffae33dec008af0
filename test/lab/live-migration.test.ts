// Issue 15 item 5 on a host with a slow tier: a real live migration inside the lab (two private
// libvirtds, a small TCG domain), the destination definition binding the guest's RAM to the slow
// host node 1, and a vmtier Engine on each side (replay tracker: the seed needs no kernel tracker).
// test/lab/live-migration-guest.ts drives it inside the guest and reads where every page of the
// domain sits on the destination right after its first round (move_pages query); the assertions
// are here: the pages of the hot units in the map that travelled with the domain are on node 0
// (DRAM), every other present page is still on node 1: the seed moved the hot units, nothing else.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LabSession } from '../../lab/index.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
describe('live migration in the lab (tiered host): the destination places the hot units first', { timeout: 600_000 }, () => {
  let lab: LabSession;

  before(async () => {
    lab = await LabSession.start({ topology: 'tiered' });
    // QEMU's migration stream runs over tcp://127.0.0.1; the lab boots with loopback down.
    await lab.check(['ip', 'link', 'set', 'lo', 'up'], { timeoutMs: 30_000 });
  });
  after(async () => {
    await lab?.close();
  });

  test('after the switch-over the seed round puts exactly the hot units of the map on node 0, the rest stays on node 1', async () => {
    const r = await lab.run(['node', 'dist/test/lab/live-migration-guest.js'], { timeoutMs: 480_000 });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    assert.equal(r.status, 0, `live-migration-guest exited ${r.status}: ${line} ${r.stderr.slice(-3000)}`);
    const g = JSON.parse(line) as Record<string, any>;
    const { hot, cold } = g.tally as Record<'hot' | 'cold', { pages: number; node0: number; node1: number; absent: number }>;
    process.stdout.write(`# live migration lab (TCG): migrate ${g.migrateMs} ms, seed ${g.seedMs} ms after it; hot units ${g.seed.hotUnits}/${g.seed.units} ` +
      `(${hot.pages} pages: ${hot.node0} on node 0, ${hot.node1} on node 1, ${hot.absent} absent); other pages ${cold.pages}: ` +
      `${cold.node0} on node 0, ${cold.node1} on node 1, ${cold.absent} absent; mover ${JSON.stringify(g.seed.promote)}\n`);

    assert.match(g.numatuneOnB, /memnode cellid='1' mode='strict' nodeset='1'/, 'the destination ran with the slow-node binding');
    // The map that arrived is the one the source wrote; the first round placed it.
    assert.equal(g.seed.map, g.expectedMap);
    assert.equal(g.seed.round, 1, 'placed in the first round, before anything was learned');
    assert.equal(g.seed.target, 0);
    assert.ok(g.seed.hotUnits >= 4 && g.seed.hotUnits < g.seed.units, `hot units ${g.seed.hotUnits} of ${g.seed.units}`);
    assert.equal(g.seed.pages, g.hotPagesInMap, 'every page of the hot units was asked for');
    // 8 MiB written on the source and called hot: all of it arrived and was placed in DRAM.
    assert.ok(g.seed.promote.byClass.moved >= 2048, `moved ${g.seed.promote.byClass.moved}`);
    assert.equal(hot.node1, 0, 'a hot-unit page was left on the slow node');
    assert.equal(hot.node0, g.seed.promote.byClass.moved, 'the placed pages are the hot-unit pages on node 0');
    // The rest (the other 8 MiB written, what SeaBIOS touched) arrived on node 1 and stayed there.
    assert.ok(cold.node1 >= 2048, `present non-hot pages on node 1: ${cold.node1}`);
    assert.equal(cold.node0, 0, 'a page outside the hot units went to DRAM');
  });
});
