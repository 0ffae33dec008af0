/**
 * DamonTracker: per-page access counts from DAMON virtual-address monitoring, through
 * sysfs (src/scan/damon-sysfs.ts). It creates its own kdamond and never touches one it
 * did not create: when any other kdamond runs (a platform one, DAMON_RECLAIM, another
 * user), or kdamond directories configured by someone else exist, it refuses with
 * TRACKER_BUSY before writing anything.
 *
 * Ownership: before creating the kdamond it claims a state file (O_EXCL) under `runDir`
 * holding the kdamond index, its thread pid once running, the target, and the owner's
 * pid + start time. On start, a state file whose owner is dead marks a stale kdamond from
 * a crash: it is turned off and its directory removed. close() and process exit do the same.
 *
 * From regions to scans (stated, because DAMON is not a page-table scanner): DAMON keeps
 * adaptive regions and, every sample interval, checks ONE random page per region. One
 * scan here is one aggregation interval (aggr_us = intervalMs): the stat scheme's
 * tried_regions snapshot gives each region's nr_accesses (samples that found it accessed,
 * 0..aggr_us/sample_us); a page counts as seen in that scan iff its region's nr_accesses
 * >= minAccesses (default 1). So counts are per region, not per page: every page of a
 * region gets the region's verdict. Precision and recall against a known hot set are
 * measured in test/lab/damon.test.ts and reported in README.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeFileSync, writeSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KernelError, VmtierError, isVmtierError } from '../errors.js';
import { DamonSysfs, DAMON_SYSFS_ROOT, nodeSysfsIo, type DamonAttrs, type DamonRegion, type SysfsIo } from './damon-sysfs.js';
import { processAlive, processComm, processStartTime, readPresence } from './procfs.js';
import { abortError, checkScanRequest } from './request.js';
import { normalizeRanges, pagesIn, totalPages } from './runs.js';
import { PAGE_SIZE, type HvaRange, type RangeCounts, type ScanRequest, type ScanResult, type Tracker } from './tracker.js';

export interface DamonTrackerOptions {
  /** DAMON sysfs admin directory (default /sys/kernel/mm/damon/admin). */
  sysfsRoot?: string;
  /** File access under sysfsRoot (default: real files). */
  io?: SysfsIo;
  /** procfs root for liveness, pagemap and kdamond threads (default /proc). */
  procRoot?: string;
  /** Where the ownership state file lives (default /run/vmtier). */
  runDir?: string;
  /** A page is seen in a scan when its region's nr_accesses >= this (default 1). */
  minAccesses?: number;
  /** Samples per aggregation interval, i.e. per scan (default 10; sample_us = intervalMs / this). */
  samplesPerScan?: number;
  /** DAMON nr_regions bounds; default min = tracked size / 2 MiB clamped to 10..1000, max = 2 * min. */
  minRegions?: number;
  maxRegions?: number;
  /** Aggregation interval used between track() and the first scan (default 100 ms). */
  initialIntervalMs?: number;
  /** Install a process 'exit' hook that turns the kdamond off (default true with real sysfs). */
  exitHook?: boolean;
}

/** What the state file records about the kdamond this tracker created. */
export interface DamonOwnerRecord {
  version: 1;
  sysfsRoot: string;
  kdamond: number;
  /** kdamond thread pid once running, -1 before. */
  kdamondPid: number;
  targetPid: number;
  ownerPid: number;
  ownerStart: number | null;
  createdAt: string;
}

export const DAMON_STATE_FILE = 'damon-kdamond.json';
const ESRCH = 3;
const REGION_BYTES = 2 * 1024 * 1024;

/** kdamond threads by name: also finds kdamonds that sysfs does not show (DAMON_RECLAIM, DAMON_LRU_SORT). */
function kdamondThreads(procRoot: string): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync(procRoot);
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    const comm = processComm(Number(n), procRoot);
    if (comm && comm.startsWith('kdamond')) out.push(Number(n));
  }
  return out;
}

