// `vmtier scan` as a user runs it: the built CLI in a child process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const bin = join(root, 'bin', 'vmtier.js');

function vmtier(args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, 'scan', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const TRACE = 'epoch,page,accesses\n0,0,1\n0,1,1\n0,2,0\n0,9,0\n1,1,1\n1,2,1\n2,1,1\n';

test('--json prints exactly {tracker, scans, pageSize, ranges[{start,end,count}]} with maximal runs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-scan-cli-'));
  try {
    const trace = join(dir, 't.csv');
    writeFileSync(trace, TRACE);
    const r = vmtier(['--tracker', 'replay', '--trace', trace, '--scans', '3', '--range', '0x7f0000000000-0x7f000000a000', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(out), ['tracker', 'scans', 'pageSize', 'ranges']);
    assert.equal(out.tracker, 'replay');
    assert.equal(out.scans, 3);
    assert.equal(out.pageSize, 4096);
    // Pages 0..9 of the range; page 9 is known but never accessed; pages 3..8 never appear (not present).
    assert.deepEqual(out.ranges, [
      { start: '0x7f0000000000', end: '0x7f0000001000', count: 1 },
      { start: '0x7f0000001000', end: '0x7f0000002000', count: 3 },
      { start: '0x7f0000002000', end: '0x7f0000003000', count: 1 },
      { start: '0x7f0000009000', end: '0x7f000000a000', count: 0 },
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--record writes what the tracker saw as a trace that replays to the same output', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-scan-rec-'));
  try {
    const trace = join(dir, 't.csv');
    const rec = join(dir, 'rec.csv');
    writeFileSync(trace, TRACE);
    const a = vmtier(['--tracker', 'replay', '--trace', trace, '--scans', '3', '--json', '--record', rec]);
    assert.equal(a.status, 0, a.stderr);
    const b = vmtier(['--tracker', 'replay', '--trace', rec, '--scans', '3', '--json']);
    assert.equal(b.status, 0, b.stderr);
    assert.deepEqual(JSON.parse(b.stdout), JSON.parse(a.stdout));
    assert.ok(JSON.parse(a.stdout).ranges.length > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('long scans report progress on stderr, the JSON stays alone on stdout', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-scan-prog-'));
  try {
    const trace = join(dir, 't.csv');
    writeFileSync(trace, TRACE);
    // 2 scans x 1500 ms is a long scan by the CLI's measure; replay does not sleep.
    const r = vmtier(['--tracker', 'replay', '--trace', trace, '--scans', '2', '--interval-ms', '1500', '--json']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /scan 1\/2\n/);
    assert.match(r.stderr, /scan 2\/2\n/);
    assert.equal(JSON.parse(r.stdout).scans, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad input is a typed error on stderr with exit 1 and nothing on stdout', () => {
  const cases: [string[], RegExp][] = [
    [['--tracker', 'replay', '--trace', '/nonexistent.csv', '--json'], /^NOT_FOUND: /],
    [['--pid', '1', '--scans', '0', '--json'], /^INVALID_INPUT: .*scans/],
    [['--pid', '1', '--scans', 'many', '--json'], /^INVALID_INPUT: /],
    [['--pid', '1', '--range', '0x1001-0x2000', '--json'], /^INVALID_INPUT: /],
    [['--json'], /^INVALID_INPUT: .*--pid/],
    [['--pid', '1', '--domain', 'x', '--json'], /^INVALID_INPUT: /],
  ];
  for (const [args, re] of cases) {
    const r = vmtier(args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, re, args.join(' '));
  }
});

test('a pid that does not exist is KERNEL_ERROR ESRCH', () => {
  // pid_max on Linux is at most 2^22; this one cannot exist.
  const r = vmtier(['--pid', '4194303', '--tracker', 'damon', '--json']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^KERNEL_ERROR: .*ESRCH/);
});

test('--tracker damon on this machine refuses (platform kdamond) and claims nothing', { skip: !existsSync('/sys/kernel/mm/damon/admin/kdamonds') && 'no DAMON sysfs' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-scan-damon-'));
  const child = spawn(process.execPath, ['-e', 'const b = Buffer.alloc(8 << 20, 1); setInterval(() => b[0]++, 100)'], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 300));
    const r = vmtier(['--pid', String(child.pid), '--tracker', 'damon', '--run-dir', dir, '--json']);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^TRACKER_BUSY: /, r.stderr);
    assert.equal(r.status, 1);
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
