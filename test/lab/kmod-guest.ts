// Runs INSIDE the lab guest (node dist/test/lab/kmod-guest.js <case> ...), driven by
// test/lab/kmod.test.ts: starts a target, scans it with the real KmodTracker over the
// loaded vmtier_idle module and prints one JSON line with what it observed. The host test
// asserts on that line; this file decides nothing.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { KmodTracker } from '../../src/scan/kmod.js';
import { pagesMappedWith, presentPages } from '../../src/scan/mapping-runs.js';
import type { ScanRequest, ScanResult } from '../../src/scan/tracker.js';
import { PAGE_SIZE, type HvaRange } from '../../src/units.js';
import { describeError } from './guest-error.js';

interface Target {
  child: ChildProcess;
  first: Record<string, unknown>;
  stderr: string[];
}

function startTarget(argv: string[]): Promise<Target> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    const stderr: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', (l) => resolve({ child, first: JSON.parse(l) as Record<string, unknown>, stderr }));
    child.once('exit', (code) => reject(new Error(`${argv[0]} exited ${code}: ${stderr.join('\n')}`)));
  });
}

/** KMOD_CLEAR=0 (set by the host test on 6.1, where the module refuses to clear): read-only passes. */
const CLEAR = process.env.KMOD_CLEAR !== '0';
const newTracker = (opts: ConstructorParameters<typeof KmodTracker>[0] = {}): KmodTracker => new KmodTracker({ clear: CLEAR, ...opts });

const hexNum = (v: unknown): number => (typeof v === 'string' ? parseInt(v, 16) : Number(v));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


type RangeScan = ScanResult & { counts: Uint8Array };

/** A scan of the one range `range` the tracker tracks, into counts of its own. */
async function scanRange(tracker: KmodTracker, range: HvaRange, req: Omit<ScanRequest, 'counts'>): Promise<RangeScan> {
  const counts = new Uint8Array((range.end - range.start) / PAGE_SIZE);
  return { ...(await tracker.scan({ ...req, counts })), counts };
}

/** Precision of "seen accessed at least once" and recall of "seen accessed in every scan". */
function accuracy(res: RangeScan, hot: HvaRange[]): Record<string, number> {
  const r = res.ranges[0]!;
  const c = res.counts;
  const n = c.length;
  const isHot = new Uint8Array(n);
  for (const h of hot) for (let a = h.start; a < h.end; a += PAGE_SIZE) isHot[(a - r.start) / PAGE_SIZE] = 1;
  let seen = 0, seenHot = 0, full = 0, fullHot = 0, hotTotal = 0;
  for (let i = 0; i < n; i++) {
    hotTotal += isHot[i]!;
    if (c[i]! > 0) { seen++; seenHot += isHot[i]!; }
    if (c[i] === res.scans) { full++; fullHot += isHot[i]!; }
  }
  return {
    pages: n, hotPages: hotTotal, presentPages: presentPages(r.mapped), hugePages: pagesMappedWith(r.mapped, 21), seenPages: seen, fullPages: full,
    precision: seen ? seenHot / seen : 0,
    recall: hotTotal ? fullHot / hotTotal : 0,
    precisionFull: full ? fullHot / full : 0,
  };
}

async function caseAccuracy(workload: string, args: string[], scans: number, intervalMs: number): Promise<unknown> {
  const t = await startTarget([workload, ...args]);
  const tracker = newTracker();
  try {
    const base = hexNum(t.first.base);
    const bytes = Number(t.first.bytes);
    const hot = (t.first.hot as Array<{ start: string; end: string }>).map((h) => ({ start: hexNum(h.start), end: hexNum(h.end) }));
    const range = { start: base, end: base + bytes };
    await tracker.track(t.child.pid!, [range]);
    const res = await scanRange(tracker, range, { scans, intervalMs });
    return { mode: tracker.mode(), ...accuracy(res, hot), stats: tracker.lastRoundStats() };
  } finally {
    await tracker.close();
    t.child.kill('SIGKILL');
  }
}