export class DamonTracker implements Tracker {
  readonly name = 'damon';
  readonly sysfs: DamonSysfs;
  private readonly procRoot: string;
  private readonly runDir: string;
  private readonly minAccesses: number;
  private readonly samplesPerScan: number;
  private readonly opts: DamonTrackerOptions;
  private readonly realSysfs: boolean;
  private record: DamonOwnerRecord | null = null;
  private pid = 0;
  private ranges: HvaRange[] = [];
  private intervalMs: number;
  private exitHook: (() => void) | null = null;

  constructor(opts: DamonTrackerOptions = {}) {
    this.opts = opts;
    this.sysfs = new DamonSysfs(opts.sysfsRoot ?? DAMON_SYSFS_ROOT, opts.io ?? nodeSysfsIo);
    this.realSysfs = (opts.io ?? nodeSysfsIo) === nodeSysfsIo;
    this.procRoot = opts.procRoot ?? '/proc';
    this.runDir = opts.runDir ?? '/run/vmtier';
    this.minAccesses = opts.minAccesses ?? 1;
    this.samplesPerScan = opts.samplesPerScan ?? 10;
    this.intervalMs = opts.initialIntervalMs ?? 100;
    if (!Number.isInteger(this.minAccesses) || this.minAccesses < 1) throw new VmtierError('INVALID_INPUT', 'minAccesses must be >= 1');
    if (!Number.isInteger(this.samplesPerScan) || this.samplesPerScan < 1) throw new VmtierError('INVALID_INPUT', 'samplesPerScan must be >= 1');
  }

  get statePath(): string {
    return join(this.runDir, DAMON_STATE_FILE);
  }

  /** Index of the kdamond this tracker created, or null. */
  get kdamond(): number | null {
    return this.record?.kdamond ?? null;
  }

  /** The ownership record of this tracker's kdamond (a copy), or null. */
  get owner(): DamonOwnerRecord | null {
    return this.record ? { ...this.record } : null;
  }

  // ---- ownership ------------------------------------------------------------------

  private readRecord(): DamonOwnerRecord | null {
    let text: string;
    try {
      text = readFileSync(this.statePath, 'utf8');
    } catch {
      return null;
    }
    try {
      const r = JSON.parse(text) as DamonOwnerRecord;
      if (r && r.version === 1 && Number.isInteger(r.kdamond)) return r;
    } catch {
      // A torn write from a crash: the record tells nothing, so nothing is touched.
    }
    return { version: 1, sysfsRoot: '', kdamond: -1, kdamondPid: -1, targetPid: -1, ownerPid: -1, ownerStart: null, createdAt: '' };
  }

  private writeRecord(r: DamonOwnerRecord): void {
    writeFileSync(this.statePath, JSON.stringify(r) + '\n');
  }

  private ownerAlive(r: DamonOwnerRecord): boolean {
    if (r.ownerPid <= 0 || !processAlive(r.ownerPid, this.procRoot)) return false;
    return r.ownerStart === null || processStartTime(r.ownerPid, this.procRoot) === r.ownerStart;
  }

  /**
   * Turns off and removes a kdamond an earlier vmtier process created and did not clean
   * up (crash, SIGKILL). Only a kdamond that still matches the record is touched.
   */
  private async removeStale(r: DamonOwnerRecord): Promise<{ removed: boolean; reason: string }> {
    if (r.sysfsRoot !== this.sysfs.root || r.kdamond < 0) return { removed: false, reason: 'record is for another sysfs root or unreadable' };
    const n = await this.sysfs.nrKdamonds();
    if (r.kdamond >= n) return { removed: false, reason: 'kdamond directory already gone' };
    const k = r.kdamond;
    if ((await this.sysfs.state(k)) === 'on') {
      const pid = await this.sysfs.pid(k);
      const target = await this.sysfs.targetPid(k);
      // Before the record learned the thread pid (crash between 'on' and the update), the target identifies it.
      const ours = r.kdamondPid > 0 ? pid === r.kdamondPid : target === r.targetPid;
      if (!ours) return { removed: false, reason: `kdamond ${k} now runs as pid ${pid}, not the recorded one` };
      await this.sysfs.command(k, 'off');
      await this.waitThreadGone(pid);
    }
    return { removed: await this.dropDirIfLast(k), reason: 'stale kdamond turned off' };
  }

