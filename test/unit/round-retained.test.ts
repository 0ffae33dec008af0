// Issue 13: the bytes a VM's round state retains per GiB of guest RAM. The cold-round counts
// (2 bytes per 4 KiB page) are kept only while the policy advises MADV_COLD (tier mode with
// madviseCold); a VM that does not advise retains none of them, across a relayout too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RoundState } from '../../src/daemon/round/round.js';

const PAGES_PER_GIB = 2 ** 30 / 4096;

test('round state: no cold-round counts retained for a VM that does not advise (was 2 bytes per 4 KiB page)', () => {
  const s = new RoundState();
  s.relayout();
  assert.equal(s.coldRounds.byteLength, 0, 'a relayout allocates no per-page cold counts');
  assert.equal(s.coldCounts(PAGES_PER_GIB, false), null);
  assert.equal(s.coldRounds.byteLength, 0);
  const c = s.coldCounts(PAGES_PER_GIB, true);
  assert.ok(c && c.length === PAGES_PER_GIB, 'advising keeps a count per page');
  c[7] = 3;
  assert.equal(s.coldCounts(PAGES_PER_GIB, true)![7], 3, 'kept from round to round while advising');
  assert.equal(s.coldCounts(PAGES_PER_GIB, false), null);
  assert.equal(s.coldRounds.byteLength, 0, 'released when advising stops');
  assert.equal(s.coldCounts(PAGES_PER_GIB, true)![7], 0, 'advising again starts every count at 0');
  s.relayout();
  assert.equal(s.coldRounds.byteLength, 0, 'a relayout drops the old layout\'s counts');
});

test('round state: the policy input buffers are shared with the worker thread, not copied per round', async () => {
  const { Worker } = await import('node:worker_threads');
  const s = new RoundState();
  const b = s.buffers(PAGES_PER_GIB);
  assert.ok(b.counts.buffer instanceof SharedArrayBuffer && b.tiers.buffer instanceof SharedArrayBuffer);
  assert.equal(s.buffers(PAGES_PER_GIB), b, 'the same buffers from round to round');
  // What postMessage does to the decide() input: the thread sees the main thread's memory.
  const w = new Worker(
    "const { parentPort } = require('node:worker_threads'); parentPort.once('message', (m) => { m.counts[5] = 9; m.tiers[6] = 2; parentPort.postMessage(m.counts[4] + m.tiers[7]); });",
    { eval: true },
  );
  try {
    b.counts[4] = 3;
    b.tiers[7] = 1;
    const seen = await new Promise<number>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
      w.postMessage({ counts: b.counts, tiers: b.tiers });
    });
    assert.equal(seen, 4, 'the thread read what this thread wrote');
    assert.equal(b.counts[5], 9, 'and wrote into the same counts');
    assert.equal(b.tiers[6], 2, 'and tiers');
  } finally {
    await w.terminate();
  }
  assert.notEqual(s.buffers(PAGES_PER_GIB + 1), b, 'a new layout size gets new buffers');
});
