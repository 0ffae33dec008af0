import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ReplayTracker, traceRanges } from '../../src/scan/replay.js';
import { loadTrace, parseTrace, TraceRecorder } from '../../src/scan/trace.js';
import { createTracker } from '../../src/scan/index.js';
import { isVmtierError } from '../../src/errors.js';

const P = 4096;

// Pages 0..5; epochs 0..3.
const TRACE = [
  'epoch,page,accesses',
  '0,0,5', '0,1,1', '0,2,0',
  '1,1,3', '1,1,4',
  '2,3,1', '2,0,0',
  '3,0,2', '3,5,9',
].join('\n') + '\n';

test('parseTrace: epochs, pages, distinct accessed pages per epoch, known pages', () => {
  const t = parseTrace(TRACE);
  assert.equal(t.epochs, 4);
  assert.equal(t.pages, 6);
  assert.deepEqual([...t.accessed[0]!], [0, 1]);
  assert.deepEqual([...t.accessed[1]!], [1]);
  assert.deepEqual([...t.accessed[2]!], [3]);
  assert.deepEqual([...t.known], [1, 1, 1, 1, 0, 1]);
});

test('parseTrace rejects bad headers and rows with INVALID_TRACE and the line number', () => {
  const cases: [string, RegExp][] = [
    ['page,epoch,accesses\n0,0,1\n', /header/],
    ['epoch,page,accesses\n0,0\n', /line 2/],
    ['epoch,page,accesses\n0,0,1\n1,-3,1\n', /line 3/],
    ['epoch,page,accesses\n0,x,1\n', /page/],
    ['epoch,page,accesses\n0,0,1.5\n', /accesses/],
    ['vm,epoch,page,accesses\na,0,0,1\nb,0,0,1\n', /2 VMs/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseTrace(text), (e) => isVmtierError(e, 'INVALID_TRACE') && re.test((e as Error).message), text);
  }
  assert.throws(() => parseTrace(TRACE, { vm: 'a' }), (e) => isVmtierError(e, 'INVALID_TRACE'));
});

test('replay: one epoch per scan, a page counts once per scan, the position carries over rounds', async () => {
  const t = new ReplayTracker({ trace: parseTrace(TRACE) });
  await t.track(0, traceRanges(t.trace));
  const counts = new Uint8Array(6);
  const r1 = await t.scan({ scans: 2, intervalMs: 0, counts });
  assert.equal(r1.tracker, 'replay');
  assert.deepEqual([...counts], [1, 2, 0, 0, 0, 0]);
  // Page 4 is not in the trace: not present, between two 4 KiB runs.
  assert.deepEqual([...r1.ranges[0]!.mapped], [0, 4, 12, 5, 1, 12]);
  assert.equal(t.epoch, 2);
  await t.scan({ scans: 2, intervalMs: 0, counts });
  assert.deepEqual([...counts], [1, 0, 0, 1, 0, 1]);
  assert.equal(t.exhausted, true);
  await t.scan({ scans: 3, intervalMs: 0, counts });
  assert.deepEqual([...counts], [0, 0, 0, 0, 0, 0], 'past the end nothing is accessed');
});

test('replay: a scan covering epochs [a,b) sees a page iff accessed in any of them', async () => {
  const t = new ReplayTracker({ trace: parseTrace(TRACE), epochsPerScan: 2 });
  await t.track(0, traceRanges(t.trace));
  const counts = new Uint8Array(6);
  await t.scan({ scans: 2, intervalMs: 0, counts });
  // scan 0 = epochs 0-1: pages 0,1 (page 1 in both: once); scan 1 = epochs 2-3: pages 3,0,5.
  assert.deepEqual([...counts], [2, 1, 0, 1, 0, 1]);
  // The same again from the start (the bits of one scan never leak into the next).
  const again = new ReplayTracker({ trace: parseTrace(TRACE), epochsPerScan: 2 });
  await again.track(0, traceRanges(again.trace));
  await again.scan({ scans: 2, intervalMs: 0, counts });
  assert.deepEqual([...counts], [2, 1, 0, 1, 0, 1]);
});

