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
/** Each epoch twice over (the trace loops): enough counting to be real work on the main thread. */
const SCANS = 2 * EPOCHS;

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
  const hereCounts = new Uint8Array(PAGES);
  // As the daemon's round buffer: shared, so the thread writes it in place.
  const thereCounts = new Uint8Array(new SharedArrayBuffer(PAGES));

  const local = new ReplayTracker({ trace: tr, loop: true });
  await local.track(1, ranges);
  const c0 = mainThreadCpuNs();
  await local.scan({ scans: SCANS, intervalMs: 0, counts: hereCounts });
  const hereNs = mainThreadCpuNs() - c0;

  const worker = new VmWorker();
  try {
    const remote = new ThreadTracker(worker, 'replay', { replay: { trace: tr, loop: true } });
    await remote.track(1, ranges);
    await remote.scan({ scans: 2, intervalMs: 0, counts: thereCounts }); // the thread's JIT warms up; the trace cursor moves two epochs
    const c1 = mainThreadCpuNs();
    const there = await remote.scan({ scans: SCANS, intervalMs: 0, counts: thereCounts });
    const thereNs = mainThreadCpuNs() - c1;
    // Two epochs further along (looping): every page was accessed in half the epochs either way.
    assert.equal(thereCounts[0], SCANS / 2);
    assert.equal(thereCounts[1], SCANS / 2);
    assert.equal(hereCounts[0], SCANS / 2);
    assert.deepEqual([...there.ranges[0]!.mapped], [0, PAGES, 12], 'the range came back as one mapping run');
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
    const counts = new Uint8Array(new SharedArrayBuffer(16));
    const p = t.scan({ scans: 100, intervalMs: 1000, counts, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stopping')), 50);
    const t0 = performance.now();
    await assert.rejects(p, /stopping/);
    assert.ok(performance.now() - t0 < 900, 'rejected before the next paced scan');
    await t.scan({ scans: 1, intervalMs: 0, counts });
    assert.equal(counts[1], 1, 'the same tracker scans again');
    await t.close();
  } finally {
    await worker.close();
  }
});

test('a scan in the thread writes the caller\'s shared counts in place, and sends back runs, not arrays per page', async () => {
  const worker = new VmWorker();
  try {
    // Pages 0..63 known, 64..127 not in the trace, 128..4095 known: two runs, one absent gap.
    const known = new Uint8Array(4096).fill(1).fill(0, 64, 128);
    const tr: Trace = { epochs: 1, pages: 4096, accessed: [Uint32Array.of(3, 200, 4095)], known, vms: [] };
    const t = new ThreadTracker(worker, 'replay', { replay: { trace: tr, loop: true } });
    await t.track(1, [{ start: 0x7f0000000000, end: 0x7f0000000000 + 4096 * 4096 }]);
    const counts = new Uint8Array(new SharedArrayBuffer(4096)).fill(0xff);
    const r = await t.scan({ scans: 2, intervalMs: 0, counts });
    assert.deepEqual([3, 200, 4095].map((p) => counts[p]), [2, 2, 2], 'the thread counted into this very buffer');
    assert.equal(counts.reduce((a, c) => a + c, 0), 6, 'and overwrote all of it (no 0xff left)');
    assert.deepEqual(Object.keys(r.ranges[0]!).sort(), ['end', 'firstPage', 'mapped', 'start'], 'no per-page array in the result');
    assert.deepEqual([...r.ranges[0]!.mapped], [0, 64, 12, 128, 3968, 12]);
    // A private buffer cannot be reached from the thread: it still gets the counts.
    const own = new Uint8Array(4096).fill(0xff);
    await t.scan({ scans: 1, intervalMs: 0, counts: own });
    assert.deepEqual([own[3], own[4], own.reduce((a, c) => a + c, 0)], [1, 0, 3]);
    // Counts sized for another layout are refused before the thread is asked.
    await assert.rejects(t.scan({ scans: 1, intervalMs: 0, counts: new Uint8Array(new SharedArrayBuffer(4095)) }), (e) => isVmtierError(e, 'INVALID_INPUT'));
    await t.close();
  } finally {
    await worker.close();
  }
});

test('a placement query in the VM thread answers runs, the same placement as the query run here', async () => {
  const { PlacementCache, windowRuns } = await import('../../src/migrate/placement-cache.js');
  const { queryWindow } = await import('../../src/migrate/query.js');
  const m = readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => /^([0-9a-f]+)-([0-9a-f]+) rw-p/.exec(l)).find((x) => x && parseInt(x[2]!, 16) - parseInt(x[1]!, 16) >= 32 * 4096)!;
  const segments = [{ start: parseInt(m[1]!, 16), firstPage: 0, pages: 32 }];
  const w = new VmWorker();
  try {
    const here = queryWindow(process.pid, windowRuns(segments, { first: 0, count: 32 }), 0, 32, 5);
    const pc = new PlacementCache(32, 4);
    let answered: unknown = 'unset';
    await pc.refresh(async (win) => {
      const r = await w.query(process.pid, windowRuns(segments, win), win.first, win.count, 5);
      answered = Object.keys(r.runs).sort();
      return r.runs;
    });
    assert.deepEqual(answered, ['count', 'lengths', 'nodes', 'starts'], 'runs, no per-page array');
    const mine = new PlacementCache(32, 4);
    await mine.refresh(async () => here.runs);
    assert.deepEqual(pc.node.toArray(), mine.node.toArray(), 'the thread answered what the query here answers');
    assert.ok(Array.from(pc.node.toArray()).some((v) => v >= 0));
  } finally {
    await w.close();
  }
});
