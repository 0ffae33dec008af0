/**
 * The DAMON sysfs interface (<sysfs>/kernel/mm/damon/admin), as files: kdamonds, their
 * contexts, targets, init regions and schemes. Knows the layout, not the tracking logic
 * (src/scan/damon.ts). Every file access goes through a SysfsIo, so tests can put a
 * model of the kernel behind it; the real one is plain node:fs.
 *
 * Layout used (Linux 6.12; the same since 6.3):
 *   kdamonds/nr_kdamonds
 *   kdamonds/<k>/{state,pid}
 *   kdamonds/<k>/contexts/nr_contexts
 *   kdamonds/<k>/contexts/0/{avail_operations,operations}
 *   kdamonds/<k>/contexts/0/monitoring_attrs/intervals/{sample_us,aggr_us,update_us}
 *   kdamonds/<k>/contexts/0/monitoring_attrs/nr_regions/{min,max}
 *   kdamonds/<k>/contexts/0/targets/nr_targets, targets/0/pid_target
 *   kdamonds/<k>/contexts/0/targets/0/regions/nr_regions, regions/<r>/{start,end}
 *   kdamonds/<k>/contexts/0/schemes/nr_schemes, schemes/0/action
 *   kdamonds/<k>/contexts/0/schemes/0/access_pattern/{sz,nr_accesses,age}/{min,max}
 *   kdamonds/<k>/contexts/0/schemes/0/tried_regions/<r>/{start,end,nr_accesses,age}
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { readFile, writeFile, readdir, access } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { EBUSY, EIO } from '../errno.js';
import { KernelError, VmtierError } from '../errors.js';
import type { HvaRange } from '../units.js';

export const DAMON_SYSFS_ROOT = '/sys/kernel/mm/damon/admin';

/** File access under the sysfs root. Errors are node fs errors (with `code`/`errno`). */
export interface SysfsIo {
  read(path: string): Promise<string>;
  write(path: string, value: string): Promise<void>;
  list(dir: string): Promise<string[]>;
  exists(path: string): Promise<boolean>;
  /**
   * Optional synchronous read for bulk reads of small files (thousands of region files per
   * snapshot): a sysfs read never blocks, and promise overhead dominated under TCG.
   */
  readSync?(path: string): string;
  /** Optional synchronous write, for the same reason (thousands of init-region files). */
  writeSync?(path: string, value: string): void;
}

/** The real files. */
export const nodeSysfsIo: SysfsIo = {
  read: (p) => readFile(p, 'utf8'),
  // sysfs takes one write(2) per value; writeFile issues exactly one for short strings.
  write: (p, v) => writeFile(p, v),
  list: (d) => readdir(d),
  exists: (p) => access(p).then(() => true, () => false),
  readSync: (p) => readFileSync(p, 'utf8'),
  writeSync: (p, v) => writeFileSync(p, v),
};

export type KdamondState = 'on' | 'off';

export interface DamonAttrs {
  sampleUs: number;
  aggrUs: number;
  updateUs: number;
  minRegions: number;
  maxRegions: number;
}

export interface DamonContextConfig {
  operations: string;
  pid: number;
  /** Initial (and, with fvaddr, fixed) monitoring regions, sorted, half-open. */
  regions: readonly HvaRange[];
  attrs: DamonAttrs;
}

export interface DamonRegion {
  start: number;
  end: number;
  /** Samples (of sample_us) in the last aggregation interval in which the region was accessed. */
  nrAccesses: number;
  /** Aggregation intervals the region has kept a similar access frequency (-1: not read). */
  age: number;
}

/** Widest values the kernel's kstrtoul/kstrtouint accept: the stat scheme matches every region. */
const UINT_MAX = '4294967295';
const ULONG_MAX = '18446744073709551615';

function errnoOf(e: unknown): number {
  const n = (e as NodeJS.ErrnoException)?.errno;
  return typeof n === 'number' ? Math.abs(n) : EIO;
}

/** How long a write waits for DAMON's command slot or lock before EBUSY is final. */
const BUSY_RETRY_MS = 30_000;

export class DamonSysfs {
  readonly root: string;
  readonly io: SysfsIo;
  /** Writes that found DAMON's command slot or lock taken and were retried (diagnostic). */
  busyRetries = 0;

  constructor(root: string = DAMON_SYSFS_ROOT, io: SysfsIo = nodeSysfsIo) {
    this.root = root.replace(/\/+$/, '');
    this.io = io;
  }

  kdamondDir(k: number): string {
    return `${this.root}/kdamonds/${k}`;
  }

  ctxDir(k: number): string {
    return `${this.kdamondDir(k)}/contexts/0`;
  }