/** Scan while `act` changes the target; returns the scan's outcome (result or typed error). */
async function caseDuring(target: string, mode: string, act: (t: Target) => Promise<void>, scans = 8, intervalMs = 250): Promise<unknown> {
  const t = await startTarget([target, '64', mode]);
  const tracker = newTracker();
  const base = hexNum(t.first.base);
  const bytes = Number(t.first.bytes);
  try {
    const range = { start: base, end: base + bytes };
    await tracker.track(t.child.pid!, [range]);
    const scan = scanRange(tracker, range, { scans, intervalMs }).then((res) => ({ ok: true, huge: pagesMappedWith(res.ranges[0]!.mapped, 21), present: presentPages(res.ranges[0]!.mapped) }), (e: unknown) => ({ ok: false, error: describeError(e) }));
    await act(t);
    const out = await scan;
    return { ...out, targetStderr: t.stderr.slice(-5) };
  } finally {
    await tracker.close();
    t.child.kill('SIGKILL');
  }
}

async function caseChurn(target: string, seconds: number): Promise<unknown> {
  const t = await startTarget([target, '32', 'churn']);
  const tracker = newTracker();
  const base = hexNum(t.first.base);
  const bytes = Number(t.first.bytes);
  let rounds = 0;
  const errors: unknown[] = [];
  try {
    const range = { start: base, end: base + bytes };
    await tracker.track(t.child.pid!, [range]);
    const until = Date.now() + seconds * 1000;
    while (Date.now() < until) {
      try {
        await scanRange(tracker, range, { scans: 3, intervalMs: 20 });
        rounds++;
      } catch (e) {
        errors.push(describeError(e));
      }
    }
    return { rounds, errors };
  } finally {
    await tracker.close();
    t.child.kill('SIGKILL');
  }
}

async function caseAbi(target: string): Promise<unknown> {
  const out: Record<string, unknown> = {};
  const tracker = newTracker();
  for (const [name, pid] of [['kthread', 2], ['nopid', 4_000_000]] as const) {
    try {
      await tracker.track(pid, [{ start: 0x10000000, end: 0x10001000 }]);
      out[name] = { ok: true };
    } catch (e) {
      out[name] = describeError(e);
    }
  }
  await tracker.close();
  // Without CAP_SYS_ADMIN (dropped from the bounding set) root cannot open the device.
  const r = spawnSync('setpriv', ['--bounding-set', '-sys_admin', '--', 'head', '-c', '1', '/dev/vmtier_idle'], { encoding: 'utf8' });
  out.noCapSysAdmin = { status: r.status, stderr: r.stderr.trim() };
  // Process mode on a VM-less process reports 'process'.
  const t = await startTarget([target, '4', 'idle']);
  const k = newTracker();
  try {
    await k.track(t.child.pid!, [{ start: hexNum(t.first.base), end: hexNum(t.first.base) + Number(t.first.bytes) }]);
    out.mode = k.mode();
    try {
      await newTracker({ target: 'kvm' }).track(t.child.pid!, [{ start: hexNum(t.first.base), end: hexNum(t.first.base) + 4096 }]);
      out.kvmOnPlain = { ok: true };
    } catch (e) {
      out.kvmOnPlain = describeError(e);
    }
  } finally {
    await k.close();
    t.child.kill('SIGKILL');
  }
  return out;
}

/**
 * A KVM VM (test/lab/kmod-vmm.c) whose guest writes a known hot set: scanned through its TDP
 * tables (auto mode must pick them), then through the process page tables for contrast.
 */
