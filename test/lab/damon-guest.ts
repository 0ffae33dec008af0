// Runs INSIDE the lab guest (node dist/test/lab/damon-guest.js <case> ...), driven by
// test/lab/damon.test.ts: starts the lab workload (lab/workload.c), tracks it with the real
// DamonTracker over the guest kernel's DAMON sysfs, and prints one JSON line with what it
// observed. The host test asserts on that line; this file decides nothing.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DamonTracker, damonStateFile } from '../../src/scan/damon.js';
import { DAMON_SYSFS_ROOT } from '../../src/scan/damon-sysfs.js';
import { presentPages } from '../../src/scan/mapping-runs.js';
import type { ScanRequest, ScanResult } from '../../src/scan/tracker.js';
import { PAGE_SIZE, type HvaRange } from '../../src/units.js';
import { describeError } from './guest-error.js';

interface Target {
  child: ChildProcess;
  first: Record<string, unknown>;
}

function startTarget(argv: string[]): Promise<Target> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    const stderr: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
    createInterface({ input: child.stdout! }).once('line', (l) => resolve({ child, first: JSON.parse(l) as Record<string, unknown> }));
    child.once('exit', (code) => reject(new Error(`${argv[0]} exited ${code}: ${stderr.join('\n')}`)));
  });
}

const hexNum = (v: unknown): number => (typeof v === 'string' ? parseInt(v, 16) : Number(v));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type RangeScan = ScanResult & { counts: Uint8Array };

/** A scan of the one range `range` the tracker tracks, into counts of its own. */
async function scanRange(tracker: DamonTracker, range: HvaRange, req: Omit<ScanRequest, 'counts'>): Promise<RangeScan> {
  const counts = new Uint8Array((range.end - range.start) / PAGE_SIZE);
  return { ...(await tracker.scan({ ...req, counts })), counts };
}

const footprint = (l: { base: number; bytes: number }): HvaRange => ({ start: l.base, end: l.base + l.bytes });

function layout(t: Target): { base: number; bytes: number; hot: HvaRange[] } {
  return {
    base: hexNum(t.first.base),
    bytes: Number(t.first.bytes),
    hot: (t.first.hot as Array<{ start: string; end: string }>).map((h) => ({ start: hexNum(h.start), end: hexNum(h.end) })),
  };
}


/**
 * Hot-set accuracy, with the same definitions as the kmod lab test so the figures sit side
 * by side: precision of "seen in >= 1 scan", recall of "seen in every scan"; plus the
 * mirror pair (precision of "every scan", recall of ">= 1 scan").
 */
function accuracy(res: RangeScan, hot: HvaRange[]): Record<string, number> {
  const r = res.ranges[0]!;
  const c = res.counts;
  const n = c.length;
  const isHot = new Uint8Array(n);
  for (const h of hot) for (let a = h.start; a < h.end; a += PAGE_SIZE) isHot[(a - r.start) / PAGE_SIZE] = 1;
  let seen = 0, seenHot = 0, full = 0, fullHot = 0, hotTotal = 0;
  const hotHist = new Array<number>(res.scans + 1).fill(0);
  const coldHist = new Array<number>(res.scans + 1).fill(0);
  for (let i = 0; i < n; i++) {
    (isHot[i] ? hotHist : coldHist)[c[i]!]!++;
    hotTotal += isHot[i]!;
    if (c[i]! > 0) { seen++; seenHot += isHot[i]!; }
    if (c[i] === res.scans) { full++; fullHot += isHot[i]!; }
  }
  return {
    pages: n, hotPages: hotTotal, presentPages: presentPages(r.mapped), seenPages: seen, fullPages: full,
    precision: seen ? seenHot / seen : 0,
    recall: hotTotal ? fullHot / hotTotal : 0,
    precisionFull: full ? fullHot / full : 0,
    recallSeen: hotTotal ? seenHot / hotTotal : 0,
    hotHist, coldHist,
  } as unknown as Record<string, number>;
}

function kdamondThreads(): number[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).filter((n) => {
    try {
      return readFileSync(`/proc/${n}/comm`, 'utf8').startsWith('kdamond');
    } catch {
      return false;
    }
  }).map(Number);
}

function sysfsState(): { nrKdamonds: number; threads: number[] } {
  return { nrKdamonds: Number(readFileSync(`${DAMON_SYSFS_ROOT}/kdamonds/nr_kdamonds`, 'utf8').trim()), threads: kdamondThreads() };
}