  private async readStr(path: string): Promise<string> {
    try {
      return (await this.busyRetry(() => this.io.read(path))).trim();
    } catch (e) {
      throw new KernelError('read', errnoOf(e), `reading ${path}: ${(e as Error).message}`, { path });
    }
  }

  /**
   * Runs one file access, retrying EBUSY for a while: measured in the lab (6.12), DAMON's sysfs
   * takes one state command at a time for ALL kdamonds (a global request slot, held until the
   * kdamond answers, up to an aggregation interval), and several of its files only try its lock
   * (reading `state` too), so with a kdamond per VM one VM's snapshot request makes another's
   * accesses fail EBUSY.
   */
  private async busyRetry<T>(op: () => Promise<T>): Promise<T> {
    const deadline = performance.now() + BUSY_RETRY_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        return await op();
      } catch (e) {
        if (errnoOf(e) !== EBUSY || performance.now() >= deadline) throw e;
        this.busyRetries++;
        await sleep(10 + Math.random() * Math.min(200, 20 * (attempt + 1)));
      }
    }
  }

  private async readInt(path: string): Promise<number> {
    const s = await this.readStr(path);
    const n = Number(s);
    if (!Number.isSafeInteger(n)) throw new VmtierError('KERNEL_ERROR', `${path} holds "${s}", not an integer`, { path });
    return n;
  }

  /** One write (EBUSY retried, see busyRetry). */
  async write(path: string, value: string | number): Promise<void> {
    try {
      await this.busyRetry(() => this.io.write(path, String(value)));
    } catch (e) {
      throw new KernelError('write', errnoOf(e), `writing "${value}" to ${path}: ${(e as Error).message}`, { path });
    }
  }

  /** true when the DAMON sysfs interface exists under the root. */
  async present(): Promise<boolean> {
    return this.io.exists(`${this.root}/kdamonds/nr_kdamonds`);
  }

  async nrKdamonds(): Promise<number> {
    return this.readInt(`${this.root}/kdamonds/nr_kdamonds`);
  }

  /** Recreates the kdamond directories (the kernel drops all existing ones; EBUSY while any runs). */
  async setNrKdamonds(n: number): Promise<void> {
    await this.write(`${this.root}/kdamonds/nr_kdamonds`, n);
  }

  async state(k: number): Promise<KdamondState> {
    const s = await this.readStr(`${this.kdamondDir(k)}/state`);
    if (s !== 'on' && s !== 'off') throw new VmtierError('KERNEL_ERROR', `kdamond ${k} state is "${s}"`);
    return s;
  }

  /** The kdamond thread's pid, -1 when it is not running. */
  async pid(k: number): Promise<number> {
    return this.readInt(`${this.kdamondDir(k)}/pid`);
  }

  /** Writes a state command: on, off, commit, update_schemes_tried_regions, ... */
  async command(k: number, cmd: string): Promise<void> {
    await this.write(`${this.kdamondDir(k)}/state`, cmd);
  }

  async nrContexts(k: number): Promise<number> {
    return this.readInt(`${this.kdamondDir(k)}/contexts/nr_contexts`);
  }

  /** The operation sets this kernel offers (from context 0), or null when kdamond k has no context. */
  async availOperations(k: number): Promise<string[] | null> {
    const path = `${this.ctxDir(k)}/avail_operations`;
    if (!(await this.io.exists(path))) return null;
    return (await this.readStr(path)).split(/\s+/).filter(Boolean);
  }

  async operations(k: number): Promise<string | null> {
    const path = `${this.ctxDir(k)}/operations`;
    if (!(await this.io.exists(path))) return null;
    return this.readStr(path);
  }

  async targetPid(k: number): Promise<number | null> {
    const path = `${this.ctxDir(k)}/targets/0/pid_target`;
    if (!(await this.io.exists(path))) return null;
    return this.readInt(path);
  }

  /**
   * Fills kdamond k (which must be off) with one context: `cfg.operations` on one target
   * with the given init regions, and one `stat` scheme whose access pattern matches every
   * region, so `update_schemes_tried_regions` reports all regions with their nr_accesses.
   * The pattern's maxima are set explicitly: in 6.12 they default to 0 and match nothing.
   */
  async configure(k: number, cfg: DamonContextConfig): Promise<void> {
    const kd = this.kdamondDir(k);
    await this.write(`${kd}/contexts/nr_contexts`, 1);
    const ctx = this.ctxDir(k);
    await this.write(`${ctx}/operations`, cfg.operations);
    const a = cfg.attrs;
    const iv = `${ctx}/monitoring_attrs/intervals`;
    await this.write(`${iv}/sample_us`, a.sampleUs);
    await this.write(`${iv}/aggr_us`, a.aggrUs);
    await this.write(`${iv}/update_us`, a.updateUs);
    await this.write(`${ctx}/monitoring_attrs/nr_regions/min`, a.minRegions);
    await this.write(`${ctx}/monitoring_attrs/nr_regions/max`, a.maxRegions);
    await this.write(`${ctx}/targets/nr_targets`, 1);
    const t = `${ctx}/targets/0`;
    await this.write(`${t}/pid_target`, cfg.pid);
    await this.write(`${t}/regions/nr_regions`, cfg.regions.length);
    const writeSync = this.io.writeSync?.bind(this.io);
    for (let i = 0; i < cfg.regions.length; i++) {
      const r = cfg.regions[i]!;
      if (writeSync) {
        const path = `${t}/regions/${i}/`;
        try {
          writeSync(`${path}start`, String(r.start));
          writeSync(`${path}end`, String(r.end));
        } catch (e) {
          throw new KernelError('write', errnoOf(e), `writing region ${i} under ${path}: ${(e as Error).message}`, { path });
        }
      } else {
        await this.write(`${t}/regions/${i}/start`, r.start);
        await this.write(`${t}/regions/${i}/end`, r.end);
      }
    }
    await this.write(`${ctx}/schemes/nr_schemes`, 1);
    const s = `${ctx}/schemes/0`;
    await this.write(`${s}/action`, 'stat');
    const ap = `${s}/access_pattern`;
    await this.write(`${ap}/sz/min`, 0);
    await this.write(`${ap}/sz/max`, ULONG_MAX);
    await this.write(`${ap}/nr_accesses/min`, 0);
    await this.write(`${ap}/nr_accesses/max`, UINT_MAX);
    await this.write(`${ap}/age/min`, 0);
    await this.write(`${ap}/age/max`, UINT_MAX);
  }

  /**
   * Asks the running kdamond for a fresh snapshot of the regions its stat scheme tried
   * (the kernel answers after its next scheme application, one aggregation interval at
   * most) and reads them back, sorted by start.
   */
  async snapshotRegions(k: number): Promise<DamonRegion[]> {
    await this.command(k, 'update_schemes_tried_regions');
    return this.readTriedRegions(k);
  }

  async readTriedRegions(k: number): Promise<DamonRegion[]> {
    const dir = `${this.ctxDir(k)}/schemes/0/tried_regions`;
    let names: string[];
    try {
      names = (await this.io.list(dir)).filter((n) => /^\d+$/.test(n));
    } catch (e) {
      throw new KernelError('readdir', errnoOf(e), `listing ${dir}: ${(e as Error).message}`, { path: dir });
    }
    const out: DamonRegion[] = new Array(names.length);
    const readSync = this.io.readSync?.bind(this.io);
    if (readSync) {
      try {
        return this.readTriedRegionsSync(dir, names, readSync, out);
      } catch (e) {
        // Contended (another kdamond's command): read again file by file, retrying.
        if (!(e instanceof KernelError) || e.errno !== EBUSY) throw e;
      }
    }
    return this.readTriedRegionsAsync(dir, names, out);
  }

  private readTriedRegionsSync(dir: string, names: string[], readSync: (path: string) => string, out: DamonRegion[]): DamonRegion[] {
    for (let i = 0; i < names.length; i++) {
      const d = `${dir}/${names[i]}`;
      const num = (f: string): number => {
        let s: string;
        try {
          s = readSync(`${d}/${f}`).trim();
        } catch (e) {
          throw new KernelError('read', errnoOf(e), `reading ${d}/${f}: ${(e as Error).message}`, { path: `${d}/${f}` });
        }
        const n = Number(s);
        if (!Number.isSafeInteger(n)) throw new VmtierError('KERNEL_ERROR', `${d}/${f} holds "${s}", not an integer`);
        return n;
      };
      // age is not read: the tracker does not use it, and each file costs a syscall round trip.
      out[i] = { start: num('start'), end: num('end'), nrAccesses: num('nr_accesses'), age: -1 };
    }
    return out.sort((x, y) => x.start - y.start);
  }

  private async readTriedRegionsAsync(dir: string, names: string[], out: DamonRegion[]): Promise<DamonRegion[]> {
    // A few files at a time: sysfs reads are cheap, but thousands of them in parallel are not.
    const BATCH = 32;
    for (let b = 0; b < names.length; b += BATCH) {
      await Promise.all(names.slice(b, b + BATCH).map(async (name, j) => {
        const d = `${dir}/${name}`;
        const [start, end, nrAccesses, age] = await Promise.all([
          this.readInt(`${d}/start`), this.readInt(`${d}/end`), this.readInt(`${d}/nr_accesses`), this.readInt(`${d}/age`),
        ]);
        out[b + j] = { start, end, nrAccesses, age };
      }));
    }
    return out.sort((x, y) => x.start - y.start);
  }
}
