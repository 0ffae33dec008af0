// The VM's tracker runs in its worker thread (src/daemon/thread-tracker.ts): the same counts as
// the tracker run here, with the main thread's own CPU time (its schedstat) a small fraction of
// what the same scan costs when it runs on the main thread. The replay tracker stands in for the
// kernel trackers (kmod and DAMON cannot run on this machine); its per-page counting is the work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ThreadTracker, createVmTracker } from '../../src/daemon/thread-tracker.js';
import { VmWorker } from '../../src/daemon/vm-worker.js';
import { DamonTracker } from '../../src/scan/damon.js';
import { ReplayTracker } from '../../src/scan/replay.js';
import type { Trace } from '../../src/scan/trace.js';
import { isVmtierError } from '../../src/errors.js';

const PAGES = 1 << 22; // 16 GiB of 4 KiB pages
const EPOCHS = 8;

function trace(): Trace {
  // Every other page accessed in every epoch: the scan touches millions of pages.
  const accessed = Array.from({ length: EPOCHS }, (_, e) => {
    const a = new Uint32Array(PAGES / 2);
    for (let i = 0; i < a.length; i++) a[i] = 2 * i + (e & 1);
    return a;
  });
  return { epochs: EPOCHS, pages: PAGES, accessed, known: new Uint8Array(PAGES).fill(1), vms: [] };
}

/** The main thread's on-CPU ns so far (tid = pid). */
function mainThreadCpuNs(): number {
  return Number(readFileSync(`/proc/${process.pid}/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
}

test('a replay scan in the VM worker thread: same counts, main-thread CPU a fraction of the scan run here', async () => {
  const tr = trace();
  const ranges = [{ start: 0x7f0000000000, end: 0x7f0000000000 + PAGES * 4096 }];
  const req = { scans: EPOCHS, intervalMs: 0 };

  const local = new ReplayTracker({ trace: tr });
  await local.track(1, ranges);
  const c0 = mainThreadCpuNs();
  const here = await local.scan(req);
  const hereNs = mainThreadCpuNs() - c0;

  const worker = new VmWorker();
  try {
    const remote = new ThreadTracker(worker, 'replay', { replay: { trace: tr, loop: true } });
    await remote.track(1, ranges);
    await remote.scan({ scans: 2, intervalMs: 0 }); // the thread's JIT warms up; the trace cursor moves two epochs
    const c1 = mainThreadCpuNs();
    const there = await remote.scan(req);
    const thereNs = mainThreadCpuNs() - c1;
    assert.equal(there.ranges[0]!.counts.length, PAGES);
    // Two epochs further along (looping): every page was accessed in half the epochs either way.
    assert.equal(there.ranges[0]!.counts[0], EPOCHS / 2);
    assert.equal(there.ranges[0]!.counts[1], EPOCHS / 2);
    assert.equal(here.ranges[0]!.counts[0], EPOCHS / 2);
    console.log(`# main-thread CPU for a ${PAGES}-page replay scan: ${(hereNs / 1e6).toFixed(1)} ms on the main thread, ${(thereNs / 1e6).toFixed(1)} ms in the worker`);
    assert.ok(hereNs > 50e6, `the scan is real work here (${hereNs / 1e6} ms)`);
    assert.ok(thereNs < hereNs * 0.25, `main thread spent ${(thereNs / 1e6).toFixed(1)} ms of CPU with the tracker in the worker vs ${(hereNs / 1e6).toFixed(1)} ms running it`);
    await remote.close();
  } finally {
    await worker.close();
  }
});

test('an unknown tracker or one without its options fails typed from the thread, and the kmod tracker without its device is TRACKER_UNAVAILABLE', async () => {
  const worker = new VmWorker();
  try {
    await assert.rejects(new ThreadTracker(worker, 'replay', {}).track(1, [{ start: 0, end: 4096 }]), (e) => isVmtierError(e, 'INVALID_INPUT'));
    await assert.rejects(new ThreadTracker(worker, 'kmod', { kmodDevice: '/nonexistent/vmtier_idle' }).track(process.pid, [{ start: 0, end: 4096 }]),
      (e) => isVmtierError(e, 'TRACKER_UNAVAILABLE'));
    assert.ok(createVmTracker(worker, 'damon', {}) instanceof DamonTracker, 'DAMON is controlled from the main thread');
  } finally {
    await worker.close();
  }
});

test('an aborted scan in the thread rejects at once and leaves the thread and its tracker usable', async () => {
  const worker = new VmWorker();
  try {
    const tr: Trace = { epochs: 1, pages: 16, accessed: [Uint32Array.of(1, 2)], known: new Uint8Array(16).fill(1), vms: [] };
    const t = new ThreadTracker(worker, 'replay', { replay: { trace: tr, paced: true, loop: true } });
    await t.track(1, [{ start: 0, end: 16 * 4096 }]);
    const ac = new AbortController();
    const p = t.scan({ scans: 100, intervalMs: 1000, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stopping')), 50);
    const t0 = performance.now();
    await assert.rejects(p, /stopping/);
    assert.ok(performance.now() - t0 < 900, 'rejected before the next paced scan');
    const r = await t.scan({ scans: 1, intervalMs: 0 });
    assert.equal(r.ranges[0]!.counts[1], 1, 'the same tracker scans again');
    await t.close();
  } finally {
    await worker.close();
  }
});

test('a placement query in the VM thread writes the caller\'s shared window in place, and answers what a copied query answers', async () => {
  const { PlacementCache, windowRuns } = await import('../../src/migrate/placement-cache.js');
  const m = readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => /^([0-9a-f]+)-([0-9a-f]+) rw-p/.exec(l)).find((x) => x && parseInt(x[2]!, 16) - parseInt(x[1]!, 16) >= 32 * 4096)!;
  const segments = [{ start: parseInt(m[1]!, 16), firstPage: 0, pages: 32 }];
  const w = new VmWorker();
  try {
    const copied = await w.query(process.pid, windowRuns(segments, { first: 0, count: 32 }), 0, 32, 5);
    const pc = new PlacementCache(32, 4);
    let answered: unknown = 'unset';
    await pc.refresh(async (win, into) => {
      const r = await w.query(process.pid, windowRuns(segments, win), win.first, win.count, 5, undefined, into);
      answered = r.node.buffer instanceof SharedArrayBuffer;
      return null;
    });
    assert.equal(answered, true, 'the answer came back shared, not as a copy');
    assert.deepEqual(Array.from(pc.node), Array.from(copied.node), 'the thread wrote the cache\'s memory');
    assert.ok(Array.from(pc.node).some((v) => v >= 0));
  } finally {
    await w.close();
  }
});
