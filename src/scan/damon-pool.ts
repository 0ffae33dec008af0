/**
 * The kdamonds vmtier owns on one DAMON sysfs root, shared by every DamonTracker of the process:
 * one kdamond per tracked VM.
 *
 * Why a pool: writing `nr_kdamonds` recreates every kdamond directory and fails (EBUSY) while any
 * kdamond runs, so kdamonds cannot be added one by one next to running ones. The pool writes
 * `nr_kdamonds` once, while none runs, with room for `slots` VMs; each tracker then claims a free
 * slot and turns only its own kdamond on and off. The directories go again when the last tracker
 * of the process closes.
 *
 * Ownership and crash recovery, as for a single kdamond before: the pool file
 * (`damon-kdamonds.json`: the sysfs root, nr_kdamonds, owner pid + start time) marks the
 * directories as vmtier's, and one state file per kdamond (`damon-kdamond-<k>.json`, O_EXCL) names
 * the process and target that run it. A pool or state file whose owner is dead marks a crash: each
 * recorded kdamond that still matches its record is turned off, then the pool is adopted. A live
 * owner that is another process means TRACKER_BUSY. Anything vmtier did not create (a running
 * kdamond without a record, kdamond threads outside sysfs, directories without a pool file) is
 * never touched: TRACKER_BUSY as well.
 *
 * Every step that reads or changes ownership runs under the pool's lock, so trackers of one
 * process starting at once never see each other's half-started kdamond as foreign.
 */
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmtierError } from '../errors.js';
import type { DamonSysfs } from './damon-sysfs.js';
import { processAlive, processComm, processStartTime } from './procfs.js';

/** What a state file records about one kdamond a tracker created. */
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

interface PoolRecord {
  version: 1;
  sysfsRoot: string;
  nrKdamonds: number;
  ownerPid: number;
  ownerStart: number | null;
  createdAt: string;
}

export const DAMON_POOL_FILE = 'damon-kdamonds.json';
/** The single state file of vmtier versions with one kdamond per host; recovered like the others. */
export const LEGACY_DAMON_STATE_FILE = 'damon-kdamond.json';
const STATE_FILE_RE = /^damon-kdamond-(\d+)\.json$/;
export const DEFAULT_KDAMOND_SLOTS = 32;

export function damonStateFile(k: number): string {
  return `damon-kdamond-${k}.json`;
}

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

function readJson<T>(path: string): T | null | 'torn' {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    return 'torn';
  }
}

/** Writes a file only if it does not exist yet (two claimants: one wins). false when it existed. */
function createExclusive(path: string, body: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, body);
  } finally {
    closeSync(fd);
  }
  return true;
}

export interface DamonPoolOptions {
  procRoot: string;
  runDir: string;
  /** kdamond directories created at once (the most VMs tracked at the same time). */
  slots: number;
}

const pools = new Map<string, DamonKdamondPool>();

export class DamonKdamondPool {
  readonly sysfs: DamonSysfs;
  readonly runDir: string;
  readonly slots: number;
  private readonly procRoot: string;
  /** Slots this process holds, by kdamond index. */
  private readonly owned = new Map<number, DamonOwnerRecord>();
  /** The pool file names this process. */
  private adopted = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(sysfs: DamonSysfs, opts: DamonPoolOptions) {
    if (!Number.isInteger(opts.slots) || opts.slots < 1) throw new VmtierError('INVALID_INPUT', `kdamond slots must be >= 1, not ${opts.slots}`);
    this.sysfs = sysfs;
    this.procRoot = opts.procRoot;
    this.runDir = opts.runDir;
    this.slots = opts.slots;
  }

  /** The process-wide pool of a sysfs root and run directory (every DamonTracker of the process shares it). */
  static shared(sysfs: DamonSysfs, opts: DamonPoolOptions): DamonKdamondPool {
    const key = `${sysfs.root}\0${opts.runDir}`;
    let p = pools.get(key);
    if (!p) pools.set(key, (p = new DamonKdamondPool(sysfs, opts)));
    return p;
  }