async function caseAccuracy(workload: string, wargs: string[], scans: number, intervalMs: number, minRegions?: number, maxRegions?: number, minAccesses?: number): Promise<unknown> {
  const t = await startTarget([workload, ...wargs]);
  const runDir = mkdtempSync('/tmp/vmtier-damon-');
  const tracker = new DamonTracker({ runDir, minRegions, maxRegions, minAccesses, initialIntervalMs: intervalMs });
  try {
    const l = layout(t);
    const t0 = performance.now();
    await tracker.track(t.child.pid!, [{ start: l.base, end: l.base + l.bytes }]);
    const trackMs = performance.now() - t0;
    // Regions adapt over a few aggregation intervals; a daemon keeps its tracker running between rounds.
    await sleep(5 * intervalMs);
    const ops = readFileSync(`${DAMON_SYSFS_ROOT}/kdamonds/0/contexts/0/operations`, 'utf8').trim();
    const attrs = Object.fromEntries(['sample_us', 'aggr_us'].map((f) => [f, Number(readFileSync(`${DAMON_SYSFS_ROOT}/kdamonds/0/contexts/0/monitoring_attrs/intervals/${f}`, 'utf8'))]));
    const nr = Object.fromEntries(['min', 'max'].map((f) => [f, Number(readFileSync(`${DAMON_SYSFS_ROOT}/kdamonds/0/contexts/0/monitoring_attrs/nr_regions/${f}`, 'utf8'))]));
    const res = await scanRange(tracker, footprint(l), { scans, intervalMs });
    const regions = readdirSync(`${DAMON_SYSFS_ROOT}/kdamonds/0/contexts/0/schemes/0/tried_regions`).filter((n) => /^\d+$/.test(n)).length;
    return { ops, attrs, nrRegions: nr, regionsAtEnd: regions, trackMs, scanMs: res.elapsedMs, scans, intervalMs, ...accuracy(res, l.hot) };
  } finally {
    await tracker.close();
    t.child.kill('SIGKILL');
  }
}

/** Diagnostic: rounds of one scan each, with the time and hot/cold pages seen per scan. */
async function casePerScan(workload: string, wargs: string[], rounds: number, intervalMs: number): Promise<unknown> {
  const t = await startTarget([workload, ...wargs]);
  const runDir = mkdtempSync('/tmp/vmtier-damon-');
  const tracker = new DamonTracker({ runDir, initialIntervalMs: intervalMs });
  try {
    const l = layout(t);
    await tracker.track(t.child.pid!, [{ start: l.base, end: l.base + l.bytes }]);
    await sleep(5 * intervalMs);
    const per: Array<{ ms: number; hotSeen: number; coldSeen: number }> = [];
    for (let i = 0; i < rounds; i++) {
      const t0 = performance.now();
      const res = await scanRange(tracker, footprint(l), { scans: 1, intervalMs });
      const a = accuracy(res, l.hot) as unknown as { hotHist: number[]; coldHist: number[] };
      per.push({ ms: Math.round(performance.now() - t0), hotSeen: a.hotHist[1]!, coldSeen: a.coldHist[1]! });
    }
    return { per };
  } finally {
    await tracker.close();
    t.child.kill('SIGKILL');
  }
}

/** The target exits during a scan (killed after the second scan): the scan must reject typed and leave no kdamond behind. */
async function caseExit(workload: string): Promise<unknown> {
  const t = await startTarget([workload, '--size', '16m', '--hot', '4m']);
  const runDir = mkdtempSync('/tmp/vmtier-damon-');
  const tracker = new DamonTracker({ runDir });
  const l = layout(t);
  await tracker.track(t.child.pid!, [{ start: l.base, end: l.base + l.bytes }]);
  const during = sysfsState();
  let outcome: Record<string, unknown>;
  let killedAfter = -1;
  const t0 = performance.now();
  try {
    const res = await scanRange(tracker, footprint(l), {
      scans: 40, intervalMs: 200, onScan: (i) => {
        if (i === 1) {
          killedAfter = i;
          t.child.kill('SIGKILL');
        }
      },
    });
    outcome = { ok: true, scans: res.scans };
  } catch (e) {
    outcome = { ok: false, ...describeError(e) };
  }
  const ms = performance.now() - t0;
  await sleep(300);
  return { during, outcome, killedAfter, ms, after: sysfsState(), stateFiles: readdirSync(runDir) };
}

