// PlacementCache: placement kept from round to round, as runs of pages on one node. The
// "kernel" here (test/helpers/placement.ts) is an array of true host nodes that the test
// changes behind vmtier's back (as NUMA balancing or reclaim demotion would); the query reads
// it, as move_pages' query mode reads the page tables.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { NodeRuns, RunList } from '../../src/migrate/node-runs.js';
import { PlacementCache, type PageWindow } from '../../src/migrate/placement-cache.js';
import { QueryScratch, queryWindow } from '../../src/migrate/query.js';
import { queryPageNodes } from '../../src/sys/syscalls.js';
import { fakeKernel, runsOf } from '../helpers/placement.js';
import { rng } from '../helpers/rng.js';

test('first round queries every page; later rounds one window each, and every page again within refreshRounds rounds', async () => {
  const k = fakeKernel(1000);
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
  const k = fakeKernel(pages);
  const pc = new PlacementCache(pages, 8);
  await pc.refresh(k.query);
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pending = new Map<number, number>(); // page -> round the kernel moved it
  let worst = 0;
  for (let round = 1; round <= 40; round++) {
    // The kernel demotes a few pages to node 1 (or back), or reclaims one, before the round's refresh.
    for (let i = 0; i < 5; i++) {
      const p = Math.floor(rand() * pages);
      k.truth[p] = i === 4 ? -1 : k.truth[p] === 0 ? 1 : 0;
      pending.set(p, round);
    }
    await pc.refresh(k.query);
    for (const [p, since] of pending) {
      if (pc.node.nodeAt(p) === k.truth[p]) {
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
  const k = fakeKernel(64);
  const pc = new PlacementCache(64, 8);
  await pc.refresh(k.query);
  k.reset();
  const moved = [40, 3, 4, 5]; // not sorted: the mover's order is the policy's
  const reached = Uint8Array.of(1, 1, 1, 0); // page 5 was busy and stayed
  for (let i = 0; i < moved.length; i++) if (reached[i]) k.truth[moved[i]!] = 1;
  pc.recordMoves(moved, reached, 1);
  assert.deepEqual([2, 3, 4, 5, 39, 40, 41].map((p) => pc.node.nodeAt(p)), [0, 1, 1, 0, 0, 1, 0]);
  assert.deepEqual(Array.from(pc.node.toArray()), Array.from(k.truth));
  assert.equal(pc.node.runs, 5, 'runs: [0,3) 0, [3,5) 1, [5,40) 0, [40,41) 1, [41,64) 0');
  assert.equal(k.queried(), 0);
});

test('a query answering pages outside its window, or out of order, is refused', async () => {
  const pc = new PlacementCache(10, 2);
  const bad = new RunList();
  bad.push(8, 5, 0);
  await assert.rejects(pc.refresh(async () => bad), /outside or out of order/);
});

test('a sparse 64 GiB VM costs runs, not pages: the cache stays under 64 KiB through rotation and moves', async () => {
  const pages = (64 * 2 ** 30) / 4096; // 16 Mi pages: 32 MiB as an Int16Array per page
  // 200 present stretches of 2 MiB (512 pages), on nodes 0 and 1; the rest never touched.
  const present = Array.from({ length: 200 }, (_, i) => ({ start: i * 80_000, node: i % 2 }));
  const query = async (w: PageWindow) => {
    const out = new RunList();
    for (const s of present) {
      const lo = Math.max(s.start, w.first);
      const hi = Math.min(s.start + 512, w.first + w.count);
      if (lo < hi) out.push(lo, hi - lo, s.node);
    }
    return out;
  };
  const before = process.memoryUsage().arrayBuffers;
  const pc = new PlacementCache(pages, 8);
  for (let r = 0; r < 10; r++) {
    await pc.refresh(query);
    // vmtier demotes a few 2 MiB units' pages each round.
    const moved = Array.from({ length: 512 }, (_, i) => present[r]!.start + i);
    pc.recordMoves(moved, new Uint8Array(512).fill(1), 1);
    present[r]!.node = 1; // where the kernel now has them too
  }
  assert.equal(pc.node.nodeAt(present[2]!.start + 7), 1, 'a demoted unit is on node 1');
  assert.equal(pc.node.nodeAt(present[11]!.start), 1, 'an untouched odd unit is on node 1');
  assert.equal(pc.node.nodeAt(present[12]!.start), 0);
  assert.equal(pc.node.nodeAt(present[12]!.start + 512), -1, 'past a stretch: not present');
  assert.ok(pc.bytes < 64 * 1024, `the cache holds ${pc.bytes} bytes for ${pages} pages`);
  // Measured from outside the cache too (array buffers, shared ones included, garbage not yet collected included).
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(grown < 1024 * 1024, `array buffers grew by ${grown} bytes`);
});

test('NodeRuns.apply agrees with a node per page under random updates, and merges neighbours', () => {
  const r = rng(13);
  const pages = 5000;
  const dense = new Int16Array(pages).fill(-1);
  const runs = new NodeRuns(pages);
  for (let round = 0; round < 200; round++) {
    const u = new RunList();
    let p = Math.floor(r() * 50);
    while (p < pages) {
      const len = 1 + Math.floor(r() * 40);
      const node = Math.floor(r() * 3) - 1;
      const end = Math.min(pages, p + len);
      u.push(p, end - p, node);
      dense.fill(node, p, end);
      p = end + Math.floor(r() * 300);
    }
    runs.apply(u);
    assert.deepEqual(runs.toArray(), dense, `round ${round}`);
  }
  let boundaries = 1;
  for (let i = 1; i < pages; i++) if (dense[i] !== dense[i - 1]) boundaries++;
  assert.equal(runs.runs, boundaries, 'no two neighbouring runs share a node');
  const seg: Array<[number, number, number]> = [];
  runs.forEach(100, 400, (s, e, n) => seg.push([s, e, n]));
  assert.equal(seg[0]![0], 100);
  assert.equal(seg[seg.length - 1]![1], 400);
  for (const [s, e, n] of seg) assert.ok(dense.subarray(s, e).every((x) => x === n));
  assert.throws(() => runs.nodeAt(pages), /outside/);
});

test('queryWindow answers runs equal to the per-page query, reusing one batch-sized scratch', () => {
  // A writable mapping of this process (its pages are mostly present: the heap, the stack).
  const m = readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => /^([0-9a-f]+)-([0-9a-f]+) rw-p/.exec(l)).find((x) => x && parseInt(x[2]!, 16) - parseInt(x[1]!, 16) >= 64 * 4096)!;
  assert.ok(m, 'a writable mapping of 64 pages');
  const start = parseInt(m[1]!, 16);
  const runs = [{ start, pages: 40, firstPage: 100 }, { start: start + 48 * 4096, pages: 16, firstPage: 148 }];
  const scratch = new QueryScratch();
  const got = queryWindow(process.pid, runs, 100, 64, 7, scratch);
  const addrs = scratch.addrs;
  // The kernel's answer page by page, for comparison.
  const truth = new Int16Array(64).fill(-1);
  const st = queryPageNodes(process.pid, Array.from({ length: 40 }, (_, i) => start + i * 4096));
  const st2 = queryPageNodes(process.pid, Array.from({ length: 16 }, (_, i) => start + (48 + i) * 4096));
  st.forEach((v, i) => (truth[i] = v >= 0 ? v : -1));
  st2.forEach((v, i) => (truth[48 + i] = v >= 0 ? v : -1));
  const fromRuns = new Int16Array(64).fill(-1);
  for (let k = 0; k < got.runs.count; k++) fromRuns.fill(got.runs.nodes[k]!, got.runs.starts[k]! - 100, got.runs.starts[k]! - 100 + got.runs.lengths[k]!);
  assert.deepEqual(fromRuns, truth);
  assert.deepEqual(runsOf(truth, 0, 64).count, got.runs.count, 'as few runs as the answer has stretches');
  assert.ok(got.runs.count >= 1);
  assert.equal(scratch.addrs.length, 7, 'the scratch is one batch, not the window');
  queryWindow(process.pid, runs, 100, 64, 7, scratch);
  assert.equal(scratch.addrs, addrs, 'the same buffers serve the next window');
  assert.throws(() => queryWindow(process.pid, runs, 0, 64, 7), /outside the window/);
});

test('pages the tracker saw mapped as a 2 MiB unit are asked once per unit, all taking the head page\'s node', () => {
  const keep = Buffer.alloc(8 * 2 ** 20, 1); // an 8 MiB allocation: a mapping with a whole 2 MiB unit inside
  const maps = readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => /^([0-9a-f]+)-([0-9a-f]+) rw-p/.exec(l)).filter((x): x is RegExpExecArray => x !== null);
  const m = maps.map((x) => [parseInt(x[1]!, 16), parseInt(x[2]!, 16)] as const).find(([s, e]) => e - (s + 2 ** 21 - (s % 2 ** 21)) >= 2 ** 21)!;
  assert.ok(m, 'a writable mapping holding an aligned 2 MiB unit');
  const unitAddr = m[0] + ((2 ** 21 - (m[0] % 2 ** 21)) % 2 ** 21);
  // The window: 16 pages of 4 KiB before the unit, the unit (512 pages), numbered from page 1000.
  const runs = [{ start: unitAddr - 16 * 4096, pages: 16 + 512, firstPage: 1000 }];
  const units = [{ firstPage: 1016, pages: 512, shift: 21 as const }];
  const got = queryWindow(process.pid, runs, 1000, 528, 64, new QueryScratch(), units);
  assert.equal(got.asked, 16 + 1, 'one address per 4 KiB page, one for the unit');
  const head = queryPageNodes(process.pid, [unitAddr])[0]!;
  const dense = new Int16Array(528).fill(-1);
  for (let k = 0; k < got.runs.count; k++) dense.fill(got.runs.nodes[k]!, got.runs.starts[k]! - 1000, got.runs.starts[k]! - 1000 + got.runs.lengths[k]!);
  assert.ok(dense.subarray(16).every((v) => v === (head >= 0 ? head : -1)), 'the unit\'s 512 pages have its head\'s node');
  const plain = queryWindow(process.pid, runs, 1000, 528, 64);
  assert.equal(plain.asked, 528, 'without the unit map: one address per page');
  assert.throws(() => queryWindow(process.pid, runs, 1000, 528, 64, new QueryScratch(), [units[0]!, { firstPage: 1100, pages: 4, shift: 21 }]), /overlap or are not sorted/);
  void keep;
});