  /** Removes kdamond k's directory when it is the only one (shrinking would erase others' dirs). */
  private async dropDirIfLast(k: number): Promise<boolean> {
    const n = await this.sysfs.nrKdamonds();
    if (k === 0 && n === 1) {
      await this.sysfs.setNrKdamonds(0);
      return true;
    }
    return false;
  }

  private async waitThreadGone(pid: number): Promise<void> {
    if (pid <= 0) return;
    for (let i = 0; i < 100 && processAlive(pid, this.procRoot) && processComm(pid, this.procRoot)?.startsWith('kdamond'); i++) {
      await sleep(20);
    }
  }

  /**
   * Read-only survey of every existing kdamond. Throws TRACKER_BUSY when one runs that is
   * not ours or foreign kdamond directories exist, TRACKER_UNAVAILABLE without vaddr.
   */
  async checkAvailable(): Promise<{ operations: string[] | null }> {
    if (!(await this.sysfs.present())) {
      throw new VmtierError('TRACKER_UNAVAILABLE', `DAMON sysfs interface not found under ${this.sysfs.root}`, { sysfsRoot: this.sysfs.root });
    }
    const n = await this.sysfs.nrKdamonds();
    let operations: string[] | null = null;
    const running: { kdamond: number; pid: number }[] = [];
    for (let k = 0; k < n; k++) {
      if (k === this.record?.kdamond) continue;
      operations ??= await this.sysfs.availOperations(k);
      if ((await this.sysfs.state(k)) === 'on') running.push({ kdamond: k, pid: await this.sysfs.pid(k) });
    }
    const vaddr = operations === null ? null : operations.includes('vaddr');
    if (running.length > 0) {
      throw new VmtierError('TRACKER_BUSY',
        `a kdamond vmtier did not create is running (kdamond ${running.map((r) => `${r.kdamond} pid ${r.pid}`).join(', ')}); vmtier never disturbs it`,
        { running, vaddr, operations });
    }
    const ownPid = this.record?.kdamondPid ?? -1;
    const threads = kdamondThreads(this.procRoot).filter((p) => p !== ownPid);
    if (threads.length > 0) {
      throw new VmtierError('TRACKER_BUSY', `kdamond threads not created through vmtier are running (pid ${threads.join(', ')})`,
        { threads, vaddr, operations });
    }
    if (vaddr === false) {
      throw new VmtierError('TRACKER_UNAVAILABLE', `this kernel's DAMON offers operations "${operations!.join(' ')}", not vaddr`, { operations });
    }
    if (n > 0 && !this.record) {
      throw new VmtierError('TRACKER_BUSY',
        `${n} kdamond director${n === 1 ? 'y' : 'ies'} configured by someone else exist; creating one would erase them (nr_kdamonds rewrites all)`,
        { nrKdamonds: n });
    }
    return { operations };
  }

  /**
   * A state file left by a dead owner marks a stale kdamond: turn it off and drop it.
   * A live owner (another vmtier process) means TRACKER_BUSY.
   */
  async recoverStale(): Promise<{ removed: boolean; reason: string } | null> {
    const old = this.readRecord();
    if (!old) return null;
    if (old.ownerPid === process.pid && this.record) return null;
    if (old.ownerPid > 0 && this.ownerAlive(old)) {
      throw new VmtierError('TRACKER_BUSY', `another vmtier DAMON tracker (pid ${old.ownerPid}) owns kdamond ${old.kdamond}`,
        { ownerPid: old.ownerPid, kdamond: old.kdamond });
    }
    const res = await this.removeStale(old);
    try {
      unlinkSync(this.statePath);
    } catch {
      // removed concurrently
    }
    return res;
  }