  get poolPath(): string {
    return join(this.runDir, DAMON_POOL_FILE);
  }

  statePath(k: number): string {
    return join(this.runDir, damonStateFile(k));
  }

  /** Indices of the kdamonds this process runs through the pool. */
  get ownedKdamonds(): number[] {
    return [...this.owned.keys()].sort((a, b) => a - b);
  }

  /** Runs fn alone among the pool's ownership steps (setup, teardown), in call order. */
  locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private ownerAlive(r: { ownerPid: number; ownerStart: number | null }): boolean {
    if (r.ownerPid <= 0 || !processAlive(r.ownerPid, this.procRoot)) return false;
    return r.ownerStart === null || processStartTime(r.ownerPid, this.procRoot) === r.ownerStart;
  }

  private me(): { ownerPid: number; ownerStart: number | null } {
    return { ownerPid: process.pid, ownerStart: processStartTime(process.pid, this.procRoot) };
  }

  async waitThreadGone(pid: number): Promise<void> {
    if (pid <= 0) return;
    for (let i = 0; i < 100 && processAlive(pid, this.procRoot) && processComm(pid, this.procRoot)?.startsWith('kdamond'); i++) {
      await sleep(20);
    }
  }

  /** Turns off kdamond r.kdamond if it still is the recorded one (thread pid, or target before the pid was recorded). */
  private async stopRecorded(r: DamonOwnerRecord): Promise<{ stopped: boolean; reason: string }> {
    if (r.sysfsRoot !== this.sysfs.root || r.kdamond < 0) return { stopped: false, reason: 'record is for another sysfs root or unreadable' };
    const n = await this.sysfs.nrKdamonds();
    if (r.kdamond >= n) return { stopped: false, reason: 'kdamond directory already gone' };
    const k = r.kdamond;
    if ((await this.sysfs.state(k)) !== 'on') return { stopped: false, reason: 'kdamond already off' };
    const pid = await this.sysfs.pid(k);
    const target = await this.sysfs.targetPid(k);
    const ours = r.kdamondPid > 0 ? pid === r.kdamondPid : target === r.targetPid;
    if (!ours) return { stopped: false, reason: `kdamond ${k} now runs as pid ${pid}, not the recorded one` };
    await this.sysfs.command(k, 'off');
    await this.waitThreadGone(pid);
    return { stopped: true, reason: 'stale kdamond turned off' };
  }

  /**
   * Crash recovery before this process first uses the pool: state files of dead owners have their
   * kdamonds turned off and are removed; a live owner that is another process means TRACKER_BUSY.
   */
  private async recoverStale(): Promise<void> {
    let names: string[];
    try {
      names = readdirSync(this.runDir);
    } catch {
      return;
    }
    const pool = readJson<PoolRecord>(this.poolPath);
    if (pool && pool !== 'torn' && pool.ownerPid !== process.pid && this.ownerAlive(pool)) {
      throw new VmtierError('TRACKER_BUSY', `another vmtier process (pid ${pool.ownerPid}) owns the DAMON kdamonds under ${this.sysfs.root}`, { ownerPid: pool.ownerPid });
    }
    for (const name of names) {
      if (name !== LEGACY_DAMON_STATE_FILE && !STATE_FILE_RE.test(name)) continue;
      const path = join(this.runDir, name);
      const r = readJson<DamonOwnerRecord>(path);
      if (r === null) continue;
      // A torn write from a crash tells nothing: nothing is touched, the file goes.
      if (r !== 'torn' && r.ownerPid === process.pid && this.owned.has(r.kdamond)) continue;
      if (r !== 'torn' && r.ownerPid > 0 && this.ownerAlive(r)) {
        throw new VmtierError('TRACKER_BUSY', `another vmtier DAMON tracker (pid ${r.ownerPid}) owns kdamond ${r.kdamond}`, { ownerPid: r.ownerPid, kdamond: r.kdamond });
      }
      if (r !== 'torn' && r.version === 1 && Number.isInteger(r.kdamond)) await this.stopRecorded(r);
      try {
        unlinkSync(path);
      } catch {
        // removed concurrently
      }
      // The one-kdamond layout had no pool file: its single directory is dropped once off.
      if (name === LEGACY_DAMON_STATE_FILE && r !== 'torn' && r.sysfsRoot === this.sysfs.root && r.kdamond === 0 && !pool) {
        if ((await this.sysfs.nrKdamonds()) === 1 && (await this.sysfs.state(0)) === 'off') await this.sysfs.setNrKdamonds(0);
      }
    }
  }

