// The mover's move_pages batches reuse one batch-sized scratch (src/migrate/move.ts MoveScratch):
// moving many pages allocates nothing sized by them. Real move_pages(2) on this process's own
// pages, to node 0 (where they already are on this one-node machine: "moved", nothing changes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MoveScratch, moveBatch, movePagesToNode } from '../../src/migrate/move.js';
import { queryPageNodes } from '../../src/sys/syscalls.js';

/** Addresses of `pages` pages of a writable mapping of this process. */
function ownPages(pages: number): Float64Array {
  const m = readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => /^([0-9a-f]+)-([0-9a-f]+) rw-p/.exec(l)).find((x) => x && parseInt(x[2]!, 16) - parseInt(x[1]!, 16) >= pages * 4096)!;
  assert.ok(m, `a writable mapping of ${pages} pages`);
  const start = parseInt(m[1]!, 16);
  return Float64Array.from({ length: pages }, (_, i) => start + i * 4096);
}

test('movePagesToNode fills one batch-sized scratch and reuses it for every batch and call', () => {
  const addrs = ownPages(300);
  const node = 0;
  const present = Array.from(queryPageNodes(process.pid, addrs)).filter((v) => v >= 0).length;
  const scratch = new MoveScratch();
  const reached = new Uint8Array(addrs.length);
  const o = movePagesToNode(process.pid, addrs, node, { batch: 16, scratch, reached });
  assert.equal(o.calls >= Math.ceil(300 / 16), true);
  assert.equal(o.moved, present, 'present pages are on node 0 (moved), the rest not present');
  assert.equal(reached.reduce((a, b) => a + b, 0), present);
  assert.equal(scratch.words.length, 16, 'one batch of 64-bit addresses, not one per page');
  assert.equal(scratch.bytes, 16 * (8 + 4 + 8 + 4 + 4 + 1));
  const words = scratch.words;
  const nodes = scratch.nodes;
  movePagesToNode(process.pid, addrs, node, { batch: 16, scratch });
  assert.equal(scratch.words, words, 'the same buffers serve the next call');
  assert.equal(scratch.nodes, nodes);
});

test('moveBatch hands its scratch to every batch: bounded by the batch whatever the move', () => {
  const addrs = ownPages(256);
  const scratch = new MoveScratch();
  const r = moveBatch(process.pid, addrs, 0, 32, scratch);
  assert.equal(r.counts.requested, 256);
  assert.equal(r.reached.length, 256);
  assert.equal(scratch.words.length, 32, 'batch-sized');
  const before = scratch.words;
  moveBatch(process.pid, addrs.subarray(0, 100), 0, 32, scratch);
  assert.equal(scratch.words, before, 'reused, not reallocated');
});
