// PlacementCache: placement kept from round to round. The "kernel" here is an array of true host
// nodes that the test changes behind vmtier's back (as NUMA balancing or reclaim demotion would);
// the query reads it, as move_pages' query mode reads the page tables.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PlacementCache, type PageWindow } from '../../src/migrate/placement-cache.js';

function kernel(pages: number) {
  const truth = new Int16Array(pages).fill(0);
  let queried = 0;
  const query = async (w: PageWindow) => {
    queried += w.count;
    return truth.slice(w.first, w.first + w.count);
  };
  return { truth, query, queried: () => queried, reset: () => (queried = 0) };
}

test('first round queries every page; later rounds one window each, and every page again within refreshRounds rounds', async () => {
  const k = kernel(1000);
  const pc = new PlacementCache(1000, 8);
  await pc.refresh(k.query);
  assert.equal(k.queried(), 1000);
  assert.equal(pc.windowPages, 125);
  const seen = new Uint8Array(1000);
  for (let r = 0; r < 8; r++) {
    k.reset();
    const ws = pc.windows();
    for (const w of ws) for (let p = w.first; p < w.first + w.count; p++) seen[p] = 1;
    await pc.refresh(k.query);
    assert.equal(k.queried(), 125, `round ${r}: one window`);
  }
  assert.ok(seen.every((x) => x === 1), 'the rotation covers every page in refreshRounds rounds');
});

test('pages the kernel moved are noticed within refreshRounds rounds, wherever they are (windows wrap)', async () => {
  const pages = 1003; // not a multiple of the window: the rotation wraps mid-window
  const k = kernel(pages);
  const pc = new PlacementCache(pages, 8);
  await pc.refresh(k.query);
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pending = new Map<number, number>(); // page -> round the kernel moved it
  let worst = 0;
  for (let round = 1; round <= 40; round++) {
    // The kernel demotes a few pages to node 1 (or back) before the round's refresh.
    for (let i = 0; i < 5; i++) {
      const p = Math.floor(rand() * pages);
      k.truth[p] = k.truth[p] === 0 ? 1 : 0;
      pending.set(p, round);
    }
    await pc.refresh(k.query);
    for (const [p, since] of pending) {
      if (pc.node[p] === k.truth[p]) {
        worst = Math.max(worst, round - since + 1);
        pending.delete(p);
      }
    }
    for (const [, since] of pending) assert.ok(round - since + 1 < 8, `a kernel move stayed unnoticed for ${round - since + 1} rounds`);
  }
  assert.ok(worst <= 8, `worst delay ${worst} rounds`);
  assert.ok(worst > 1, 'not everything is re-queried every round');
});

test("vmtier's own moves are known at once, without a query", async () => {
  const k = kernel(64);
  const pc = new PlacementCache(64, 8);
  await pc.refresh(k.query);
  k.reset();
  const moved = [3, 4, 5, 40];
  const reached = Uint8Array.of(1, 1, 0, 1); // page 5 was busy and stayed
  for (let i = 0; i < moved.length; i++) if (reached[i]) k.truth[moved[i]!] = 1;
  pc.recordMoves(moved, reached, 1);
  assert.deepEqual([3, 4, 5, 40].map((p) => pc.node[p]), [1, 1, 0, 1]);
  assert.equal(k.queried(), 0);
});

test('a query answering the wrong length is refused', async () => {
  const pc = new PlacementCache(10, 2);
  await assert.rejects(pc.refresh(async () => new Int16Array(3)), /answered 3 pages for 10/);
});

test('the cache sits on a SharedArrayBuffer and a query may write its window in place (answering null): no array per window', async () => {
  const pc = new PlacementCache(100, 4);
  assert.ok(pc.node.buffer instanceof SharedArrayBuffer, 'the VM thread writes it directly (issue 13)');
  const into: Array<[number, number, boolean]> = [];
  await pc.refresh(async (w, view) => {
    into.push([w.first, view.length, view.buffer === pc.node.buffer]);
    for (let i = 0; i < view.length; i++) view[i] = (w.first + i) % 3;
    return null;
  });
  assert.deepEqual(into, [[0, 100, true]], 'the window is the cache\'s own pages');
  assert.equal(pc.node[0], 0);
  assert.equal(pc.node[98], 2);
  assert.equal(pc.lastQueried, 100);
  await pc.refresh(async (w, view) => {
    assert.equal(view.byteOffset, w.first * 2, 'the view starts at the window\'s first page');
    view.fill(7);
    return null;
  });
  assert.deepEqual([pc.node[0], pc.node[24], pc.node[25], pc.node[99]], [7, 7, 1, 0], 'only the window was written');
  // A query that answers an array is still copied in (and its length checked).
  await pc.refresh(async (w) => new Int16Array(w.count).fill(5));
  assert.equal(pc.node[25], 5);
  await assert.rejects(pc.refresh(async () => new Int16Array(3)), /answered 3 pages/);
});

test('queryWindow into the cache\'s window answers what a new array answers, writing -1 where no run covers', async () => {
  const { readFileSync } = await import('node:fs');
  const { queryWindow } = await import('../../src/migrate/query.js');
  // A writable mapping of this process (its pages are mostly present: the heap, the stack).
  const m = readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => /^([0-9a-f]+)-([0-9a-f]+) rw-p/.exec(l)).find((x) => x && parseInt(x[2]!, 16) - parseInt(x[1]!, 16) >= 64 * 4096)!;
  assert.ok(m, 'a writable mapping of 64 pages');
  const start = parseInt(m[1]!, 16);
  const runs = [{ start, pages: 40, firstPage: 0 }, { start: start + 48 * 4096, pages: 16, firstPage: 48 }];
  const fresh = queryWindow(process.pid, runs, 0, 64, 7);
  const cache = new Int16Array(new SharedArrayBuffer(128)).fill(9);
  const written = queryWindow(process.pid, runs, 0, 64, 7, cache);
  assert.equal(written.node, cache, 'the answer is the given array');
  assert.deepEqual(Array.from(cache), Array.from(fresh.node), 'same answers page by page');
  assert.equal(written.unqueryable, fresh.unqueryable);
  assert.ok(Array.from(cache.subarray(40, 48)).every((v) => v === -1), 'pages no run covers are -1, not left as they were');
  assert.ok(Array.from(cache.subarray(0, 40)).some((v) => v >= 0), 'present pages have their node');
  assert.throws(() => queryWindow(process.pid, runs, 0, 64, 7, new Int16Array(10)), /64 pages given 10/);
});
