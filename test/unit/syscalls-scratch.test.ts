// The syscall layer allocates nothing per call (src/sys/syscalls.ts): move_pages(2)'s 64-bit
// addresses go through one thread-wide buffer grown once to the batch, the kernel writes its
// statuses into the caller's buffer. Before, every call allocated a BigUint64Array and an
// Int32Array status: 12 bytes of garbage per queried page, which glibc may keep resident.
// Real move_pages on this process's own pages (a query, and moves to node 0 where they already
// are on this one-node machine), counted two ways: typed arrays constructed with storage of
// their own (a view on an existing buffer is not an allocation), and the process's array-buffer
// bytes, summed over every increase between calls (a GC in between cannot hide allocations).
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MOVE_PAGES_INJECT_ENV } from '../../src/sys/fault-injection.js';
import { MoveScratch, movePagesToNode } from '../../src/migrate/move.js';
import { MADV_COLD, MOVE_PAGES_BATCH, MOVE_STATUS_UNSET, closeFd, movePagesRaw, pidfdOpen, processMadvise, queryPageNodes, syscallScratchBytes } from '../../src/sys/syscalls.js';

afterEach(() => {
  delete process.env[MOVE_PAGES_INJECT_ENV];
});

// A mapping of this process's own: 16 MiB, its first 4 MiB touched (present), the rest not.
export const mem = new Uint8Array(16 << 20);
mem.fill(1, 0, 4 << 20);
const PAGES = 4096;
/** Page addresses of `mem`'s mapping: the rw mapping of >= 16 MiB whose first 1024 pages the kernel finds most present. */
function ownPages(): Float64Array {
  let best: { start: number; present: number } | null = null;
  for (const l of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) rw-p/.exec(l);
    if (!m) continue;
    const start = parseInt(m[1]!, 16);
    if (parseInt(m[2]!, 16) - start < PAGES * 4096) continue;
    const present = queryPageNodes(process.pid, Float64Array.from({ length: 1024 }, (_, i) => start + i * 4096)).filter((v) => v >= 0).length;
    if (!best || present > best.present) best = { start, present };
  }
  assert.ok(best, 'a rw mapping of 16 MiB');
  return Float64Array.from({ length: PAGES }, (_, i) => best!.start + i * 4096);
}

const TYPED = ['Int8Array', 'Uint8Array', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array', 'Float64Array', 'BigUint64Array', 'BigInt64Array'] as const;

/** Runs `fn`, counting typed arrays constructed with storage of their own, and array-buffer bytes that appeared. */
function allocationsOf(fn: () => void, calls: number): { arrays: number; bytes: number } {
  const g = globalThis as unknown as Record<string, unknown>;
  const saved = TYPED.map((k) => g[k]);
  let arrays = 0;
  for (const k of TYPED) {
    const C = g[k] as new (...a: unknown[]) => unknown;
    g[k] = new Proxy(C, {
      construct(target, args, newTarget) {
        const a0 = args[0];
        if (!(a0 instanceof ArrayBuffer) && !(a0 instanceof SharedArrayBuffer)) arrays++;
        return Reflect.construct(target, args, newTarget === g[k] ? target : newTarget);
      },
    });
  }
  let bytes = 0;
  try {
    let last = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < calls; i++) {
      fn();
      const now = process.memoryUsage().arrayBuffers;
      if (now > last) bytes += now - last;
      last = now;
    }
  } finally {
    TYPED.forEach((k, i) => (g[k] = saved[i]));
  }
  return { arrays, bytes };
}

test('queryPageNodes into a given buffer allocates nothing per call, and answers as before', () => {
  const addrs = ownPages();
  const out = new Int32Array(PAGES);
  // Warm: the thread's address buffer grows once, to the batch.
  queryPageNodes(process.pid, addrs, MOVE_PAGES_BATCH, out);
  const scratchBytes = syscallScratchBytes();
  assert.ok(scratchBytes >= MOVE_PAGES_BATCH * 8 && scratchBytes <= 4 * MOVE_PAGES_BATCH * 8, `batch-sized: ${scratchBytes} B`);
  // The answers land where they belong, batch after batch (one address per page, compared with a call per page).
  const present = out.subarray(0, 1024).filter((v) => v >= 0).length;
  assert.ok(present > 900, `the touched pages are present (${present} of 1024)`);
  for (const i of [0, 1, 1023, 1024, 2047, 2048, 3071, 3072, PAGES - 1]) assert.equal(out[i], queryPageNodes(process.pid, [addrs[i]!])[0], `page ${i}`);
  const a = allocationsOf(() => queryPageNodes(process.pid, addrs, MOVE_PAGES_BATCH, out), 100);
  // 100 calls × 4096 pages × 8 bytes = 3.1 MiB with an address buffer per call (4.7 MiB with a status array too).
  assert.ok(a.bytes < 64 * 1024, `array buffers appeared over 100 queries of ${PAGES} pages: ${a.bytes} B`);
  assert.equal(a.arrays, 0, 'no typed array with storage of its own per call');
  assert.equal(syscallScratchBytes(), scratchBytes, 'the thread buffer did not grow');
});

