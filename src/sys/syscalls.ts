/**
 * The raw system calls vmtier needs, through koffi and libc's syscall(2) so that no
 * libnuma is required. Only this folder and src/libvirt make native calls.
 * x86_64 numbers; other architectures are not supported yet.
 */
import * as koffi from 'koffi';
import { KernelError, VmtierError } from '../errors.js';
import { injectedMovePagesFault } from './fault-injection.js';

const SYS = { move_pages: 279, pidfd_open: 434, process_madvise: 440, close: 3 } as const;
export const MPOL_MF_MOVE = 1 << 1;
/** A move_pages status entry the kernel did not write (no node id or -errno is this negative). */
export const MOVE_STATUS_UNSET = -0x7fffffff;
export const MPOL_MF_MOVE_ALL = 1 << 2;
export const MADV_COLD = 20;
export const MADV_PAGEOUT = 21;

let libc: koffi.LibraryHandle | null = null;
type SyscallFn = (...args: unknown[]) => number;
let rawSyscall: SyscallFn | null = null;

function sys(): SyscallFn {
  if (process.arch !== 'x64') throw new VmtierError('UNSUPPORTED', `system calls are only wired for x86_64, not ${process.arch}`);
  if (!rawSyscall) {
    libc = koffi.load('libc.so.6');
    rawSyscall = libc.func('long syscall(long nr, ...)') as unknown as SyscallFn;
  }
  return rawSyscall;
}

/** Pages per move_pages(2) call: the seed used 1024 x 4 KiB; bigger batches gain little and hold mmap_lock longer. */
export const MOVE_PAGES_BATCH = 1024;
const TWO_32 = 0x1_0000_0000;

/**
 * This thread's buffers for the system calls' arguments: 64-bit addresses (move_pages), iovecs
 * (process_madvise). Module state is per thread (every worker thread loads its own copy of this
 * module), and the calls are synchronous, so one set serves every call of the thread: grown once
 * to the largest batch asked, never allocated per call (issue 13: a query over every page of a VM
 * would otherwise leave 8 bytes of garbage per page, which glibc may keep resident).
 */
const scratch = { words: new BigUint64Array(0), iov: new BigUint64Array(0) };

/** The thread's address words, at least `n` of them. */
function wordsFor(n: number): BigUint64Array {
  if (scratch.words.length < n) scratch.words = new BigUint64Array(Math.max(n, MOVE_PAGES_BATCH));
  return scratch.words;
}

/** Bytes the syscall layer keeps for its arguments in this thread (batch-sized, whatever was asked). */
export function syscallScratchBytes(): number {
  return scratch.words.byteLength + scratch.iov.byteLength;
}

/** Writes addrs[from, from + n) as 64-bit words into `words` (two 32-bit halves: no BigInt per page). */
function putWords(words: BigUint64Array, addrs: ArrayLike<number>, from: number, n: number): void {
  const halves = new Uint32Array(words.buffer, words.byteOffset, 2 * n);
  for (let i = 0; i < n; i++) {
    const a = addrs[from + i]!;
    // x86_64 is little-endian: low word first.
    halves[2 * i] = a % TWO_32;
    halves[2 * i + 1] = Math.floor(a / TWO_32);
  }
}

/**
 * move_pages(2) over `addrs` (page-aligned virtual addresses of `pid`; 0 = self) to `nodes[i]`.
 * The kernel writes each page's status (node reached, or -errno; MOVE_STATUS_UNSET where it wrote
 * nothing) into `status` (at least addrs.length entries; the caller's, reused: nothing is
 * allocated per call), which is returned, viewed to addrs.length. A whole-call failure throws
 * KernelError. Asking where pages are is queryPageNodes, the one placement query.
 */
export function movePagesRaw(pid: number, addrs: ArrayLike<number> | BigUint64Array, nodes: Int32Array, flags: number, status: Int32Array = new Int32Array(addrs.length)): Int32Array {
  return movePagesCall(pid, addrs, nodes, flags, status);
}

/**
 * The placement query, the only one in vmtier: which node each page of `pid` is on, move_pages(2)
 * with nodes = NULL (it moves nothing). out[i] = the node of addrs[i], or -errno (-ENOENT: not
 * present, never touched or swapped out; -EFAULT: not mapped). `batch` pages per call; addresses
 * are written as two 32-bit halves into the thread's one address buffer, and the kernel writes
 * its answers straight into `out`: a query over millions of pages makes no BigInt per page and,
 * given `out`, allocates nothing. A whole-call failure (ESRCH: the process is gone) throws KernelError.
 */