async function caseKvm(vmm: string, scans: number, intervalMs: number, thp: boolean): Promise<unknown> {
  const t = await startTarget([vmm, '64', '16', '8', ...(thp ? ['thp'] : [])]);
  const base = hexNum(t.first.base);
  const bytes = Number(t.first.bytes);
  const range = { start: base, end: base + bytes };
  // The guest's code page is fetched on every loop: it is hot too (its whole 2 MiB with THP).
  const hot = [{ start: base, end: base + (thp ? 2 << 20 : PAGE_SIZE) }, ...(t.first.hot as Array<{ start: string; end: string }>).map((h) => ({ start: hexNum(h.start), end: hexNum(h.end) }))];
  // KMOD_READ_BYTES: small reads, so that one pass takes many reads (the flush is per pass).
  const tdp = newTracker(process.env.KMOD_READ_BYTES ? { readBytes: Number(process.env.KMOD_READ_BYTES) } : {});
  const proc = newTracker({ target: 'process' });
  try {
    await tdp.track(t.child.pid!, [range]);
    const mode = tdp.mode();
    // Wait for the guest's first pass over its RAM: until then cold pages are being touched.
    const warm0 = Date.now();
    let present = 0;
    while (Date.now() - warm0 < 120_000) {
      const w = await scanRange(tdp, range, { scans: 1, intervalMs: 0 });
      present = presentPages(w.ranges[0]!.mapped);
      if (present === bytes / PAGE_SIZE) break;
      await sleep(500);
    }
    const warmMs = Date.now() - warm0;
    const flushesBefore = tdp.lastRoundStats()?.tlbFlushes ?? 0;
    const res = await scanRange(tdp, range, { scans, intervalMs });
    const roundFlushes = tdp.lastRoundStats()!.tlbFlushes - flushesBefore;
    await proc.track(t.child.pid!, [range]);
    const pres = await scanRange(proc, range, { scans, intervalMs });
    // The VM goes away in the middle of a TDP scan.
    const dying = scanRange(tdp, range, { scans: 10, intervalMs: 300 }).then(() => ({ ok: true }), (e: unknown) => ({ ok: false, error: describeError(e) }));
    await sleep(800);
    t.child.kill('SIGKILL');
    const destroyed = await dying;
    return { mode, warmMs, presentAfterWarm: present, tdp: { ...accuracy(res, hot), stats: tdp.lastRoundStats(), roundFlushes }, process: { mode: proc.mode(), ...accuracy(pres, hot) }, destroyed };
  } finally {
    await tdp.close();
    await proc.close();
    t.child.kill('SIGKILL');
  }
}

function waitStderr(t: Target, line: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const until = Date.now() + ms;
    const poll = (): void => {
      if (t.stderr.includes(line)) return resolve();
      if (Date.now() > until) return reject(new Error(`no "${line}" on the target's stderr within ${ms} ms: ${t.stderr.join('\n')}`));
      setTimeout(poll, 50);
    };
    poll();
  });
}

/** kvm's debugfs directories of a process's VMs ("<pid>-<fd>"): made at creation, removed by kvm_destroy_vm(). */
const vmDebugfsDirs = (pid: number): number => readdirSync('/sys/kernel/debug/kvm').filter((d) => d.startsWith(`${pid}-`)).length;

/**
 * The VMM closes its VM (and vCPU) fds while the module holds the VM: the next read is ESRCH and
 * the module drops the VM, which kvm then destroys (its debugfs directory goes away).
 */
async function caseKvmClose(vmm: string): Promise<unknown> {
  const t = await startTarget([vmm, '16', '4', '4']);
  const base = hexNum(t.first.base);
  const tracker = newTracker({ target: 'kvm' });
  try {
    const range = { start: base, end: base + Number(t.first.bytes) };
    await tracker.track(t.child.pid!, [range]);
    const mode = tracker.mode();
    const before = await scanRange(tracker, range, { scans: 1, intervalMs: 0 }).then(() => ({ ok: true }), (e: unknown) => ({ ok: false, error: describeError(e) }));
    t.child.kill('SIGUSR1');
    await waitStderr(t, 'closed', 30_000);
    const vmsClosed = vmDebugfsDirs(t.child.pid!);
    const after = await scanRange(tracker, range, { scans: 1, intervalMs: 0 }).then(() => ({ ok: true }), (e: unknown) => ({ ok: false, error: describeError(e) }));
    const vmsAfter = vmDebugfsDirs(t.child.pid!);
    const again = await scanRange(tracker, range, { scans: 1, intervalMs: 0 }).then(() => ({ ok: true }), (e: unknown) => ({ ok: false, error: describeError(e) }));
    return { mode, before, after, again, vmsClosed, vmsAfter };
  } finally {
    await tracker.close();
    t.child.kill('SIGKILL');
  }
}

/**
 * A nested-KVM target from kmod-vmm (`args`), scanned until the module reports all guest RAM
 * present (the first passes fault it in), then `between` (if any), then `scans` passes whose
 * accuracy against the target's hot set is returned, with the pages present after the warm-up.
 */