  /**
   * Read-only survey: TRACKER_BUSY when a kdamond runs that is not this process's, kdamond threads
   * run outside sysfs, or kdamond directories exist that no pool file claims; TRACKER_UNAVAILABLE
   * without vaddr. Returns the operation sets the kernel offers (null when no directory exists yet).
   */
  async survey(): Promise<{ operations: string[] | null }> {
    if (!(await this.sysfs.present())) {
      throw new VmtierError('TRACKER_UNAVAILABLE', `DAMON sysfs interface not found under ${this.sysfs.root}`, { sysfsRoot: this.sysfs.root });
    }
    const n = await this.sysfs.nrKdamonds();
    let operations: string[] | null = null;
    const running: { kdamond: number; pid: number }[] = [];
    for (let k = 0; k < n; k++) {
      operations ??= await this.sysfs.availOperations(k);
      if (this.owned.has(k)) continue;
      if ((await this.sysfs.state(k)) === 'on') running.push({ kdamond: k, pid: await this.sysfs.pid(k) });
    }
    const vaddr = operations === null ? null : operations.includes('vaddr');
    if (running.length > 0) {
      throw new VmtierError('TRACKER_BUSY',
        `a kdamond vmtier did not create is running (kdamond ${running.map((r) => `${r.kdamond} pid ${r.pid}`).join(', ')}); vmtier never disturbs it`,
        { running, vaddr, operations });
    }
    const ours = new Set([...this.owned.values()].map((r) => r.kdamondPid));
    const threads = kdamondThreads(this.procRoot).filter((p) => !ours.has(p));
    if (threads.length > 0) {
      throw new VmtierError('TRACKER_BUSY', `kdamond threads not created through vmtier are running (pid ${threads.join(', ')})`,
        { threads, vaddr, operations });
    }
    if (vaddr === false) {
      throw new VmtierError('TRACKER_UNAVAILABLE', `this kernel's DAMON offers operations "${operations!.join(' ')}", not vaddr`, { operations });
    }
    if (n > 0) {
      const pool = readJson<PoolRecord>(this.poolPath);
      const claimed = pool && pool !== 'torn' && pool.sysfsRoot === this.sysfs.root && pool.nrKdamonds === n;
      if (!claimed) {
        throw new VmtierError('TRACKER_BUSY',
          `${n} kdamond director${n === 1 ? 'y' : 'ies'} configured by someone else exist; creating one would erase them (nr_kdamonds rewrites all)`,
          { nrKdamonds: n });
      }
    }
    return { operations };
  }