export function queryPageNodes(pid: number, addrs: ArrayLike<number>, batch = MOVE_PAGES_BATCH, out = new Int32Array(addrs.length)): Int32Array {
  if (out.length < addrs.length) throw new VmtierError('INVALID_INPUT', `queryPageNodes: output holds ${out.length} of ${addrs.length} pages`);
  const total = addrs.length;
  if (total === 0) return out;
  const size = Math.max(1, Math.min(batch, total));
  const words = wordsFor(size);
  for (let off = 0; off < total; off += size) {
    const n = Math.min(size, total - off);
    putWords(words, addrs, off, n);
    movePagesCall(pid, words.subarray(0, n), null, 0, out.subarray(off, off + n));
  }
  return out;
}

/**
 * move_pages(2) itself: a move with `nodes`, a query with null (only through queryPageNodes).
 * Statuses go into `status` (the caller's), returned viewed to the call's length.
 */
function movePagesCall(pid: number, addrs: ArrayLike<number> | BigUint64Array, nodes: Int32Array | null, flags: number, statusBuf: Int32Array): Int32Array {
  const n = addrs.length;
  if (statusBuf.length < n) throw new VmtierError('INVALID_INPUT', `move_pages: status holds ${statusBuf.length} of ${n} pages`);
  // The kernel leaves status[] untouched for a batch it could not finish (it returns a count of
  // unmoved pages, or ENOMEM): the sentinel lets callers see which entries it never wrote.
  const status = (statusBuf.length === n ? statusBuf : statusBuf.subarray(0, n)).fill(MOVE_STATUS_UNSET);
  if (n === 0) return status;
  // A BigUint64Array is passed as is: callers scanning millions of pages avoid a BigInt per page.
  let pages: BigUint64Array;
  if (addrs instanceof BigUint64Array) pages = addrs;
  else {
    const words = wordsFor(n);
    putWords(words, addrs, 0, n);
    pages = words.length === n ? words : words.subarray(0, n);
  }
  if (nodes && nodes.length !== n) throw new VmtierError('INVALID_INPUT', 'move_pages: nodes and pages differ in length');
  if (nodes) {
    // Test-only fault injection (src/sys/fault-injection.ts); moves only, never queries.
    const fault = injectedMovePagesFault();
    if (fault?.arrived) {
      status.set(nodes);
      return status;
    }
    if (fault?.scope === 'call') throw new KernelError('move_pages', fault.errno, undefined, { pid, injected: true });
    if (fault) return status.fill(-fault.errno);
  }
  const rc = sys()(
    SYS.move_pages,
    'int', pid,
    'unsigned long', n,
    'void *', pages,
    'void *', nodes,
    'void *', status,
    'int', flags,
  ) as number;
  if (rc < 0) throw new KernelError('move_pages', koffi.errno(), undefined, { pid });
  return status;
}

export function pidfdOpen(pid: number): number {
  const fd = sys()(SYS.pidfd_open, 'int', pid, 'unsigned int', 0) as number;
  if (fd < 0) throw new KernelError('pidfd_open', koffi.errno(), undefined, { pid });
  return fd;
}

export function closeFd(fd: number): void {
  sys()(SYS.close, 'int', fd);
}

/**
 * process_madvise(2) on ranges [start, end) of the process behind `pidfd`.
 * Returns the number of bytes advised (the kernel may stop early).
 */
export function processMadvise(pidfd: number, ranges: ReadonlyArray<{ start: number; end: number }>, advice: number): number {
  if (ranges.length === 0) return 0;
  // struct iovec { void *iov_base; size_t iov_len; }, in the thread's reused buffer (two 32-bit halves per word).
  if (scratch.iov.length < 2 * ranges.length) scratch.iov = new BigUint64Array(Math.max(2 * ranges.length, 2 * 64));
  const iov = scratch.iov.length === 2 * ranges.length ? scratch.iov : scratch.iov.subarray(0, 2 * ranges.length);
  const halves = new Uint32Array(iov.buffer, iov.byteOffset, 4 * ranges.length);
  for (let i = 0; i < ranges.length; i++) {
    const r = ranges[i]!;
    const len = r.end - r.start;
    halves[4 * i] = r.start % TWO_32;
    halves[4 * i + 1] = Math.floor(r.start / TWO_32);
    halves[4 * i + 2] = len % TWO_32;
    halves[4 * i + 3] = Math.floor(len / TWO_32);
  }
  const rc = sys()(SYS.process_madvise, 'int', pidfd, 'void *', iov, 'unsigned long', ranges.length, 'int', advice, 'unsigned int', 0) as number;
  if (rc < 0) throw new KernelError('process_madvise', koffi.errno());
  return rc;
}
