/**
 * The part of bench:scan that runs INSIDE the lab guest (bench/scan.ts boots the lab and runs
 * this): for one workload footprint, the CPU time of one kmod read-and-clear pass over it
 * (the read(2) calls on /dev/vmtier_idle, i.e. the module's walk) against the kernel's own
 * clear_refs walk (`echo 1 > /proc/PID/clear_refs`) over the same process, and the CPU time
 * of decoding that pass's stream in TypeScript (into per-page counts, as KmodTracker does).
 * The passes are interleaved (see interleaved()). Prints one JSON line.
 *
 *   node dist/bench/scan-guest.js <workload binary> <MiB> <on|off> <rounds>
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import * as koffi from 'koffi';
import { createInterface } from 'node:readline';
import { IOC_GET_INFO, IOC_SET_LIMIT, IOC_SET_TARGET } from '../src/scan/kmod.js';
import { decodeKmodStream, PageState } from '../src/scan/kmod-stream.js';
import { ioctlBuffer } from '../src/sys/ioctl.js';

const [workload, mibArg, thpArg, repArg] = process.argv.slice(2);
const mib = Number(mibArg);
const repeats = Number(repArg ?? 7);
const gib = mib / 1024;
const F_CLEAR = 1;
const F_NOFLUSH = 2;

/**
 * CPU time of this thread (the one that makes the read(2) and clear_refs calls), in ms, from
 * clock_gettime(CLOCK_THREAD_CPUTIME_ID). process.cpuUsage() would add node's GC and helper
 * threads, whose work lands at random in one measured pass or another; /proc/thread-self/schedstat
 * is only brought up to date at scheduler ticks.
 */
const CLOCK_THREAD_CPUTIME_ID = 3;
const clockGettime = koffi.load('libc.so.6').func('int clock_gettime(int clk, void *ts)') as (clk: number, ts: Buffer) => number;
const timespec = Buffer.alloc(16);
function cpuMs(): number {
  if (clockGettime(CLOCK_THREAD_CPUTIME_ID, timespec) !== 0) throw new Error('clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed');
  return Number(timespec.readBigInt64LE(0)) * 1e3 + Number(timespec.readBigInt64LE(8)) / 1e6;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const child = spawn(workload!, [String(mib), thpArg === 'on' ? 'idle-thp' : 'idle'], { stdio: ['ignore', 'pipe', 'pipe'] });
const touched: Array<() => void> = [];
createInterface({ input: child.stderr! }).on('line', (l) => { if (l === 'touched') touched.shift()?.(); });
const first = await new Promise<string>((resolve, reject) => {
  createInterface({ input: child.stdout! }).once('line', resolve);
  child.once('exit', (c) => reject(new Error(`kmod-target exited ${c}`)));
});
const layout = JSON.parse(first) as { pid: number; base: string; bytes: number };
const pid = layout.pid;
const start = parseInt(layout.base, 16);
const end = start + layout.bytes;
const pages = layout.bytes / 4096;

/** Has the target write every page again (all A bits set) before the next measured pass. */
function touchAll(): Promise<void> {
  return new Promise((resolve) => {
    touched.push(resolve);
    child.kill('SIGHUP');
  });
}

/** Reused, as KmodTracker reuses its read buffer (a fresh zeroed 64 KiB per read is not the tracker's cost). */
const readBuf = Buffer.alloc(64 * 1024);

/**
 * One kmod pass: the stream chunks (kept, so decoding can be timed apart) and the CPU time of
 * the read(2) calls alone (copying each chunk out of the reused buffer is not the module's cost).
 */
function readPass(fd: number): { chunks: { buf: Buffer; at: number }[]; cpu: number } {
  const chunks: { buf: Buffer; at: number }[] = [];
  let off = start;
  let cpu = 0;
  while (off < end) {
    const c0 = cpuMs();
    const n = readSync(fd, readBuf, 0, readBuf.length, off);
    cpu += cpuMs() - c0;
    const buf = Buffer.from(readBuf.subarray(0, n));
    chunks.push({ buf, at: off });
    // The end mark (the last 8 bytes) is where the next read starts.
    off = Number(buf.readBigUInt64BE(n - 8));
  }
  return { chunks, cpu };
}

function decodePass(chunks: { buf: Buffer; at: number }[], counts: Uint8Array, present: Uint8Array, shift: Uint8Array): number {
  const c0 = cpuMs();
  present.fill(0);
  for (const { buf, at } of chunks) {
    decodeKmodStream(buf, at, end, (s, e, state, sh) => {
      if (state === PageState.NotPresent) return;
      const i0 = (s - start) / 4096;
      const i1 = (e - start) / 4096;
      present.fill(1, i0, i1);
      shift.fill(sh, i0, i1);
      if (state === PageState.Accessed) for (let i = i0; i < i1; i++) counts[i]!++;
    });
  }
  return cpuMs() - c0;
}

/**
 * From GET_INFO so far: the module's own time in its walk, clear and flush (walk_ns, wall clock)
 * in ms, and the A bits it cleared (proves the A-bit state each pass met).
 */
const info = Buffer.alloc(64);
function moduleInfo(fd: number): { walkMs: number; cleared: number } {
  ioctlBuffer(fd, IOC_GET_INFO, info, 'GET_INFO');
  return { walkMs: Number(info.readBigUInt64LE(32)) / 1e6, cleared: Number(info.readBigUInt64LE(16)) };
}

function openKmod(flags: number): number {
  const fd = openSync('/dev/vmtier_idle', 'r');
  const t = Buffer.alloc(24);
  t.writeInt32LE(pid, 0);
  t.writeUInt32LE(flags | 8 /* F_PROCESS */, 4);
  ioctlBuffer(fd, IOC_SET_TARGET, t, 'SET_TARGET');
  const l = Buffer.alloc(8);
  l.writeBigUInt64LE(BigInt(end));
  ioctlBuffer(fd, IOC_SET_LIMIT, l, 'SET_LIMIT');
  return fd;
}

/** p-quantile by linear interpolation between order statistics. */
function quantile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const x = p * (s.length - 1);
  const lo = Math.floor(x);
  return s[lo]! + (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!) * (x - lo);
}