/**
 * Crash-restart: a child process creates a kdamond through DamonTracker and is SIGKILLed;
 * a new tracker on the same run dir must find the stale kdamond, remove it, and work.
 */
async function caseCrash(workload: string, self: string): Promise<unknown> {
  const t = await startTarget([workload, '--size', '16m', '--hot', '4m']);
  const runDir = mkdtempSync('/tmp/vmtier-damon-');
  try {
    const l = layout(t);
    const child = spawn(process.execPath, [self, 'hold', runDir, String(t.child.pid), String(l.base), String(l.base + l.bytes)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const ready = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once('line', resolve);
      child.once('exit', (c) => reject(new Error(`holder exited ${c}`)));
    });
    const held = { ...sysfsState(), record: JSON.parse(readFileSync(join(runDir, damonStateFile(0)), 'utf8')) as unknown, ready };
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const afterKill = sysfsState();
    const fresh = new DamonTracker({ runDir });
    let outcome: Record<string, unknown>;
    try {
      await fresh.track(t.child.pid!, [{ start: l.base, end: l.base + l.bytes }]);
      await sleep(1000);
      const res = await scanRange(fresh, footprint(l), { scans: 3, intervalMs: 500 });
      outcome = { ok: true, ...accuracy(res, l.hot), kdamondPid: fresh.owner?.kdamondPid };
    } catch (e) {
      outcome = { ok: false, ...describeError(e) };
    } finally {
      await fresh.close();
    }
    await sleep(300);
    return { held, afterKill, outcome, after: sysfsState(), stateFiles: readdirSync(runDir) };
  } finally {
    t.child.kill('SIGKILL');
  }
}

/**
 * Several VMs at once: three workloads (each its own hot set), one DamonTracker each, tracked and
 * scanned side by side. Each tracker must run its own kdamond and see its own hot set.
 */
async function caseMany(workload: string, n: number): Promise<unknown> {
  const targets: Target[] = [];
  const runDir = mkdtempSync('/tmp/vmtier-damon-');
  const trackers: DamonTracker[] = [];
  try {
    for (let i = 0; i < n; i++) targets.push(await startTarget([workload, '--size', '16m', '--hot', `${2 + 2 * i}m`, '--layout', 'contiguous', '--thp', 'off']));
    for (let i = 0; i < n; i++) trackers.push(new DamonTracker({ runDir, initialIntervalMs: 500 }));
    const t0 = performance.now();
    await Promise.all(trackers.map((tr, i) => {
      const l = layout(targets[i]!);
      return tr.track(targets[i]!.child.pid!, [{ start: l.base, end: l.base + l.bytes }]);
    }));
    const trackMs = performance.now() - t0;
    const during = sysfsState();
    const states = readdirSync(runDir).sort();
    const kdamonds = trackers.map((tr) => tr.kdamond);
    const targetPids = kdamonds.map((k) => Number(readFileSync(`${DAMON_SYSFS_ROOT}/kdamonds/${k}/contexts/0/targets/0/pid_target`, 'utf8')));
    // DAMON never merges a region past (monitored bytes / min_nr_regions): the largest region, in pages.
    const regionLimitPages = kdamonds.map((k, i) => {
      const minRegions = Number(readFileSync(`${DAMON_SYSFS_ROOT}/kdamonds/${k}/contexts/0/monitoring_attrs/nr_regions/min`, 'utf8'));
      return Math.ceil(layout(targets[i]!).bytes / minRegions / PAGE_SIZE);
    });
    await sleep(2500);
    const results = await Promise.all(trackers.map((tr, i) => scanRange(tr, footprint(layout(targets[i]!)), { scans: 3, intervalMs: 500 })));
    const acc = results.map((r, i) => ({ pid: r.pid, hotMiB: 2 + 2 * i, regionLimitPages: regionLimitPages[i], ...accuracy(r, layout(targets[i]!).hot) }));
    for (const tr of trackers) await tr.close();
    await sleep(300);
    return { kdamonds, targetPids, pids: targets.map((t) => t.child.pid), during, states, trackMs, acc, after: sysfsState(), stateFiles: readdirSync(runDir) };
  } finally {
    for (const tr of trackers) await tr.close().catch(() => undefined);
    for (const t of targets) t.child.kill('SIGKILL');
  }
}

