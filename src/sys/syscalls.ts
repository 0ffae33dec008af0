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
 * move_pages(2) over `addrs` (page-aligned virtual addresses of `pid`; 0 = self) to `nodes[i]`.
 * Returns the per-page status array (node reached, or -errno); a whole-call failure throws
 * KernelError. Asking where pages are is queryPageNodes, the one placement query.
 */
export function movePagesRaw(pid: number, addrs: ArrayLike<number> | BigUint64Array, nodes: Int32Array, flags: number): Int32Array {
  return movePagesCall(pid, addrs, nodes, flags);
}

/**
 * The placement query, the only one in vmtier: which node each page of `pid` is on, move_pages(2)
 * with nodes = NULL (it moves nothing). out[i] = the node of addrs[i], or -errno (-ENOENT: not
 * present, never touched or swapped out; -EFAULT: not mapped). `batch` pages per call; addresses
 * are written as two 32-bit halves into one reused buffer, so a query over millions of pages
 * makes no BigInt per page. A whole-call failure (ESRCH: the process is gone) throws KernelError.
 */
export function queryPageNodes(pid: number, addrs: ArrayLike<number>, batch = MOVE_PAGES_BATCH, out = new Int32Array(addrs.length)): Int32Array {
  if (out.length < addrs.length) throw new VmtierError('INVALID_INPUT', `queryPageNodes: output holds ${out.length} of ${addrs.length} pages`);
  const total = addrs.length;
  if (total === 0) return out;
  const size = Math.max(1, Math.min(batch, total));
  const buf = new BigUint64Array(size);
  const halves = new Uint32Array(buf.buffer);
  for (let off = 0; off < total; off += size) {
    const n = Math.min(size, total - off);
    for (let i = 0; i < n; i++) {
      const a = addrs[off + i]!;
      // x86_64 is little-endian: low word first.
      halves[2 * i] = a % TWO_32;
      halves[2 * i + 1] = Math.floor(a / TWO_32);
    }
    out.set(movePagesCall(pid, n === size ? buf : buf.subarray(0, n), null, 0), off);
  }
  return out;
}

/** move_pages(2) itself: a move with `nodes`, a query with null (only through queryPageNodes). */
function movePagesCall(pid: number, addrs: ArrayLike<number> | BigUint64Array, nodes: Int32Array | null, flags: number): Int32Array {
  const n = addrs.length;
  // The kernel leaves status[] untouched for a batch it could not finish (it returns a count of
  // unmoved pages, or ENOMEM): the sentinel lets callers see which entries it never wrote.
  const status = new Int32Array(n).fill(MOVE_STATUS_UNSET);
  if (n === 0) return status;
  // A BigUint64Array is passed as is: callers scanning millions of pages avoid a BigInt per page.
  let pages: BigUint64Array;
  if (addrs instanceof BigUint64Array) pages = addrs;
  else {
    pages = new BigUint64Array(n);
    for (let i = 0; i < n; i++) pages[i] = BigInt((addrs as ArrayLike<number>)[i]!);
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
  // struct iovec { void *iov_base; size_t iov_len; }
  const iov = new BigUint64Array(ranges.length * 2);
  ranges.forEach((r, i) => {
    iov[2 * i] = BigInt(r.start);
    iov[2 * i + 1] = BigInt(r.end - r.start);
  });
  const rc = sys()(SYS.process_madvise, 'int', pidfd, 'void *', iov, 'unsigned long', ranges.length, 'int', advice, 'unsigned int', 0) as number;
  if (rc < 0) throw new KernelError('process_madvise', koffi.errno());
  return rc;
}