/**
 * Interleaved rounds: each round runs one kmod read+clear pass, one clear_refs pass and one kmod
 * pass without the TLB flush, in an order that rotates every round, each pass preceded by the
 * same A-bit state (all set: the target rewrites every page first; all clear: the previous pass
 * of either kind cleared them). A drift in host load then hits all three alike, and the per-round
 * ratio kmod / clear_refs compares passes run back to back. Both sides are timed on this thread's
 * CPU clock around the system calls only: read(2) on a kept-open /dev/vmtier_idle fd, write(2) of
 * "1" on a kept-open /proc/PID/clear_refs fd.
 */
async function interleaved(accessed: boolean): Promise<Record<string, number>> {
  const kmodFd = openKmod(F_CLEAR);
  const noflushFd = openKmod(F_CLEAR | F_NOFLUSH);
  const refsFd = openSync(`/proc/${pid}/clear_refs`, 'w');
  const one = Buffer.from('1');
  const counts = new Uint8Array(pages);
  const present = new Uint8Array(pages);
  const shift = new Uint8Array(pages);
  try {
    const clearRefs = (): number => {
      const c0 = cpuMs();
      writeSync(refsFd, one, 0, 1, 0);
      return cpuMs() - c0;
    };
    // Warm-up: JIT of both paths, and every A bit cleared.
    decodePass(readPass(kmodFd).chunks, counts, present, shift);
    readPass(noflushFd);
    clearRefs();
    const kmod: number[] = [];
    const noflush: number[] = [];
    const refs: number[] = [];
    const decodes: number[] = [];
    const walks: number[] = [];
    const cleared: number[] = [];
    const arms = [
      () => {
        const i0 = moduleInfo(kmodFd);
        const p = readPass(kmodFd);
        kmod.push(p.cpu);
        const i1 = moduleInfo(kmodFd);
        walks.push(i1.walkMs - i0.walkMs);
        cleared.push(i1.cleared - i0.cleared);
        decodes.push(decodePass(p.chunks, counts, present, shift));
      },
      () => { refs.push(clearRefs()); },
      () => { noflush.push(readPass(noflushFd).cpu); },
    ];
    for (let i = 0; i < repeats; i++) {
      for (let k = 0; k < arms.length; k++) {
        if (accessed) await touchAll();
        arms[(i + k) % arms.length]!();
      }
    }
    const ratios = kmod.map((k, i) => k / refs[i]!);
    return {
      hugeShare: shift.filter((s) => s === 21).length / pages,
      kmodReadCpuMsPerGiB: median(kmod) / gib,
      kmodNoFlushReadCpuMsPerGiB: median(noflush) / gib,
      decodeCpuMsPerGiB: median(decodes) / gib,
      kmodWalkMsPerGiB: median(walks) / gib,
      clearedPerPassMin: Math.min(...cleared),
      clearedPerPassMax: Math.max(...cleared),
      clearRefsCpuMsPerGiB: median(refs) / gib,
      ratioKmodToClearRefs: median(kmod) / median(refs),
      ratioPairedP25: quantile(ratios, 0.25),
      ratioPairedMedian: quantile(ratios, 0.5),
      ratioPairedP75: quantile(ratios, 0.75),
      kmodFasterShare: ratios.filter((r) => r < 1).length / ratios.length,
      decodeShare: median(decodes) / (median(decodes) + median(kmod)),
    };
  } finally {
    closeSync(kmodFd);
    closeSync(noflushFd);
    closeSync(refsFd);
  }
}

try {
  const out: Record<string, unknown> = { mib, thp: thpArg === 'on', repeats };
  for (const accessed of [true, false]) out[accessed ? 'accessed' : 'idle'] = await interleaved(accessed);
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  child.kill('SIGKILL');
}