  /** Claims the state file atomically (O_EXCL): two trackers starting at once cannot both win. */
  private claim(targetPid: number): DamonOwnerRecord {
    mkdirSync(this.runDir, { recursive: true });
    const rec: DamonOwnerRecord = {
      version: 1, sysfsRoot: this.sysfs.root, kdamond: 0, kdamondPid: -1, targetPid,
      ownerPid: process.pid, ownerStart: processStartTime(process.pid, this.procRoot), createdAt: new Date().toISOString(),
    };
    let fd: number;
    try {
      fd = openSync(this.statePath, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new VmtierError('TRACKER_BUSY', `${this.statePath} was claimed by another vmtier process meanwhile`);
      }
      throw e;
    }
    try {
      writeSync(fd, JSON.stringify(rec) + '\n');
    } finally {
      closeSync(fd);
    }
    return rec;
  }

  private release(): void {
    try {
      const r = this.readRecord();
      if (r && r.ownerPid === process.pid) unlinkSync(this.statePath);
    } catch {
      // already gone
    }
  }

  // ---- tracking --------------------------------------------------------------------

  private attrs(intervalMs: number): DamonAttrs {
    const aggrUs = Math.max(1000, Math.round(intervalMs * 1000));
    const sampleUs = Math.max(100, Math.floor(aggrUs / this.samplesPerScan));
    const bytes = totalPages(this.ranges) * PAGE_SIZE;
    const minRegions = this.opts.minRegions ?? Math.min(1000, Math.max(10, Math.ceil(bytes / REGION_BYTES)));
    const maxRegions = this.opts.maxRegions ?? Math.max(minRegions * 2, 20);
    // Regions are re-read from the (fixed) ranges only under vaddr; keep updates rare.
    return { sampleUs, aggrUs, updateUs: Math.max(aggrUs, 1_000_000), minRegions, maxRegions };
  }

  /** Initial regions: the tracked ranges cut into at most ~minRegions pieces, so DAMON starts fine-grained. */
  private initRegions(minRegions: number): HvaRange[] {
    const bytes = totalPages(this.ranges) * PAGE_SIZE;
    const piece = Math.max(PAGE_SIZE, Math.ceil(bytes / minRegions / PAGE_SIZE) * PAGE_SIZE);
    const out: HvaRange[] = [];
    for (const r of this.ranges) {
      for (let s = r.start; s < r.end; s += piece) out.push({ start: s, end: Math.min(r.end, s + piece) });
    }
    return out;
  }