async function kvmAccuracy(
  args: string[],
  scans: number,
  intervalMs: number,
  between?: (t: Target) => Promise<void>,
): Promise<Record<string, unknown>> {
  const t = await startTarget(args);
  const base = hexNum(t.first.base);
  const bytes = Number(t.first.bytes);
  const range = { start: base, end: base + bytes };
  const hot = [{ start: base, end: base + PAGE_SIZE }, ...(t.first.hot as Array<{ start: string; end: string }>).map((h) => ({ start: hexNum(h.start), end: hexNum(h.end) }))];
  const tracker = newTracker();
  try {
    await tracker.track(t.child.pid!, [range]);
    const mode = tracker.mode();
    const warm0 = Date.now();
    let present = 0;
    while (Date.now() - warm0 < 120_000) {
      const w = await scanRange(tracker, range, { scans: 1, intervalMs: 0 });
      present = presentPages(w.ranges[0]!.mapped);
      if (present === bytes / PAGE_SIZE) break;
      await sleep(500);
    }
    await between?.(t);
    const res = await scanRange(tracker, range, { scans, intervalMs });
    return { mode, present, ...accuracy(res, hot), targetStderr: t.stderr.slice(-5) };
  } finally {
    await tracker.close();
    t.child.kill('SIGKILL');
  }
}

/**
 * Two vCPUs, vCPU 0 halted for good (it keeps its root), vCPU 1 writing the hot set; a memslot
 * is deleted and re-added, which makes every root obsolete: the module must walk vCPU 1's new
 * root, not vCPU 0's obsolete (zapped, empty) one.
 */
async function caseKvmHalt0(vmm: string, scans: number, intervalMs: number): Promise<unknown> {
  const { present, ...r } = await kvmAccuracy([vmm, '32', '8', '4', 'halt0'], scans, intervalMs, async (t) => {
    t.child.kill('SIGUSR2');
    await waitStderr(t, 'churned', 30_000);
    await sleep(1000); // vCPU 1 maps its hot set again in its new root
  });
  return { presentBeforeChurn: present, ...r };
}