/** Helper process of caseCrash: track, report, then wait to be killed. */
async function hold(runDir: string, pid: number, start: number, end: number): Promise<void> {
  const tracker = new DamonTracker({ runDir, exitHook: false });
  await tracker.track(pid, [{ start, end }]);
  process.stdout.write(JSON.stringify({ kdamond: tracker.kdamond }) + '\n');
  await sleep(600_000);
}

/** `vmtier scan --tracker damon --json` on the workload, as a user runs it. */
async function caseCli(workload: string, bin: string): Promise<unknown> {
  const t = await startTarget([workload, '--size', '32m', '--hot', '8m']);
  const runDir = mkdtempSync('/tmp/vmtier-damon-');
  try {
    const l = layout(t);
    const r = spawnSync(process.execPath, [bin, 'scan', '--pid', String(t.child.pid), '--tracker', 'damon', '--scans', '4',
      '--interval-ms', '200', '--json', '--run-dir', runDir], { encoding: 'utf8', timeout: 240_000 });
    const range = `0x${l.base.toString(16)}-0x${(l.base + l.bytes).toString(16)}`;
    const rr = spawnSync(process.execPath, [bin, 'scan', '--pid', String(t.child.pid), '--tracker', 'damon', '--scans', '3',
      '--interval-ms', '200', '--range', range, '--json', '--run-dir', runDir],
    { encoding: 'utf8', timeout: 240_000 });
    // --record: what DAMON saw becomes a trace (replayed on the host by the test).
    const rec = join(runDir, 'rec.csv');
    const rc = spawnSync(process.execPath, [bin, 'scan', '--pid', String(t.child.pid), '--tracker', 'damon', '--scans', '3',
      '--interval-ms', '200', '--range', range, '--json', '--run-dir', runDir, '--record', rec], { encoding: 'utf8', timeout: 240_000 });
    const recorded = { status: rc.status, stdout: rc.stdout, stderr: rc.stderr, trace: existsSync(rec) ? readFileSync(rec, 'utf8') : '' };
    rmSync(rec, { force: true });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, ranged: { status: rr.status, stdout: rr.stdout, stderr: rr.stderr }, recorded, range, layout: { base: l.base, bytes: l.bytes, hot: l.hot }, after: sysfsState(), stateFiles: readdirSync(runDir) };
  } finally {
    t.child.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const [kase, ...args] = process.argv.slice(2);
  const workload = process.env.VMTIER_WORKLOAD ?? '';
  if (kase !== 'hold' && !existsSync(workload)) throw new Error(`VMTIER_WORKLOAD=${workload} does not exist`);
  let out: unknown;
  switch (kase) {
    case 'accuracy': {
      // accuracy <scans> <intervalMs> <minRegions|-> <maxRegions|-> <minAccesses|-> -- <workload args>
      const [scans, intervalMs, minR, maxR, minA, sep, ...wargs] = args;
      if (sep !== '--') throw new Error('usage: accuracy scans intervalMs minRegions maxRegions minAccesses -- workload-args');
      const opt = (s: string | undefined) => (s === undefined || s === '-' ? undefined : Number(s));
      out = await caseAccuracy(workload, wargs, Number(scans), Number(intervalMs), opt(minR), opt(maxR), opt(minA));
      break;
    }
    case 'perscan': {
      const [rounds, intervalMs, sep, ...wargs] = args;
      if (sep !== '--') throw new Error('usage: perscan rounds intervalMs -- workload-args');
      out = await casePerScan(workload, wargs, Number(rounds), Number(intervalMs));
      break;
    }
    case 'exit':
      out = await caseExit(workload);
      break;
    case 'crash':
      out = await caseCrash(workload, process.argv[1]!);
      break;
    case 'many':
      out = await caseMany(workload, Number(args[0] ?? 3));
      break;
    case 'hold':
      await hold(args[0]!, Number(args[1]), Number(args[2]), Number(args[3]));
      return;
    case 'cli':
      out = await caseCli(workload, args[0]!);
      break;
    default:
      throw new Error(`unknown case ${kase}`);
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stdout.write(JSON.stringify({ fatal: describeError(e) }) + '\n');
  process.exit(1);
});