test('replay: loop starts over; ranges map trace pages onto tracked pages laid end to end', async () => {
  const t = new ReplayTracker({ trace: parseTrace(TRACE), loop: true, startEpoch: 3 });
  await t.track(123, [{ start: 0x40000, end: 0x42000 }, { start: 0x10000, end: 0x14000 }]);
  const counts = new Uint8Array(6);
  const r = await t.scan({ scans: 2, intervalMs: 0, counts });
  assert.equal(r.pid, 123);
  // Sorted ranges: [0x10000,0x14000) = pages 0..3, [0x40000,0x42000) = pages 4..5.
  assert.deepEqual(r.ranges.map((x) => [x.start, x.firstPage]), [[0x10000, 0], [0x40000, 4]]);
  assert.deepEqual([...counts], [2, 1, 0, 0, 0, 1]);
  assert.deepEqual([...r.ranges[1]!.mapped], [1, 1, 12], 'trace page 4 is unknown: the second range\'s first page is not present');
  assert.equal(t.exhausted, false);
});

test('replay: vm column selection and .csv.gz input', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-replay-'));
  try {
    const path = join(dir, 't.csv.gz');
    writeFileSync(path, gzipSync('vm,epoch,page,accesses\na,0,0,1\nb,0,1,1\na,1,2,1\n'));
    const t = createTracker('replay', { replay: { trace: path, vm: 'a' } });
    await t.track(0, [{ start: 0, end: 3 * P }]);
    const counts = new Uint8Array(3);
    await t.scan({ scans: 2, intervalMs: 0, counts });
    assert.deepEqual([...counts], [1, 0, 1]);
    assert.throws(() => loadTrace(path), (e) => isVmtierError(e, 'INVALID_TRACE'));
    assert.throws(() => loadTrace(join(dir, 'missing.csv')), (e) => isVmtierError(e, 'NOT_FOUND'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('replay validates requests', async () => {
  const t = new ReplayTracker({ trace: parseTrace(TRACE) });
  const counts = new Uint8Array(6);
  await assert.rejects(t.scan({ scans: 1, intervalMs: 0, counts }), (e) => isVmtierError(e, 'INVALID_INPUT'));
  await t.track(0, traceRanges(t.trace));
  for (const scans of [0, 256, 1.5]) {
    await assert.rejects(t.scan({ scans, intervalMs: 0, counts }), (e) => isVmtierError(e, 'INVALID_INPUT'));
  }
  for (const wrong of [new Uint8Array(5), new Uint8Array(7)]) {
    await assert.rejects(t.scan({ scans: 1, intervalMs: 0, counts: wrong }), (e) => isVmtierError(e, 'INVALID_INPUT') && /6 are tracked/.test((e as Error).message));
  }
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(t.scan({ scans: 1, intervalMs: 0, counts, signal: ac.signal }), (e) => isVmtierError(e, 'VM_GONE'));
});

test('recorder round trip: what was recorded replays to the same counts, and appends continue the epochs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-rec-'));
  try {
    const path = join(dir, 'rec.csv');
    const scans = [
      { seen: [1, 0, 0, 1], present: [1, 1, 0, 1] },
      { seen: [1, 1, 0, 0], present: [1, 1, 0, 1] },
      { seen: [0, 0, 0, 0], present: [1, 1, 1, 1] },
    ];
    const rec = new TraceRecorder(path);
    for (const s of scans.slice(0, 2)) rec.record(Uint8Array.from(s.seen), Uint8Array.from(s.present));
    // A second recorder (a later `vmtier scan --record` run) continues after epoch 1.
    const rec2 = new TraceRecorder(path);
    assert.equal(rec2.epoch, 2);
    rec2.record(Uint8Array.from(scans[2]!.seen), Uint8Array.from(scans[2]!.present));
    const trace = loadTrace(path);
    assert.equal(trace.epochs, 3, 'an idle epoch is still in the file');
    const t = new ReplayTracker({ trace });
    await t.track(0, [{ start: 0, end: 4 * P }]);
    const counts = new Uint8Array(4);
    const r = await t.scan({ scans: 3, intervalMs: 0, counts });
    assert.deepEqual([...counts], [2, 1, 0, 1]);
    assert.deepEqual([...r.ranges[0]!.mapped], [0, 4, 12], 'every page recorded present is known to the trace');
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    assert.equal(lines[0], 'epoch,page,accesses');
    assert.equal(lines.filter((l) => l.endsWith(',0')).length, 2, 'pages 1 and 2 are each written once as idle before being seen');
    // A recording with a vm column cannot be appended to a file without one.
    assert.throws(() => new TraceRecorder(path, { vm: 'x' }), (e) => isVmtierError(e, 'INVALID_TRACE'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