  async track(pid: number, ranges: readonly HvaRange[]): Promise<void> {
    if (!Number.isInteger(pid) || pid <= 0) throw new VmtierError('INVALID_INPUT', `pid must be a positive integer, not ${pid}`);
    const norm = normalizeRanges(ranges);
    if (norm.length === 0) throw new VmtierError('INVALID_INPUT', 'no ranges to track');
    if (!processAlive(pid, this.procRoot)) throw new KernelError('damon', ESRCH, `process ${pid} is gone (ESRCH)`, { pid });
    if (this.record) await this.stopKdamond();
    this.pid = pid;
    this.ranges = norm;
    if (!this.record) await this.recoverStale();
    const { operations } = await this.checkAvailable();
    if (!this.record) this.record = this.claim(pid);
    try {
      const k = this.record.kdamond;
      if ((await this.sysfs.nrKdamonds()) === 0) await this.sysfs.setNrKdamonds(1);
      await this.sysfs.write(`${this.sysfs.kdamondDir(k)}/contexts/nr_contexts`, 1);
      const avail = operations ?? (await this.sysfs.availOperations(k)) ?? [];
      if (!avail.includes('vaddr')) {
        throw new VmtierError('TRACKER_UNAVAILABLE', `this kernel's DAMON offers operations "${avail.join(' ')}", not vaddr`, { operations: avail });
      }
      // fvaddr keeps exactly our ranges; plain vaddr would reset them to the process's three big areas every update_us.
      const ops = avail.includes('fvaddr') ? 'fvaddr' : 'vaddr';
      const attrs = this.attrs(this.intervalMs);
      await this.sysfs.configure(k, { operations: ops, pid, regions: this.initRegions(attrs.minRegions), attrs });
      this.record.targetPid = pid;
      this.writeRecord(this.record);
      try {
        await this.sysfs.command(k, 'on');
      } catch (e) {
        if (!processAlive(pid, this.procRoot)) throw new KernelError('damon', ESRCH, `process ${pid} is gone (ESRCH)`, { pid });
        throw e;
      }
      this.record.kdamondPid = await this.sysfs.pid(k);
      this.writeRecord(this.record);
      this.installExitHook();
    } catch (e) {
      await this.close().catch(() => undefined);
      throw e;
    }
  }

  private installExitHook(): void {
    if (this.exitHook || !(this.opts.exitHook ?? this.realSysfs)) return;
    const k = this.record!.kdamond;
    const statePath = `${this.sysfs.kdamondDir(k)}/state`;
    // 'exit' handlers must be synchronous, and the kdamond thread stops asynchronously, so only
    // 'off' fits here; the state file stays and the next start removes the directory.
    this.exitHook = () => {
      try {
        writeFileSync(statePath, 'off');
      } catch {
        // already off
      }
    };
    process.once('exit', this.exitHook);
  }

  private removeExitHook(): void {
    if (this.exitHook) process.removeListener('exit', this.exitHook);
    this.exitHook = null;
  }

  private async goneError(): Promise<VmtierError | null> {
    if (processAlive(this.pid, this.procRoot)) return null;
    await this.close().catch(() => undefined);
    return new KernelError('damon', ESRCH, `process ${this.pid} exited during the scan (ESRCH); kdamond removed`, { pid: this.pid });
  }

  private async applyInterval(intervalMs: number): Promise<void> {
    if (intervalMs === this.intervalMs) return;
    const k = this.record!.kdamond;
    const a = this.attrs(intervalMs);
    const iv = `${this.sysfs.ctxDir(k)}/monitoring_attrs/intervals`;
    // aggr_us >= sample_us at every step, or 'commit' would see an invalid pair.
    if (a.aggrUs >= this.attrs(this.intervalMs).aggrUs) {
      await this.sysfs.write(`${iv}/aggr_us`, a.aggrUs);
      await this.sysfs.write(`${iv}/sample_us`, a.sampleUs);
    } else {
      await this.sysfs.write(`${iv}/sample_us`, a.sampleUs);
      await this.sysfs.write(`${iv}/aggr_us`, a.aggrUs);
    }
    await this.sysfs.write(`${iv}/update_us`, a.updateUs);
    await this.sysfs.command(k, 'commit');
    this.intervalMs = intervalMs;
  }

