/**
 * What trackers read about a target process from /proc: its mappings (which ranges to
 * track by default), whether it is still alive, and which pages are present (pagemap).
 * The proc root is a parameter so tests can point it at a fixture.
 */
import { readFileSync, openSync, readSync, closeSync } from 'node:fs';
import { EACCES, ESRCH } from '../errno.js';
import { KernelError, VmtierError } from '../errors.js';
import { PAGE_SIZE, type HvaRange } from '../units.js';
import { MappingRunsBuilder, type MappingRuns } from './mapping-runs.js';
import { pagesIn } from './runs.js';

export interface Mapping extends HvaRange {
  perms: string;
  offset: number;
  inode: number;
  path: string;
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

/** Maps an fs error on /proc/<pid>/... to ESRCH when the process is gone. */
function procError(e: unknown, pid: number, what: string): Error {
  const code = errnoOf(e);
  if (code === 'ENOENT' || code === 'ESRCH') return new KernelError(what, ESRCH, `process ${pid} is gone (ESRCH)`, { pid });
  if (code === 'EACCES' || code === 'EPERM') return new KernelError(what, EACCES, `no permission to read ${what} of ${pid}`, { pid });
  return new VmtierError('KERNEL_ERROR', `${what} of ${pid}: ${(e as Error).message}`, { pid }, { cause: e });
}

export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+([0-9a-f]+)\s+\S+\s+(\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    out.push({
      start: parseInt(m[1]!, 16),
      end: parseInt(m[2]!, 16),
      perms: m[3]!,
      offset: parseInt(m[4]!, 16),
      inode: Number(m[5]),
      path: m[6]!.trim(),
    });
  }
  return out;
}

export function readMaps(pid: number, procRoot = '/proc'): Mapping[] {
  try {
    return parseMaps(readFileSync(`${procRoot}/${pid}/maps`, 'utf8'));
  } catch (e) {
    throw procError(e, pid, '/proc/<pid>/maps');
  }
}

/** Shared mappings that are still anonymous memory (QEMU's memfd guest RAM, SysV shm, /dev/zero). */
function isSharedAnonymous(m: Mapping): boolean {
  return m.path === '' || m.path.startsWith('/memfd:') || m.path.startsWith('/SYSV') || m.path === '/dev/zero' ||
    m.path.startsWith('/dev/zero ') || m.path === '[anon_shmem]';
}

/**
 * The default tracking set of a process: writable private mappings and writable
 * anonymous shared ones (memfd guest RAM). Kernel-provided [vvar]/[vdso]/[vsyscall] and
 * file-backed shared mappings (page cache of files) are left out.
 */
export function defaultRanges(maps: readonly Mapping[]): HvaRange[] {
  const out: HvaRange[] = [];
  for (const m of maps) {
    if (m.perms[1] !== 'w') continue;
    if (m.path === '[vvar]' || m.path === '[vdso]' || m.path === '[vsyscall]' || m.path === '[vvar_vclock]') continue;
    const priv = m.perms[3] === 'p';
    if (!priv && !isSharedAnonymous(m)) continue;
    const last = out[out.length - 1];
    if (last && last.end === m.start) last.end = m.end;
    else out.push({ start: m.start, end: m.end });
  }
  return out;
}

/** true while /proc/<pid> exists and is not a zombie. */
export function processAlive(pid: number, procRoot = '/proc'): boolean {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Process start time (clock ticks since boot, field 22 of /proc/<pid>/stat): tells a pid from its reuse. */
export function processStartTime(pid: number, procRoot = '/proc'): number | null {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return null;
  }
}

export function processComm(pid: number, procRoot = '/proc'): string | null {
  try {
    return readFileSync(`${procRoot}/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

// Bits 63 (present) and 62 (swapped) of a pagemap entry, seen in its high 32-bit word.
const PM_PRESENT_HI = 0x80000000;
const PM_SWAPPED_HI = 0x40000000;
const PAGEMAP_CHUNK_PAGES = 64 * 1024;
/** The pagemap reads' buffer: this thread's (module state is per thread), grown once up to PAGEMAP_CHUNK_PAGES entries. */
let pagemapBuf = Buffer.alloc(0);

/** Bytes held by the pagemap read buffer of this thread. */
export function pagemapBufferBytes(): number {
  return pagemapBuf.byteLength;
}

/**
 * The pages of `r` present in RAM (pagemap bit 63), as mapping runs of unknown page size (pagemap
 * does not say); swapped pages count as not present, since no accessed bit can be read for them.
 * Reads in 512 KiB chunks into one buffer kept by this thread (every DAMON round reads every
 * tracked range: a fresh 512 KiB buffer per range per round was garbage glibc may keep), and
 * keeps nothing per page.
 */
export function presentRuns(pid: number, r: HvaRange, procRoot = '/proc'): MappingRuns {
  const n = pagesIn(r);
  const runs = new MappingRunsBuilder();
  let fd: number;
  try {
    fd = openSync(`${procRoot}/${pid}/pagemap`, 'r');
  } catch (e) {
    throw procError(e, pid, '/proc/<pid>/pagemap');
  }
  try {
    if (pagemapBuf.length < Math.min(n, PAGEMAP_CHUNK_PAGES) * 8) pagemapBuf = Buffer.allocUnsafeSlow(Math.min(n, PAGEMAP_CHUNK_PAGES) * 8);
    const buf = pagemapBuf;
    let runStart = -1;
    let done = 0;
    while (done < n) {
      const want = Math.min(n - done, PAGEMAP_CHUNK_PAGES);
      const pos = ((r.start / PAGE_SIZE) + done) * 8;
      let got: number;
      try {
        got = readSync(fd, buf, 0, want * 8, pos);
      } catch (e) {
        throw procError(e, pid, '/proc/<pid>/pagemap');
      }
      // A read past the process's address space returns 0 bytes: the rest is not present.
      if (got <= 0) break;
      const pages = Math.floor(got / 8);
      for (let i = 0; i < pages; i++) {
        const hi = buf.readUInt32LE(i * 8 + 4);
        const present = (hi & PM_PRESENT_HI) !== 0 && (hi & PM_SWAPPED_HI) === 0;
        if (present && runStart < 0) runStart = done + i;
        else if (!present && runStart >= 0) {
          runs.add(runStart, done + i - runStart, 0);
          runStart = -1;
        }
      }
      done += pages;
    }
    if (runStart >= 0) runs.add(runStart, done - runStart, 0);
  } finally {
    closeSync(fd);
  }
  return runs.finish();
}