/** kmod-abi walk: raw reads of [start, end) with `flags` and `count`-byte reads (test/lab/kmod-abi.c). */
function abiWalk(abi: string, pid: number, flags: number, start: number, end: number, count = 65536): Record<string, any> {
  const r = spawnSync(abi, ['walk', String(pid), String(flags), `0x${start.toString(16)}`, `0x${end.toString(16)}`, String(count)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`kmod-abi walk exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, any>;
}

/**
 * A THP-backed VM (2 MiB NPT leaves): the mmu_lock acquisitions of one read over all of it,
 * and (with clearing) one 2 MiB leaf read as two adjacent ranges [leaf, +1 MiB), [+1 MiB, +2 MiB):
 * both must report it accessed, and only the second may clear it.
 */
async function caseKvmSplit(vmm: string, abi: string): Promise<unknown> {
  const t = await startTarget([vmm, '16', '4', '4', 'thp']);
  const base = hexNum(t.first.base);
  const bytes = Number(t.first.bytes);
  const pid = t.child.pid!;
  try {
    // Read-only walks until the guest's fill pass has mapped all of its RAM.
    const warm0 = Date.now();
    let warm = abiWalk(abi, pid, 0, base, base + bytes);
    while (warm.present < bytes / PAGE_SIZE && Date.now() - warm0 < 120_000) {
      await sleep(500);
      warm = abiWalk(abi, pid, 0, base, base + bytes);
    }
    const out: Record<string, unknown> = { warm, chunks: bytes / (2 << 20) };
    if (CLEAR) {
      // A cold leaf: written once by the fill pass, so its A bit is set and stays set.
      const leaf = base + (10 << 20);
      out.whole = abiWalk(abi, pid, 0, leaf, leaf + (2 << 20));
      out.first = abiWalk(abi, pid, 1, leaf, leaf + (1 << 20));
      out.second = abiWalk(abi, pid, 1, leaf + (1 << 20), leaf + (2 << 20));
      out.after = abiWalk(abi, pid, 0, leaf, leaf + (2 << 20));
    }
    return out;
  } finally {
    t.child.kill('SIGKILL');
  }
}

/**
 * A VM whose hot HVAs are written half through a second memslot mapping them (an alias) and
 * half through the first (test/lab/kmod-vmm.c "alias"): every alias must be read.
 */
async function caseKvmAlias(vmm: string, scans: number, intervalMs: number): Promise<unknown> {
  const { present, ...r } = await kvmAccuracy([vmm, '32', '28', '8', 'alias'], scans, intervalMs);
  return { presentAfterWarm: present, ...r };
}

/** `vmtier scan --tracker kmod --json` (the CLI over this tracker) on the workload's footprint. */
async function caseCli(workload: string): Promise<unknown> {
  const t = await startTarget([workload, '--size', '32m', '--hot', '4m', '--layout', 'contiguous', '--thp', 'off', '--rate', '10']);
  try {
    const base = hexNum(t.first.base);
    const range = `0x${base.toString(16)}-0x${(base + Number(t.first.bytes)).toString(16)}`;
    const r = spawnSync(process.execPath, ['bin/vmtier.js', 'scan', '--pid', String(t.child.pid), '--tracker', 'kmod', '--scans', '3',
      '--interval-ms', '1000', '--range', range, '--json'], { encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr.slice(-2000), json: r.status === 0 ? JSON.parse(r.stdout) as unknown : null, hot: t.first.hot };
  } finally {
    t.child.kill('SIGKILL');
  }
}

/** A range that is half unmapped before tracking starts: the gap is not present, not an error. */
async function caseGap(target: string): Promise<unknown> {
  const t = await startTarget([target, '16', 'idle']);
  const base = hexNum(t.first.base);
  const bytes = Number(t.first.bytes);
  const tracker = newTracker();
  try {
    t.child.kill('SIGUSR1'); // munmap of the second half
    await sleep(500);
    const range = { start: base, end: base + bytes };
    await tracker.track(t.child.pid!, [range]);
    const res = await scanRange(tracker, range, { scans: 2, intervalMs: 200 });
    const r = res.ranges[0]!;
    const half = res.counts.length / 2;
    let unmapped: unknown;
    try {
      await tracker.track(t.child.pid!, [{ start: 0x10000, end: 0x20000 }]); // below mmap_min_addr
      unmapped = { ok: true };
    } catch (e) {
      unmapped = describeError(e);
    }
    return {
      presentFirstHalf: presentPages(r.mapped, 0, half),
      presentSecondHalf: presentPages(r.mapped, half),
      half, unmapped,
    };
  } finally {
    await tracker.close();
    t.child.kill('SIGKILL');
  }
}

const [what, ...rest] = process.argv.slice(2);
let result: unknown;
try {
  switch (what) {
    case 'accuracy': {
      const [workload, scans, interval, ...args] = rest;
      result = await caseAccuracy(workload!, args, Number(scans), Number(interval));
      break;
    }
    case 'exit':
      result = await caseDuring(rest[0]!, 'idle', async (t) => { await sleep(700); t.child.kill('SIGKILL'); });
      break;
    case 'munmap':
      result = await caseDuring(rest[0]!, 'idle', async (t) => { await sleep(700); t.child.kill('SIGUSR1'); });
      break;
    case 'collapse':
      result = await caseDuring(rest[0]!, 'idle', async (t) => { await sleep(500); t.child.kill('SIGUSR2'); }, 10, 400);
      break;
    case 'churn':
      result = await caseChurn(rest[0]!, Number(rest[1] ?? 8));
      break;
    case 'kvm':
      result = await caseKvm(rest[0]!, Number(rest[1] ?? 4), Number(rest[2] ?? 1000), rest[3] === 'thp');
      break;
    case 'kvmclose':
      result = await caseKvmClose(rest[0]!);
      break;
    case 'kvmhalt0':
      result = await caseKvmHalt0(rest[0]!, Number(rest[1] ?? 3), Number(rest[2] ?? 1000));
      break;
    case 'kvmsplit':
      result = await caseKvmSplit(rest[0]!, rest[1]!);
      break;
    case 'kvmalias':
      result = await caseKvmAlias(rest[0]!, Number(rest[1] ?? 3), Number(rest[2] ?? 1000));
      break;
    case 'cli':
      result = await caseCli(rest[0]!);
      break;
    case 'gap':
      result = await caseGap(rest[0]!);
      break;
    case 'abi':
      result = await caseAbi(rest[0]!);
      break;
    default:
      throw new Error(`unknown case ${what}`);
  }
} catch (e) {
  result = { failed: describeError(e) };
}
process.stdout.write(`${JSON.stringify(result)}\n`);
