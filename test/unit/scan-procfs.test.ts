// What trackers read from /proc: mappings (default tracking set) and page presence, on
// captured maps text and on a real process of this machine (the lab workload, built here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { defaultRanges, pagemapBufferBytes, parseMaps, processAlive, readMaps, presentRuns } from '../../src/scan/procfs.js';
import { readFileSync } from 'node:fs';
import { ensureWorkload } from '../../lab/build.js';
import { KernelError } from '../../src/errors.js';

const MAPS = `55d0c0a00000-55d0c0a02000 r--p 00000000 08:01 1234 /usr/bin/qemu-system-x86_64
55d0c0c00000-55d0c0c10000 rw-p 00200000 08:01 1234 /usr/bin/qemu-system-x86_64
55d0c0c10000-55d0c0c30000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0040000000 rw-s 00000000 00:01 77 /memfd:memory-backend-memfd (deleted)
7f0040000000-7f0040001000 ---p 00000000 00:00 0
7f0040001000-7f0040801000 rw-p 00000000 00:00 0
7f0050000000-7f0050100000 rw-s 00000000 08:01 999 /var/lib/data.bin
7f0060000000-7f0060002000 r--p 00000000 00:00 0 [vvar]
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
`;

test('defaultRanges: writable private and anonymous-shared (memfd) mappings, touching ones merged', () => {
  const maps = parseMaps(MAPS);
  assert.equal(maps.length, 9);
  assert.equal(maps[3]!.path, '/memfd:memory-backend-memfd (deleted)');
  assert.deepEqual(defaultRanges(maps), [
    { start: 0x55d0c0c00000, end: 0x55d0c0c30000 },
    { start: 0x7f0000000000, end: 0x7f0040000000 },
    { start: 0x7f0040001000, end: 0x7f0040801000 },
    { start: 0x7ffc00000000, end: 0x7ffc00021000 },
  ]);
});

test('presentRuns and readMaps on a real process; a gone pid is ESRCH', async () => {
  const child = spawn(ensureWorkload(), ['--size', '8m', '--hot', '1m', '--rate', '0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const first = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once('line', resolve);
      child.once('exit', (c) => reject(new Error(`workload exited ${c}`)));
    });
    const layout = JSON.parse(first) as { base: string; bytes: number };
    const base = parseInt(layout.base, 16);
    const pid = child.pid!;
    // The workload touched every page of its footprint: all present, one run (of unknown page size).
    assert.deepEqual([...presentRuns(pid, { start: base, end: base + layout.bytes })], [0, layout.bytes / 4096, 0]);
    // The footprint is inside the default tracking set.
    const ranges = defaultRanges(readMaps(pid));
    assert.ok(ranges.some((r) => r.start <= base && r.end >= base + layout.bytes));
    // Far below any mapping: nothing present.
    assert.equal(presentRuns(pid, { start: 0x10000, end: 0x20000 }).length, 0);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.equal(processAlive(pid), false);
    assert.throws(() => readMaps(pid), (e) => e instanceof KernelError && e.errno === 3);
    assert.throws(() => presentRuns(pid, { start: base, end: base + 4096 }), (e) => e instanceof KernelError && e.errno === 3);
  } finally {
    child.kill('SIGKILL');
  }
});

test('presentRuns reads pagemap into one buffer kept by the thread, not a new one per call (every DAMON round calls it per range)', () => {
  // A mapping of this process's own, 16 MiB (4096 pages: 32 KiB of pagemap per call), its first 4 MiB touched.
  const mem = new Uint8Array(16 << 20);
  mem.fill(1, 0, 4 << 20);
  const m = readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => /^([0-9a-f]+)-([0-9a-f]+) rw-p/.exec(l))
    .filter((x): x is RegExpExecArray => !!x && parseInt(x[2]!, 16) - parseInt(x[1]!, 16) >= 16 << 20)
    .map((x) => ({ start: parseInt(x[1]!, 16), end: parseInt(x[1]!, 16) + (16 << 20) }));
  assert.ok(m.length > 0);
  const r = m.map((x) => ({ r: x, runs: presentRuns(process.pid, x) })).sort((a, b) => (b.runs[1] ?? 0) - (a.runs[1] ?? 0))[0]!.r;
  assert.ok((presentRuns(process.pid, r)[1] ?? 0) >= 1000, 'the touched pages are present');
  const held = pagemapBufferBytes();
  assert.ok(held >= 4096 * 8 && held <= 512 * 1024, `sized by the largest read, capped at 512 KiB: ${held} B`);
  let appeared = 0;
  let last = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 50; i++) {
    presentRuns(process.pid, r);
    const now = process.memoryUsage().arrayBuffers;
    if (now > last) appeared += now - last;
    last = now;
  }
  // A buffer per call: 50 × 32 KiB = 1.6 MiB.
  assert.ok(appeared < 64 * 1024, `array buffers appeared over 50 calls: ${appeared} B`);
  assert.equal(pagemapBufferBytes(), held);
  void mem;
});
