// Each VM loop's worker thread has its own V8 isolate, which prom-client's vmtier_nodejs_heap_*
// (the main thread's) does not see: the thread sends its heap with every reply and /metrics shows
// it per VM as vmtier_engine_worker_heap_bytes (bench:soak samples it to tell a heap leak in a VM
// thread from native memory). These check that the figures are the thread's own, not the main
// thread's, and that the series go when the thread or the VM does (no stale series left behind).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { EngineMetrics } from '../../src/daemon/metrics.js';
import { VmWorker } from '../../src/daemon/vm-worker.js';
import { isVmtierError } from '../../src/errors.js';

test('a VM worker reports its own thread\'s heap with each reply, and none once closed', async () => {
  const w = new VmWorker();
  // Read through a function: after the null check TypeScript would keep w.heap narrowed to null.
  const heapOf = () => w.heap;
  try {
    assert.equal(w.heap, null, 'no heap before the thread answered');
    // An error reply carries the heap too: trackerScan without a tracker fails in the thread.
    await assert.rejects(w.trackerScan(1, 0, new Uint8Array(0)), (e) => isVmtierError(e) && e.code === 'TRACKER_UNAVAILABLE');
    const first = heapOf();
    assert.ok(first, 'heap after an error reply');
    assert.ok(first.usedBytes > 0 && first.usedBytes <= first.totalBytes, JSON.stringify(first));
    // The thread's isolate, not this one's: grow this thread's heap by ~64 MiB of live objects
    // (the thread's is a few MiB); a reply that read the main thread's heap would follow it.
    const ballast = Array.from({ length: 1 << 20 }, (_, i) => ({ i, s: `x${i}` }));
    await assert.rejects(w.trackerScan(1, 0, new Uint8Array(0)));
    const second = heapOf()!;
    assert.ok(second.usedBytes < 32 * 2 ** 20, `worker heap ${second.usedBytes} bytes: the main thread's?`);
    assert.ok(process.memoryUsage().heapUsed > second.usedBytes + 32 * 2 ** 20, 'the ballast did not grow this heap');
    assert.equal(ballast.length, 1 << 20);
  } finally {
    await w.close();
  }
  assert.equal(heapOf(), null, 'a closed worker reports no heap');
});

test('vmtier_engine_worker_heap_bytes: used/total/external per VM, removed with the thread and with the VM', async () => {
  const registry = new Registry();
  const m = new EngineMetrics(registry);
  const series = async () => (await registry.metrics()).split('\n').filter((l) => l.startsWith('vmtier_engine_worker_heap_bytes{'));
  m.workerHeap('u1', 'web', { usedBytes: 10, totalBytes: 20, externalBytes: 3 });
  m.workerHeap('u2', 'db', { usedBytes: 11, totalBytes: 21, externalBytes: 4 });
  assert.deepEqual((await series()).filter((l) => l.includes('"u1"')).sort(), [
    'vmtier_engine_worker_heap_bytes{vm_uuid="u1",vm_name="web",kind="external"} 3',
    'vmtier_engine_worker_heap_bytes{vm_uuid="u1",vm_name="web",kind="total"} 20',
    'vmtier_engine_worker_heap_bytes{vm_uuid="u1",vm_name="web",kind="used"} 10',
  ]);
  m.workerHeap('u1', 'web', null);
  assert.equal((await series()).filter((l) => l.includes('"u1"')).length, 0, 'no thread: no series');
  m.forget('u2', 'db');
  assert.deepEqual(await series(), [], 'a forgotten VM keeps no heap series');
});

test('a VM thread reserves a small young generation: its heap stays well under a default isolate\'s after churn', async () => {
  const { readFileSync } = await import('node:fs');
  const m = readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => /^([0-9a-f]+)-([0-9a-f]+) rw-p/.exec(l)).find((x) => x && parseInt(x[2]!, 16) - parseInt(x[1]!, 16) >= 64 * 4096)!;
  const start = parseInt(m[1]!, 16);
  const w = new VmWorker();
  try {
    // Every VM pays for its own isolate: with V8's default semi-spaces the thread reserves ~29 MiB
    // after this (measured here, 2026-12-07), with vm-worker.ts's WORKER_YOUNG_MB (4) ~19 MiB.
    for (let i = 0; i < 200; i++) await w.query(process.pid, [{ start, pages: 64, firstPage: 0 }], 0, 64, 16);
    const h = w.heap!;
    assert.ok(h.totalBytes < 24 * 2 ** 20, `the VM thread reserves ${h.totalBytes} bytes of V8 heap`);
  } finally {
    await w.close();
  }
});
