/**
 * /proc/<pid>/maps (and the bits of smaps/mountinfo needed) to cross-check HVA ranges the
 * monitor reported and to tell what backs them. The memory behind a guest node decides what
 * vmtier can do with it: move_pages works on anonymous, memfd, tmpfs/file and hugetlbfs
 * pages, but device-dax memory is not in the page allocator and cannot be migrated.
 */
import { VmtierError } from '../errors.js';
import type { HvaRange } from '../units.js';
import type { BackingKind, GuestNodeBacking } from './types.js';

export interface MapEntry {
  start: number;
  end: number;
  perms: string;
  /** File offset of `start`. */
  offset: number;
  dev: string;
  inode: number;
  /** "" for anonymous mappings; may end in " (deleted)". */
  path: string;
}

export function parseMaps(text: string): MapEntry[] {
  const out: MapEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$/.exec(line);
    if (!m) throw new VmtierError('HVA_MISMATCH', `unexpected /proc maps line: ${line}`);
    out.push({
      start: Number.parseInt(m[1]!, 16),
      end: Number.parseInt(m[2]!, 16),
      perms: m[3]!,
      offset: Number.parseInt(m[4]!, 16),
      dev: m[5]!,
      inode: Number(m[6]),
      path: m[7]!,
    });
  }
  return out;
}

/**
 * The mappings covering `r`. A guest node's RAM is one mmap, but the kernel may split that
 * VMA (an mbind or madvise on part of it), so a run of adjacent entries of the same object
 * with contiguous file offsets counts as one mapping. Anything else — a gap, a different
 * object, an address not mapped — is an HVA_MISMATCH: the monitor and the kernel disagree.
 */
export function coveringMappings(maps: readonly MapEntry[], r: HvaRange): MapEntry[] {
  const i = maps.findIndex((m) => m.start <= r.start && r.start < m.end);
  const hex = (n: number) => `0x${n.toString(16)}`;
  if (i < 0) throw new VmtierError('HVA_MISMATCH', `HVA ${hex(r.start)} is not mapped in the QEMU process`, { start: hex(r.start) });
  const run = [maps[i]!];
  let last = maps[i]!;
  while (last.end < r.end) {
    const next = maps[i + run.length];
    const sameObject = next !== undefined && next.start === last.end && next.dev === last.dev && next.inode === last.inode &&
      next.path === last.path && (last.inode === 0 && last.path === '' ? true : next.offset === last.offset + (last.end - last.start));
    if (!sameObject) {
      throw new VmtierError('HVA_MISMATCH', `HVA range ${hex(r.start)}-${hex(r.end)} is not inside one mapping (ends at ${hex(last.end)})`, {
        start: hex(r.start), end: hex(r.end),
      });
    }
    run.push(next);
    last = next;
  }
  return run;
}

/** Mount point and fs type of `path`, from /proc/<pid>/mountinfo (the process's own namespace). */
export function fsTypeOf(path: string, mountinfo: string): string | null {
  let best: { mount: string; fstype: string } | null = null;
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const parts = line.split(' ');
    const dash = parts.indexOf('-');
    if (parts.length < 5 || dash < 0) continue;
    const mount = parts[4]!.replace(/\\040/g, ' ');
    const fstype = parts[dash + 1] ?? '';
    const inside = mount === '/' || path === mount || path.startsWith(`${mount}/`);
    if (inside && (!best || mount.length >= best.mount.length)) best = { mount, fstype };
  }
  return best?.fstype ?? null;
}

/** KernelPageSize (bytes) of the smaps entry starting at `start`, or null when not found. */
export function kernelPageSizeAt(smaps: string, start: number): number | null {
  const head = `${start.toString(16).padStart(8, '0')}-`;
  const at = smaps.split('\n').findIndex((l) => l.startsWith(head));
  if (at < 0) return null;
  const lines = smaps.split('\n');
  for (let j = at + 1; j < lines.length && !/^[0-9a-f]+-[0-9a-f]+ /.test(lines[j]!); j++) {
    const m = /^KernelPageSize:\s+(\d+) kB/.exec(lines[j]!);
    if (m) return Number(m[1]) * 1024;
  }
  return null;
}

export interface BackingContext {
  mountinfo: () => string;
  smaps: () => string;
}

/** What backs mapping `m`, and whether move_pages can migrate it. */
export function classifyBacking(m: MapEntry, id: string, ctx: BackingContext): GuestNodeBacking {
  const deleted = m.path.endsWith(' (deleted)');
  const path = deleted ? m.path.slice(0, -' (deleted)'.length) : m.path;
  const result = (kind: BackingKind, p: string | null, migratable = true, reason?: string): GuestNodeBacking =>
    reason === undefined ? { kind, path: p, id, migratable } : { kind, path: p, id, migratable, reason };
  if (path.startsWith('/dev/dax')) {
    return result('devdax', path, false, 'device-dax memory is not managed by the page allocator; move_pages cannot migrate it');
  }
  if (path.startsWith('/memfd:')) {
    // A hugetlb memfd prints the same name as a plain one; only the page size tells them apart.
    const ps = kernelPageSizeAt(ctx.smaps(), m.start);
    return ps !== null && ps > 4096 ? result('hugetlbfs', null) : result('memfd', null);
  }
  // MAP_SHARED|MAP_ANONYMOUS reads "/dev/zero (deleted)", MAP_HUGETLB anonymous "/anon_hugepage (deleted)".
  if (path === '/anon_hugepage' && deleted) return result('hugetlbfs', null);
  if (path === '' || path.startsWith('[') || (path === '/dev/zero' && deleted)) return result('anonymous', null);
  const fstype = fsTypeOf(path, ctx.mountinfo());
  if (fstype === 'hugetlbfs') return result('hugetlbfs', path);
  return result('file', path);
}
