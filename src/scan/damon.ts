/**
 * DamonTracker: per-page access counts from DAMON virtual-address monitoring, through
 * sysfs (src/scan/damon-sysfs.ts). Each tracker (one per VM) runs its own kdamond, a slot of
 * the process's kdamond pool (src/scan/damon-pool.ts), and never touches one vmtier did not
 * create: when any other kdamond runs (a platform one, DAMON_RECLAIM, another user), or
 * kdamond directories configured by someone else exist, it refuses with TRACKER_BUSY before
 * writing anything.
 *
 * Ownership: before configuring its kdamond it claims the slot's state file (O_EXCL) under
 * `runDir` holding the kdamond index, its thread pid once running, the target, and the owner's
 * pid + start time. On start, state files whose owner is dead mark stale kdamonds from a crash:
 * they are turned off (the pool). close() and process exit turn this tracker's kdamond off.
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
import { writeFileSync } from 'node:fs';
import { ESRCH } from '../errno.js';
import { KernelError, VmtierError, isVmtierError } from '../errors.js';
import { DamonKdamondPool, DEFAULT_KDAMOND_SLOTS, type DamonOwnerRecord } from './damon-pool.js';
import { damonStoppedError, isDamonGone, isDamonStopped, scanKdamond, type DamonScanJob, type DamonScanRunner } from './damon-scan.js';
import { DamonSysfs, DAMON_SYSFS_ROOT, nodeSysfsIo, type DamonAttrs, type SysfsIo } from './damon-sysfs.js';
import { processAlive } from './procfs.js';
import { checkScanRequest } from './request.js';
import { normalizeRanges, totalPages } from './runs.js';
import type { ScanRequest, ScanResult, Tracker } from './tracker.js';
import { PAGE_SIZE, type HvaRange } from '../units.js';

export interface DamonTrackerOptions {
  /** DAMON sysfs admin directory (default /sys/kernel/mm/damon/admin). */
  sysfsRoot?: string;
  /** File access under sysfsRoot (default: real files). */
  io?: SysfsIo;
  /** procfs root for liveness, pagemap and kdamond threads (default /proc). */
  procRoot?: string;
  /** Where the ownership state files live (default /run/vmtier). */
  runDir?: string;
  /** kdamond directories the pool creates: the most VMs DAMON tracks at once (default 32). */
  kdamondSlots?: number;
  /** The kdamond pool (default: the process's own for this sysfs root and runDir); tests stand in other processes with their own. */
  pool?: DamonKdamondPool;
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
  /** Where a scan's reads run (default: here, through `io`); the daemon passes the VM's worker thread. */
  scanRunner?: DamonScanRunner;
}

export type { DamonOwnerRecord } from './damon-pool.js';
export { DAMON_POOL_FILE, damonStateFile } from './damon-pool.js';

const REGION_BYTES = 2 * 1024 * 1024;