  async scan(req: ScanRequest): Promise<ScanResult> {
    checkScanRequest(req);
    if (!this.record || this.record.kdamondPid < 0) throw new VmtierError('INVALID_INPUT', 'track() a process before scanning');
    const t0 = performance.now();
    const k = this.record.kdamond;
    const n = totalPages(this.ranges);
    const counts = new Uint8Array(n);
    try {
      await this.applyInterval(Math.max(1, req.intervalMs));
      let lastSnapshot = -Infinity;
      for (let s = 0; s < req.scans; s++) {
        if (req.signal?.aborted) throw abortError(req.signal);
        // Measured in the lab: a snapshot requested right after the previous one returned
        // sometimes came back with every region at nr_accesses 0 (whole scans lost). Requesting
        // it half an interval later lands it inside the next aggregation interval.
        const gap = this.intervalMs / 2 - (performance.now() - lastSnapshot);
        if (gap > 0) await sleep(gap, undefined, { signal: req.signal }).catch(() => { throw abortError(req.signal!); });
        let regions: DamonRegion[];
        try {
          regions = await this.sysfs.snapshotRegions(k);
        } catch (e) {
          throw (await this.goneError()) ?? e;
        }
        // kdamond stops by itself when its target exits; an empty snapshot from a dead target is not "idle".
        if (!processAlive(this.pid, this.procRoot) || (await this.sysfs.state(k)) === 'off') {
          throw (await this.goneError()) ?? new VmtierError('KERNEL_ERROR', `kdamond ${k} stopped during the scan`);
        }
        lastSnapshot = performance.now();
        this.accumulate(regions, counts);
        req.onScan?.(s);
      }
    } catch (e) {
      if (isVmtierError(e) || (e as Error).name === 'AbortError') throw e;
      throw new VmtierError('KERNEL_ERROR', `DAMON scan failed: ${(e as Error).message}`, undefined, { cause: e });
    }
    const out: RangeCounts[] = [];
    let base = 0;
    for (const r of this.ranges) {
      const len = pagesIn(r);
      let present: Uint8Array;
      try {
        present = readPresence(this.pid, r, this.procRoot);
      } catch (e) {
        throw (await this.goneError()) ?? e;
      }
      const c = counts.slice(base, base + len);
      // A not-present page has no accessed bit: its region's verdict does not apply to it.
      for (let i = 0; i < len; i++) if (!present[i]) c[i] = 0;
      // DAMON does not report mapping sizes: pageShift stays 0 (unknown).
      out.push({ start: r.start, end: r.end, counts: c, present, pageShift: new Uint8Array(len) });
      base += len;
    }
    return { tracker: this.name, pid: this.pid, scans: req.scans, intervalMs: req.intervalMs, ranges: out, elapsedMs: performance.now() - t0 };
  }

  /** Adds one scan: +1 for every tracked page inside a region with nr_accesses >= minAccesses. */
  private accumulate(regions: readonly DamonRegion[], counts: Uint8Array): void {
    let base = 0;
    let ri = 0;
    for (const r of this.ranges) {
      while (ri > 0 && regions[ri - 1]!.end > r.start) ri--;
      for (; ri < regions.length && regions[ri]!.start < r.end; ri++) {
        const g = regions[ri]!;
        if (g.nrAccesses < this.minAccesses || g.end <= r.start) continue;
        const s = Math.max(g.start, r.start);
        const e = Math.min(g.end, r.end);
        if (s >= e) continue;
        // Region bounds are page aligned for vaddr; round outward defensively.
        const from = base + Math.floor((s - r.start) / PAGE_SIZE);
        const to = base + Math.ceil((e - r.start) / PAGE_SIZE);
        for (let i = from; i < to; i++) counts[i]!++;
      }
      base += pagesIn(r);
    }
  }

  private async stopKdamond(): Promise<void> {
    const r = this.record;
    if (!r) return;
    const k = r.kdamond;
    if ((await this.sysfs.nrKdamonds()) > k && (await this.sysfs.state(k)) === 'on') {
      const pid = await this.sysfs.pid(k);
      if (r.kdamondPid < 0 || pid === r.kdamondPid) {
        await this.sysfs.command(k, 'off');
        await this.waitThreadGone(pid);
      }
    }
    r.kdamondPid = -1;
  }

  /** Turns the kdamond off, removes its directory and the state file. Idempotent. */
  async close(): Promise<void> {
    const r = this.record;
    if (!r) return;
    try {
      await this.stopKdamond();
      await this.dropDirIfLast(r.kdamond);
    } finally {
      this.removeExitHook();
      this.release();
      this.record = null;
    }
  }
}
