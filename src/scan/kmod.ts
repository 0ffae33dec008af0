/**
 * The 'kmod' tracker: the vmtier_idle kernel module (kmod/) through /dev/vmtier_idle.
 * One round = a clearing pass (discarded: it only resets the accessed bits), then `scans`
 * passes `intervalMs` apart, each reading and clearing the A bits of every tracked range;
 * a page's count is the number of passes that saw it accessed. The only state per 4 KiB page
 * is the caller's count byte; presence and leaf sizes are kept as the module reports them, in
 * runs (src/scan/mapping-runs.ts).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { EFAULT, ENOENT, EOPNOTSUPP, EPERM, ESRCH } from '../errno.js';
import { KernelError, VmtierError } from '../errors.js';
import { ioc, ioctlBuffer } from '../sys/ioctl.js';
import { decodeKmodStream, PageState } from './kmod-stream.js';
import { readMaps } from './procfs.js';
import { abortError, checkScanRequest } from './request.js';
import { MappingRunsBuilder } from './mapping-runs.js';
import { fmtRange, intersectRanges, MAX_USER_ADDRESS, normalizeRanges, pagesIn, scannedRanges, totalPages } from './runs.js';
import type { ScanRequest, ScanResult, Tracker } from './tracker.js';
import { PAGE_SIZE, type HvaRange } from '../units.js';

/** The character device the vmtier_idle module creates (kmod/vmtier_idle_uapi.h). */
export const KMOD_DEVICE = '/dev/vmtier_idle';

/* kmod/vmtier_idle_uapi.h */
const MAGIC = 0xb9;
const F_CLEAR = 1 << 0;
const F_NOFLUSH = 1 << 1;
const F_KVM = 1 << 2;
const F_PROCESS = 1 << 3;
const TARGET_SIZE = 24;
const INFO_SIZE = 64;
export const IOC_SET_TARGET = ioc(1, MAGIC, 1, TARGET_SIZE);
export const IOC_SET_LIMIT = ioc(1, MAGIC, 2, 8);
export const IOC_GET_INFO = ioc(2, MAGIC, 3, INFO_SIZE);
const MODES = ['none', 'process', 'npt', 'ept'] as const;
export type KmodMode = (typeof MODES)[number];

export interface KmodTrackerOptions {
  device?: string;
  /** 'auto': the VM's TDP tables when the target holds a KVM VM, else its page tables. */
  target?: 'auto' | 'process' | 'kvm';
  /** Flush TLBs after each clearing read (default true; see kmod/README.md). */
  flush?: boolean;
  /**
   * Clear the A bits each pass reports (default true; counts then mean "accessed during the
   * pass"). false only reads: every pass sees what was accessed since anything last cleared
   * them, which is what is left on a kernel without CONFIG_PAGE_IDLE_FLAG (Debian's 6.1),
   * where the module refuses to clear.
   */
  clear?: boolean;
  /** Bytes per read (the module caps at 64 KiB). */
  readBytes?: number;
  procRoot?: string;
}

/** What the last round cost, for bench/scan and debug logs. */
export interface KmodRoundStats {
  reads: number;
  bytes: number;
  /** Wall ms inside read(2) (the kernel walk plus the copy). */
  readMs: number;
  /** Wall ms decoding streams into counts. */
  decodeMs: number;
  /** The module's own counters after the round (cumulative since track()). */
  kernelWalkNs: number;
  cleared: number;
  tlbFlushes: number;
  mode: KmodMode;
}