export class DamonTracker implements Tracker {
  readonly name = 'damon';
  readonly sysfs: DamonSysfs;
  readonly pool: DamonKdamondPool;
  private readonly procRoot: string;
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
    this.sysfs = opts.pool?.sysfs ?? new DamonSysfs(opts.sysfsRoot ?? DAMON_SYSFS_ROOT, opts.io ?? nodeSysfsIo);
    this.realSysfs = (opts.io ?? nodeSysfsIo) === nodeSysfsIo;
    this.procRoot = opts.procRoot ?? '/proc';
    this.minAccesses = opts.minAccesses ?? 1;
    this.samplesPerScan = opts.samplesPerScan ?? 10;
    this.intervalMs = opts.initialIntervalMs ?? 100;
    if (!Number.isInteger(this.minAccesses) || this.minAccesses < 1) throw new VmtierError('INVALID_INPUT', 'minAccesses must be >= 1');
    if (!Number.isInteger(this.samplesPerScan) || this.samplesPerScan < 1) throw new VmtierError('INVALID_INPUT', 'samplesPerScan must be >= 1');
    this.pool = opts.pool ?? DamonKdamondPool.shared(this.sysfs, {
      procRoot: this.procRoot,
      runDir: opts.runDir ?? '/run/vmtier',
      slots: opts.kdamondSlots ?? DEFAULT_KDAMOND_SLOTS,
    });
  }

  /** This tracker's state file (its kdamond's), or null before track(). */
  get statePath(): string | null {
    return this.record ? this.pool.statePath(this.record.kdamond) : null;
  }

  /** Index of the kdamond this tracker created, or null. */
  get kdamond(): number | null {
    return this.record?.kdamond ?? null;
  }

  /** The ownership record of this tracker's kdamond (a copy), or null. */
  get owner(): DamonOwnerRecord | null {
    return this.record ? { ...this.record } : null;
  }

  /** Read-only survey of every kdamond (see DamonKdamondPool.survey). */
  checkAvailable(): Promise<{ operations: string[] | null }> {
    return this.pool.locked(() => this.pool.survey());
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
    // Under the pool's lock: another tracker's survey must never see this kdamond half started.
    await this.pool.locked(() => this.trackLocked(pid, norm));
  }

  private async trackLocked(pid: number, norm: HvaRange[]): Promise<void> {
    let operations: string[] | null;
    if (this.record) {
      await this.pool.stopOwn(this.record);
      operations = (await this.pool.survey()).operations;
    } else {
      const got = await this.pool.acquire(pid);
      this.record = got.record;
      operations = got.operations;
    }
    this.pid = pid;
    this.ranges = norm;
    const rec = this.record;
    try {
      const k = rec.kdamond;
      await this.sysfs.write(`${this.sysfs.kdamondDir(k)}/contexts/nr_contexts`, 1);
      const avail = operations ?? (await this.sysfs.availOperations(k)) ?? [];
      if (!avail.includes('vaddr')) {
        throw new VmtierError('TRACKER_UNAVAILABLE', `this kernel's DAMON offers operations "${avail.join(' ')}", not vaddr`, { operations: avail });
      }
      // fvaddr keeps exactly our ranges; plain vaddr would reset them to the process's three big areas every update_us.
      const ops = avail.includes('fvaddr') ? 'fvaddr' : 'vaddr';
      const attrs = this.attrs(this.intervalMs);
      await this.sysfs.configure(k, { operations: ops, pid, regions: this.initRegions(attrs.minRegions), attrs });
      rec.targetPid = pid;
      this.pool.update(rec);
      try {
        await this.sysfs.command(k, 'on');
      } catch (e) {
        if (!processAlive(pid, this.procRoot)) throw new KernelError('damon', ESRCH, `process ${pid} is gone (ESRCH)`, { pid });
        throw e;
      }
      rec.kdamondPid = await this.sysfs.pid(k);
      // Turned off by someone else between our 'on' and now (its pid reads -1).
      if (rec.kdamondPid <= 0) throw damonStoppedError(k, pid);
      this.pool.update(rec);
      this.installExitHook();
    } catch (e) {
      await this.closeLocked().catch(() => undefined);
      throw e;
    }
  }

  private installExitHook(): void {
    if (this.exitHook || !(this.opts.exitHook ?? this.realSysfs)) return;
    const k = this.record!.kdamond;
    const statePath = `${this.sysfs.kdamondDir(k)}/state`;
    // 'exit' handlers must be synchronous, and the kdamond thread stops asynchronously, so only
    // 'off' fits here; the state file stays and the next start frees the slot.
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
    if (!this.record || this.record.kdamondPid < 0) throw new VmtierError('INVALID_INPUT', 'track() a process before scanning');
    checkScanRequest(req, totalPages(this.ranges));
    try {
      await this.applyInterval(Math.max(1, req.intervalMs));
    } catch (e) {
      // A 'commit' to a kdamond someone else turned off fails: say so, as the scan would.
      if (await this.sysfs.state(this.record.kdamond).then((st) => st === 'off', () => false)) {
        const stopped = damonStoppedError(this.record.kdamond, this.pid);
        await this.close().catch(() => undefined);
        throw stopped;
      }
      if (isVmtierError(e)) throw e;
      throw new VmtierError('KERNEL_ERROR', `DAMON scan failed: ${(e as Error).message}`, undefined, { cause: e });
    }
    const job: DamonScanJob = {
      sysfsRoot: this.sysfs.root,
      procRoot: this.procRoot,
      kdamond: this.record.kdamond,
      pid: this.pid,
      ranges: this.ranges,
      aggrMs: this.intervalMs,
      minAccesses: this.minAccesses,
    };
    try {
      return await (this.opts.scanRunner ?? ((j, r) => scanKdamond(j, r, this.sysfs.io)))(job, req);
    } catch (e) {
      // Stopped by someone else: this tracker is done (its slot is freed); the caller decides
      // whether and when to start another (the daemon: after its tracker backoff).
      if (isDamonStopped(e)) {
        await this.close().catch(() => undefined);
        throw e;
      }
      if (!isDamonGone(e)) throw e;
      throw (await this.goneError()) ?? new VmtierError('KERNEL_ERROR', (e as Error).message);
    }
  }

  /** Turns the kdamond off and frees its slot (the last tracker out removes the directories and the pool file). Idempotent. */
  close(): Promise<void> {
    if (!this.record) return Promise.resolve();
    return this.pool.locked(() => this.closeLocked());
  }

  private async closeLocked(): Promise<void> {
    const r = this.record;
    if (!r) return;
    try {
      await this.pool.release(r);
    } finally {
      this.removeExitHook();
      this.record = null;
    }
  }
}