  /** Makes the pool file name this process, creating the kdamond directories when none exist. */
  private async adopt(): Promise<void> {
    if (this.adopted) return;
    mkdirSync(this.runDir, { recursive: true });
    const n = await this.sysfs.nrKdamonds();
    const rec: PoolRecord = { version: 1, sysfsRoot: this.sysfs.root, nrKdamonds: n > 0 ? n : this.slots, ...this.me(), createdAt: new Date().toISOString() };
    if (n === 0) {
      try {
        unlinkSync(this.poolPath); // a dead owner's record of directories that are gone
      } catch {
        // none
      }
      if (!createExclusive(this.poolPath, JSON.stringify(rec) + '\n')) {
        throw new VmtierError('TRACKER_BUSY', `${this.poolPath} was claimed by another vmtier process meanwhile`);
      }
      try {
        await this.sysfs.setNrKdamonds(this.slots);
      } catch (e) {
        this.unlinkPool();
        throw e;
      }
    } else {
      // The directories of a dead owner's pool (survey checked the record matches them).
      writeFileSync(this.poolPath, JSON.stringify(rec) + '\n');
    }
    this.adopted = true;
  }

  private unlinkPool(): void {
    try {
      unlinkSync(this.poolPath);
    } catch {
      // already gone
    }
  }

  /**
   * Under the lock: recovery, survey, pool adoption and a free slot for one tracker, whose state
   * file is claimed (O_EXCL). TRACKER_BUSY when every slot is taken, saying so.
   */
  async acquire(targetPid: number): Promise<{ record: DamonOwnerRecord; operations: string[] | null }> {
    if (!this.adopted) await this.recoverStale();
    const { operations } = await this.survey();
    await this.adopt();
    const n = await this.sysfs.nrKdamonds();
    for (let k = 0; k < n; k++) {
      if (this.owned.has(k)) continue;
      const rec: DamonOwnerRecord = { version: 1, sysfsRoot: this.sysfs.root, kdamond: k, kdamondPid: -1, targetPid, ...this.me(), createdAt: new Date().toISOString() };
      if (!createExclusive(this.statePath(k), JSON.stringify(rec) + '\n')) continue;
      this.owned.set(k, rec);
      return { record: rec, operations: operations ?? (await this.sysfs.availOperations(k)) };
    }
    await this.dropIfUnused();
    throw new VmtierError('TRACKER_BUSY',
      `all ${n} kdamonds vmtier created under ${this.sysfs.root} track other VMs (${this.owned.size} in this process); raise the kdamond slots`,
      { slots: n, inUse: this.owned.size });
  }

  /** Rewrites a held slot's state file (thread pid once running, new target). */
  update(rec: DamonOwnerRecord): void {
    if (this.owned.get(rec.kdamond) !== rec) return;
    writeFileSync(this.statePath(rec.kdamond), JSON.stringify(rec) + '\n');
  }

  /** Under the lock: turns the slot's kdamond off (if still the recorded one), frees it; the last one out drops the directories. */
  async release(rec: DamonOwnerRecord): Promise<void> {
    if (this.owned.get(rec.kdamond) !== rec) return;
    try {
      await this.stopOwn(rec);
    } finally {
      this.owned.delete(rec.kdamond);
      try {
        unlinkSync(this.statePath(rec.kdamond));
      } catch {
        // already gone
      }
      await this.dropIfUnused();
    }
  }

  /** Turns a held slot's kdamond off when it runs as recorded (the record's pid is reset). */
  async stopOwn(rec: DamonOwnerRecord): Promise<void> {
    const k = rec.kdamond;
    if ((await this.sysfs.nrKdamonds()) > k && (await this.sysfs.state(k)) === 'on') {
      const pid = await this.sysfs.pid(k);
      if (rec.kdamondPid < 0 || pid === rec.kdamondPid) {
        await this.sysfs.command(k, 'off');
        await this.waitThreadGone(pid);
      }
    }
    rec.kdamondPid = -1;
  }

  private async dropIfUnused(): Promise<void> {
    if (this.owned.size > 0 || !this.adopted) return;
    const n = await this.sysfs.nrKdamonds();
    for (let k = 0; k < n; k++) if ((await this.sysfs.state(k)) === 'on') return; // something else runs there: keep
    if (n > 0) await this.sysfs.setNrKdamonds(0);
    this.unlinkPool();
    this.adopted = false;
  }
}