interface KmodInfo {
  abiVersion: number;
  mode: KmodMode;
  reads: number;
  cleared: number;
  tlbFlushes: number;
  walkNs: number;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(abortError(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class KmodTracker implements Tracker {
  readonly name = 'kmod';
  private fd: number | null = null;
  private pid = 0;
  private ranges: HvaRange[] = [];
  /** The parts of `ranges` the target had mapped at track(): they must stay mapped (process mode). */
  private mapped: HvaRange[] = [];
  /** Per tracked range, its mapping runs as the current pass sees them (storage reused from pass to pass). */
  private mapping: MappingRunsBuilder[] = [];
  private readonly device: string;
  private readonly opts: KmodTrackerOptions;
  private readonly buf: Buffer;
  private stats: KmodRoundStats | null = null;

  constructor(opts: KmodTrackerOptions = {}) {
    this.opts = opts;
    this.device = opts.device ?? KMOD_DEVICE;
    this.buf = Buffer.alloc(Math.min(Math.max(opts.readBytes ?? 64 * 1024, 64), 64 * 1024));
  }

  /** Mode the module chose for the current target ('npt'/'ept' = the VM's TDP tables). */
  mode(): KmodMode {
    return this.info().mode;
  }

  lastRoundStats(): KmodRoundStats | null {
    return this.stats;
  }

  async track(pid: number, ranges: readonly HvaRange[]): Promise<void> {
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new VmtierError('INVALID_INPUT', `pid must be a positive integer, not ${pid}`);
    const norm = normalizeRanges(ranges);
    if (norm.length === 0) throw new VmtierError('INVALID_INPUT', 'kmod: no ranges to track');
    if (this.fd === null) {
      try {
        this.fd = openSync(this.device, 'r');
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new VmtierError('TRACKER_UNAVAILABLE',
          code === 'ENOENT' ? `${this.device} does not exist: the vmtier_idle module is not loaded (see kmod/README.md)`
            : `cannot open ${this.device}: ${code ?? (e as Error).message} (needs CAP_SYS_ADMIN)`, { device: this.device }, { cause: e });
      }
    }
    const t = Buffer.alloc(TARGET_SIZE);
    t.writeInt32LE(pid, 0);
    const target = this.opts.target ?? 'auto';
    t.writeUInt32LE((this.opts.clear === false ? 0 : F_CLEAR) | (this.opts.flush === false ? F_NOFLUSH : 0) | (target === 'kvm' ? F_KVM : target === 'process' ? F_PROCESS : 0), 4);
    try {
      ioctlBuffer(this.fd, IOC_SET_TARGET, t, 'VMTIER_IDLE_IOC_SET_TARGET');
    } catch (e) {
      if (e instanceof KernelError && e.errno === ESRCH) throw new KernelError('vmtier_idle', ESRCH, `process ${pid} does not exist or is exiting (ESRCH)`, { pid });
      if (e instanceof KernelError && e.errno === ENOENT) throw new VmtierError('VM_NOT_FOUND', `process ${pid} holds no KVM VM`, { pid });
      if (e instanceof KernelError && e.errno === EOPNOTSUPP && this.opts.clear !== false) {
        throw new VmtierError('TRACKER_UNAVAILABLE', 'vmtier_idle refuses to clear accessed bits on this kernel (no CONFIG_PAGE_IDLE_FLAG: ' +
          'clearing would hide accesses from reclaim); see kmod/README.md', { pid, errno: EOPNOTSUPP }, { cause: e });
      }
      if (e instanceof KernelError && e.errno === EPERM) {
        throw new KernelError('vmtier_idle', EPERM, `not allowed to scan process ${pid} (needs CAP_SYS_ADMIN, and its uid or CAP_SYS_PTRACE) (EPERM)`, { pid });
      }
      throw e;
    }
    this.pid = pid;
    this.ranges = norm;
    this.mapping = norm.map(() => new MappingRunsBuilder());
    this.mapped = [];
    if (this.usesPageTables()) {
      // Gaps inside a range (guard pages, holes between mappings) are simply not present; a
      // range with nothing mapped at all is a mistake worth an error.
      this.mapped = intersectRanges(norm, this.mappedNow(pid));
      for (const r of norm) {
        if (!this.mapped.some((m) => m.start < r.end && m.end > r.start)) {
          throw new KernelError('vmtier_idle', EFAULT, `range ${fmtRange(r)} of process ${pid} is not mapped (EFAULT)`, { pid, start: r.start, end: r.end });
        }
      }
    }
  }

  async scan(req: ScanRequest): Promise<ScanResult> {
    if (this.fd === null || this.pid === 0) throw new VmtierError('INVALID_INPUT', 'kmod: scan() before track()');
    checkScanRequest(req, totalPages(this.ranges));
    const t0 = performance.now();
    const counts = req.counts.fill(0);
    const stats: KmodRoundStats = { reads: 0, bytes: 0, readMs: 0, decodeMs: 0, kernelWalkNs: 0, cleared: 0, tlbFlushes: 0, mode: 'none' };
    // Pass 0 only clears: what was accessed before the round began must not count.
    this.pass(counts, false, stats);
    for (let s = 0; s < req.scans; s++) {
      await sleep(req.intervalMs, req.signal);
      this.pass(counts, true, stats);
      req.onScan?.(s);
    }
    // A range the target unmapped meanwhile reads as not present: say so rather than report zeros.
    if (this.usesPageTables()) this.checkStillMapped();
    const info = this.info();
    stats.kernelWalkNs = info.walkNs;
    stats.cleared = info.cleared;
    stats.tlbFlushes = info.tlbFlushes;
    stats.mode = info.mode;
    this.stats = stats;
    const ranges = scannedRanges(this.ranges, this.mapping.map((m) => m.finish()));
    return { tracker: this.name, pid: this.pid, scans: req.scans, intervalMs: req.intervalMs, ranges, elapsedMs: performance.now() - t0 };
  }

  async close(): Promise<void> {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    this.pid = 0;
  }

  /**
   * One read-and-clear pass over every range; `count` adds this pass's accessed pages to
   * `counts` (the ranges laid end to end) and makes this pass's mappings the ones reported.
   */
  private pass(counts: Uint8Array, count: boolean, stats: KmodRoundStats): void {
    let base = 0;
    this.ranges.forEach((rc, k) => {
      const mapping = this.mapping[k]!;
      if (count) mapping.reset();
      this.setLimit(rc.end);
      let off = rc.start;
      while (off < rc.end) {
        const r0 = performance.now();
        const n = this.read(off);
        const r1 = performance.now();
        const next = decodeKmodStream(this.buf.subarray(0, n), off, rc.end, (start, end, state, shift) => {
          if (!count || state === PageState.NotPresent) return;
          const i0 = (start - rc.start) / PAGE_SIZE;
          const i1 = (end - rc.start) / PAGE_SIZE;
          mapping.add(i0, i1 - i0, shift);
          if (state === PageState.Accessed) {
            for (let i = base + i0; i < base + i1; i++) counts[i]!++;
          }
        });
        stats.decodeMs += performance.now() - r1;
        stats.readMs += r1 - r0;
        stats.reads++;
        stats.bytes += n;
        if (next <= off) {
          throw new VmtierError('STREAM_CORRUPT', `vmtier_idle made no progress at 0x${off.toString(16)}`, { offset: 0 });
        }
        off = next;
      }
      base += pagesIn(rc);
    });
  }

  private read(off: number): number {
    try {
      const n = readSync(this.fd!, this.buf, 0, this.buf.length, off);
      if (n === 0) throw new VmtierError('STREAM_CORRUPT', `vmtier_idle returned nothing at 0x${off.toString(16)}`);
      return n;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ESRCH') {
        throw new KernelError('vmtier_idle', ESRCH, `process ${this.pid} exited during the scan (ESRCH)`, { pid: this.pid });
      }
      if (code) throw new VmtierError('KERNEL_ERROR', `read of ${this.device} at 0x${off.toString(16)}: ${code}`, { pid: this.pid }, { cause: e });
      throw e;
    }
  }

  private setLimit(end: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(end));
    ioctlBuffer(this.fd!, IOC_SET_LIMIT, b, 'VMTIER_IDLE_IOC_SET_LIMIT');
  }

  private info(): KmodInfo {
    if (this.fd === null) throw new VmtierError('INVALID_INPUT', 'kmod: not open');
    const b = Buffer.alloc(INFO_SIZE);
    ioctlBuffer(this.fd, IOC_GET_INFO, b, 'VMTIER_IDLE_IOC_GET_INFO');
    return {
      abiVersion: b.readUInt32LE(0),
      mode: MODES[b.readUInt32LE(4)] ?? 'none',
      reads: Number(b.readBigUInt64LE(8)),
      cleared: Number(b.readBigUInt64LE(16)),
      tlbFlushes: Number(b.readBigUInt64LE(24)),
      walkNs: Number(b.readBigUInt64LE(32)),
    };
  }

  /** The target's mappings as sorted, merged ranges ([vsyscall] lies above user space: left out). */
  private mappedNow(pid: number): HvaRange[] {
    return normalizeRanges(readMaps(pid, this.opts.procRoot).filter((m) => m.end <= MAX_USER_ADDRESS).map((m) => ({ start: m.start, end: m.end })));
  }

  private usesPageTables(): boolean {
    return this.opts.target !== 'kvm' && this.mode() === 'process';
  }

  /** What was mapped at track() must still be: a munmap during the round is EFAULT, not zeros. */
  private checkStillMapped(): void {
    const now = this.mappedNow(this.pid);
    for (const r of this.mapped) {
      const covered = intersectRanges([r], now).reduce((n, x) => n + (x.end - x.start), 0);
      if (covered < r.end - r.start) {
        // EFAULT, as a system call would answer for an unmapped address.
        throw new KernelError('vmtier_idle', EFAULT, `range ${fmtRange(r)} of process ${this.pid} was unmapped during the scan (EFAULT)`,
          { pid: this.pid, start: r.start, end: r.end });
      }
    }
  }
}