test('moves into the caller\'s status buffer allocate nothing per call (number and 64-bit addresses)', () => {
  const addrs = ownPages().subarray(0, MOVE_PAGES_BATCH);
  const words = new BigUint64Array(addrs.length);
  addrs.forEach((a, i) => (words[i] = BigInt(a)));
  const nodes = new Int32Array(addrs.length);
  const status = new Int32Array(addrs.length);
  const st = movePagesRaw(process.pid, addrs, nodes, 2, status);
  const stBuffer = st.buffer;
  assert.ok(st.filter((v) => v === 0).length > 900, 'present pages are on node 0');
  assert.ok(!st.includes(MOVE_STATUS_UNSET), 'every status written');
  const a = allocationsOf(() => {
    movePagesRaw(process.pid, addrs, nodes, 2, status);
    movePagesRaw(process.pid, words, nodes, 2, status);
  }, 50);
  assert.ok(a.bytes < 64 * 1024, `array buffers appeared over 100 moves of ${addrs.length} pages: ${a.bytes} B`);
  assert.equal(a.arrays, 0);
  assert.equal(stBuffer, status.buffer, 'the caller\'s buffer is the answer');
  // The mover, given its scratch: no typed array per batch or call either.
  const scratch = new MoveScratch();
  movePagesToNode(process.pid, addrs, 0, { batch: 256, scratch });
  const m = allocationsOf(() => movePagesToNode(process.pid, addrs, 0, { batch: 256, scratch }), 50);
  assert.equal(m.arrays, 0);
  assert.ok(m.bytes < 64 * 1024, `array buffers appeared over 50 mover calls: ${m.bytes} B`);
});

test('fault injection still answers in the caller\'s buffer, and a query never sees it', () => {
  const addrs = ownPages().subarray(0, 8);
  const status = new Int32Array(16).fill(7);
  process.env[MOVE_PAGES_INJECT_ENV] = 'EBUSY';
  const st = movePagesRaw(process.pid, addrs, new Int32Array(8), 2, status);
  assert.deepEqual([...st], Array(8).fill(-16));
  assert.equal(st.buffer, status.buffer);
  assert.equal(status[8], 7, 'nothing past the call\'s pages is written');
  process.env[MOVE_PAGES_INJECT_ENV] = 'ARRIVED';
  assert.deepEqual([...movePagesRaw(process.pid, addrs, Int32Array.from({ length: 8 }, () => 1), 2, status)], Array(8).fill(1));
  assert.ok(queryPageNodes(process.pid, addrs, 4, new Int32Array(8)).every((v) => v === 0), 'the query asks the kernel');
  process.env[MOVE_PAGES_INJECT_ENV] = 'ENOMEM';
  assert.throws(() => movePagesRaw(process.pid, addrs, new Int32Array(8), 2, status), { code: 'KERNEL_ERROR' });
  assert.throws(() => movePagesRaw(process.pid, addrs, new Int32Array(8), 2, new Int32Array(4)), { code: 'INVALID_INPUT' }, 'a status buffer too small is refused');
});

test('process_madvise writes its iovecs into the thread buffer: the kernel advises what was asked, nothing allocated per call', () => {
  const addrs = ownPages();
  const pidfd = pidfdOpen(process.pid);
  try {
    // Three ranges of this process's own mapping (MADV_COLD only deactivates them).
    const ranges = [0, 64, 1024].map((p) => ({ start: addrs[p]!, end: addrs[p]! + 16 * 4096 }));
    assert.equal(processMadvise(pidfd, ranges, MADV_COLD), 3 * 16 * 4096, 'every byte of every iovec advised');
    const a = allocationsOf(() => processMadvise(pidfd, ranges, MADV_COLD), 50);
    assert.equal(a.arrays, 0);
    assert.ok(a.bytes < 16 * 1024, `array buffers appeared over 50 calls: ${a.bytes} B`);
  } finally {
    closeFd(pidfd);
  }
});
