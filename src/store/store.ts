/**
 * vmtier's SQLite store (better-sqlite3, WAL): VMs seen, their guest NUMA layout, versioned
 * policies, hotness samples with rollups kept at ingest (1 min, 5 min, 1 h) and retention, and
 * the migration log. Synchronous by design: every statement is a few rows on a local file.
 *
 * Storage faults (disk full, read-only or corrupted file, I/O errors) never reach the tiering
 * engine: history writes are dropped and counted, reads fall back to what is still readable,
 * policy writes fail with STORE_UNAVAILABLE, and `health()` says what is wrong until a write
 * (or a periodic reopen) succeeds again.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3, { type Database, type Statement } from 'better-sqlite3';
import type { Logger } from 'pino';
import { VmtierError, isVmtierError } from '../errors.js';
import { parsePolicy, type TierPolicy } from '../policy/schema.js';
import type { GuestNode } from '../vm/types.js';
import { loadMigrations, migrate } from './migrations.js';

export interface VmRecord {
  uuid: string;
  name: string;
  /** ms since epoch */
  firstSeen: number;
  lastSeen: number;
}

export interface GuestNodeRecord {
  node: number;
  cpus: string | null;
  sizeBytes: number;
  backing: { kind: string; path: string | null; id: string; migratable: boolean };
  updatedAt: number;
}

export interface PolicyRecord {
  uuid: string;
  version: number;
  policy: TierPolicy;
  updatedAt: number;
}

export type TierClassName = 'top' | 'slow';

/** What one round measures per guest node × host node; history buckets carry the same figures. */
export interface HotnessFigures {
  hotBytes: number;
  warmBytes: number;
  coldBytes: number;
  scannedBytes: number;
  scanMs: number;
  movedBytes: number;
  failures: number;
}

/** One round's result for one guest node on one host node. */
export interface HotnessSample extends HotnessFigures {
  t: number;
  vmUuid: string;
  guestNode: number;
  hostNode: number;
  hostTier: TierClassName;
}

export interface MigrationLogEntry {
  t: number;
  vmUuid: string;
  guestNode: number;
  fromNode: number | null;
  toNode: number;
  direction: 'promote' | 'demote' | 'other';
  pages: number;
  moved: number;
  busy?: number;
  notPresent?: number;
  noMemory?: number;
  fault?: number;
  other?: number;
  durationMs?: number;
}

/** Gauges (hot/warm/cold/scanned bytes, scan ms) are sample-weighted means; moved bytes and failures are sums. */
export interface HistoryBucket extends HotnessFigures {
  start: number;
  samples: number;
}

export interface HistorySeries {
  guestNode: number;
  hostNode: number;
  hostTier: TierClassName;
  buckets: HistoryBucket[];
}

export interface RetentionPolicy {
  fullResolutionMs: number;
  coarseStepMs: number;
  maxAgeMs: number;
}

export interface RetentionResult {
  /** Raw rows folded into coarse rows. */
  coarsened: number;
  /** Coarse rows written. */
  coarseRows: number;
  /** Sample rows and migration log rows dropped for age. */
  droppedSamples: number;
  droppedMigrations: number;
  /** Rollup cells dropped (1-minute cells with the raw rows, 5-minute and 1-hour cells for age). */
  droppedRollups: number;
  /** Policy versions dropped for age (never a VM's newest: its current policy). */
  droppedPolicies: number;
  /** VMs not seen for maxAge dropped with their guest layout (their newest policy stays). */
  droppedVms: number;
  /** Series left without any row (their VM's history all dropped for age). */
  droppedSeries: number;
}

export const MAX_HISTORY_BUCKETS = 10_000;

/**
 * Told after history rows change, so answers cached from them can be dropped: `uuid` and the
 * earliest sample time written (a round of that VM), or `uuid` null when any VM's rows may have
 * changed (retention, a reopened file).
 */
export type HistoryWriteListener = (uuid: string | null, earliestT: number) => void;

/** Rollup cell sizes kept at ingest, largest first; a history step that is a multiple of one reads it. */
export const ROLLUP_RESOLUTIONS_MS = [3600_000, 300_000, 60_000] as const;

/** Which rows answer a history query: rollups where they cover whole buckets (default), or raw rows only. */
export type HistorySource = 'auto' | 'raw';

/** read-write: normal; read-only: the file opened read-only; unavailable: nothing readable, an empty stand-in answers. */
export type StoreMode = 'read-write' | 'read-only' | 'unavailable';

export interface StoreHealth {
  ok: boolean;
  mode: StoreMode;
  /** The storage fault, e.g. "SQLITE_FULL: database or disk is full" (null when ok). */
  error: string | null;
  /** When the current fault began (ms since epoch). */
  since: number | null;
  /** History writes (samples, migration log, sightings) dropped because of storage faults since start. */
  droppedWrites: number;
}

export interface StoreOptions {
  migrationsDir?: string;
  /** Where storage faults and recoveries are logged. */
  logger?: Logger;
  /** While degraded at open, how often to try opening the file read-write again (ms); default 30 s. */
  reopenMs?: number;
}

function storeError(what: string, e: unknown): VmtierError {
  if (isVmtierError(e)) return e;
  return new VmtierError('STORE_ERROR', `${what}: ${(e as Error).message}`, undefined, { cause: e });
}

/** SQLite's own code (SQLITE_FULL, SQLITE_READONLY, SQLITE_CORRUPT, SQLITE_IOERR_*, ...) of an error, if any. */
function sqliteCode(e: unknown): string | null {
  let x: unknown = e;
  for (let i = 0; i < 4 && x; i++) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('SQLITE_')) return code;
    x = (x as { cause?: unknown }).cause;
  }
  return null;
}

/** Faults of the file or the disk, as opposed to a bug in a statement. */
function isStorageFault(e: unknown): boolean {
  const code = sqliteCode(e);
  return code !== null && !/^SQLITE_(CONSTRAINT|MISUSE|RANGE|MISMATCH|TOOBIG)/.test(code);
}

function describeFault(e: unknown): string {
  const code = sqliteCode(e);
  const msg = (e as Error)?.message ?? String(e);
  return code && !msg.includes(code) ? `${code}: ${msg}` : msg;
}

/** A copy without null-valued fields (the policy input schema expresses "unset" by absence). */
export function withoutNulls<T>(v: T): T {
  if (Array.isArray(v)) return v.map(withoutNulls) as T;
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null).map(([k, x]) => [k, withoutNulls(x)])) as T;
  }
  return v;
}

/** The WAL file's size after a checkpoint has reset it (bytes): twice what the default autocheckpoint (1000 pages) lets it reach. */
export const WAL_SIZE_LIMIT_BYTES = 8 << 20;

/** Opens and migrates a database file read-write (strict: throws on any problem). */
function openReadWrite(path: string, migrations: ReturnType<typeof loadMigrations>): { db: Database; version: number } {
  let db: Database | undefined;
  try {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    db = new BetterSqlite3(path);
    // The first statement is where a non-SQLite file is detected ("file is not a database").
    db.pragma('busy_timeout = 5000');
    if (path !== ':memory:') {
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (String(mode).toLowerCase() !== 'wal') throw new VmtierError('STORE_ERROR', `cannot switch ${path} to WAL (journal_mode=${mode})`);
    }
    // NORMAL in WAL mode: a committed transaction survives a crash of the process (not of the
    // host's power), which is what a killed daemon needs.
    db.pragma('synchronous = NORMAL');
    // A checkpoint resets the WAL but never shrinks the file: without a limit it keeps the size of
    // the largest run of commits between two checkpoints for good (an hour's retention folding
    // hundreds of thousands of raw rows is one such run). SQLite truncates it to this size when it
    // resets it.
    db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    const version = migrate(db, migrations);
    return { db, version };
  } catch (e) {
    db?.close();
    throw e;
  }
}

interface SeriesRow {
  id: number;
  vm_uuid: string;
  guest_node: number;
  host_node: number;
  host_tier: TierClassName;
}

function latestSample(r: Record<string, number | string>): HotnessSample {
  return {
    t: r.last_t as number,
    vmUuid: r.vm_uuid as string,
    guestNode: r.guest_node as number,
    hostNode: r.host_node as number,
    hostTier: r.host_tier as TierClassName,
    hotBytes: r.last_hot as number,
    warmBytes: r.last_warm as number,
    coldBytes: r.last_cold as number,
    scannedBytes: r.last_scanned as number,
    scanMs: r.last_scan_ms as number,
    movedBytes: r.last_moved as number,
    failures: r.last_failures as number,
  };
}

/** Throws INVALID_INPUT unless [from, to) in buckets of stepMs is a history range the store answers. */
export function checkHistoryRange(from: number, to: number, stepMs: number): void {
  if (!(Number.isSafeInteger(from) && Number.isSafeInteger(to) && from >= 0 && to > from)) {
    throw new VmtierError('INVALID_INPUT', `history range must have 0 <= from < to (got from=${from}, to=${to})`);
  }
  if (!(Number.isSafeInteger(stepMs) && stepMs > 0)) throw new VmtierError('INVALID_INPUT', `history step must be a positive whole number of ms (got ${stepMs})`);
  const buckets = Math.floor((to - 1) / stepMs) - Math.floor(from / stepMs) + 1;
  if (buckets > MAX_HISTORY_BUCKETS) {
    throw new VmtierError('INVALID_INPUT', `history of ${buckets} buckets requested; at most ${MAX_HISTORY_BUCKETS} (use a larger step)`);
  }
}

export class Store {
  readonly path: string;
  private _db: Database;
  private _schemaVersion: number;
  private readonly migrationList: ReturnType<typeof loadMigrations>;
  private readonly log: Logger | undefined;
  private readonly stmts = new Map<string, Statement>();
  private readonly seriesIds = new Map<string, number>();
  /** Policies last read per VM: what the engine keeps using when the file becomes unreadable. */
  private readonly policyCache = new Map<string, PolicyRecord | null>();
  /** Oldest 1-minute rollup cell still kept (retention drops them with the raw rows). */
  private minuteFloor = 0;
  private mode: StoreMode = 'read-write';
  private fault: { error: string; since: number; lastLog: number; droppedAtLog: number } | null = null;
  private dropped = 0;
  private reopenTimer: NodeJS.Timeout | null = null;
  private readonly historyListeners: HistoryWriteListener[] = [];
  private vmWrites = 0;

  private constructor(db: Database, path: string, schemaVersion: number, migrations: ReturnType<typeof loadMigrations>, opts: StoreOptions) {
    this._db = db;
    this.path = path;
    this._schemaVersion = schemaVersion;
    this.migrationList = migrations;
    this.log = opts.logger;
  }

  get db(): Database {
    return this._db;
  }

  get schemaVersion(): number {
    return this._schemaVersion;
  }

  /** Opens (creating if missing) and migrates the database at `path` (":memory:" allowed); throws STORE_ERROR on any problem. */
  static open(path: string, opts: StoreOptions = {}): Store {
    const migrations = loadMigrations(opts.migrationsDir);
    try {
      const { db, version } = openReadWrite(path, migrations);
      return new Store(db, path, version, migrations, opts);
    } catch (e) {
      throw storeError(`cannot open database ${path}`, e);
    }
  }

  /**
   * For the service: a file that cannot be opened read-write (read-only file system, corrupted
   * file, disk full during migration) does not stop vmtier. It opens the file read-only if it
   * can, else an empty in-memory stand-in, reports the fault in `health()`, drops history writes,
   * and tries read-write again every `reopenMs`. Only a schema newer than this vmtier throws.
   */
  static openResilient(path: string, opts: StoreOptions = {}): Store {
    const migrations = loadMigrations(opts.migrationsDir);
    try {
      const { db, version } = openReadWrite(path, migrations);
      return new Store(db, path, version, migrations, opts);
    } catch (e) {
      if (isVmtierError(e, 'SCHEMA_TOO_NEW')) throw e;
      const cause = (e as { cause?: unknown }).cause ?? e;
      if (!isStorageFault(cause) && !isStorageFault(e) && !((e as NodeJS.ErrnoException).code ?? '').startsWith('E')) throw storeError(`cannot open database ${path}`, e);
      const error = `cannot open ${path} read-write: ${describeFault(cause)}`;
      let store: Store;
      const ro = Store.tryReadOnly(path, migrations);
      if (ro) {
        store = new Store(ro, path, migrations[migrations.length - 1]?.version ?? 0, migrations, opts);
        store.mode = 'read-only';
      } else {
        const mem = openReadWrite(':memory:', migrations);
        store = new Store(mem.db, path, mem.version, migrations, opts);
        store.mode = 'unavailable';
      }
      store.setFault(error);
      store.scheduleReopen(opts.reopenMs ?? 30_000);
      return store;
    }
  }

  /** The file read-only, if it is a database of exactly this vmtier's schema. */
  private static tryReadOnly(path: string, migrations: ReturnType<typeof loadMigrations>): Database | null {
    let db: Database | undefined;
    try {
      db = new BetterSqlite3(path, { readonly: true, fileMustExist: true });
      const v = (db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations').get() as { v: number }).v;
      if (v !== (migrations[migrations.length - 1]?.version ?? 0)) throw new Error(`schema version ${v}`);
      db.prepare('SELECT COUNT(*) FROM policies').get();
      return db;
    } catch {
      db?.close();
      return null;
    }
  }

  private scheduleReopen(ms: number): void {
    this.reopenTimer = setInterval(() => this.tryReopen(), ms);
    this.reopenTimer.unref();
  }

  /** Tries the file read-write again (after a read-only or unusable open); true when it now works. */
  tryReopen(): boolean {
    if (this.mode === 'read-write') return true;
    try {
      const { db, version } = openReadWrite(this.path, this.migrationList);
      this._db.close();
      this._db = db;
      this._schemaVersion = version;
      this.stmts.clear();
      this.seriesIds.clear();
      this.mode = 'read-write';
      this.historyChanged(null, 0);
      if (this.reopenTimer) clearInterval(this.reopenTimer);
      this.reopenTimer = null;
      this.clearFault();
      return true;
    } catch (e) {
      if (this.fault) this.fault.error = `cannot open ${this.path} read-write: ${describeFault((e as { cause?: unknown }).cause ?? e)}`;
      return false;
    }
  }

  close(): void {
    if (this.reopenTimer) clearInterval(this.reopenTimer);
    this.reopenTimer = null;
    this.stmts.clear();
    if (this._db.open) this._db.close();
  }

  health(): StoreHealth {
    return {
      ok: this.fault === null,
      mode: this.mode,
      error: this.fault?.error ?? null,
      since: this.fault?.since ?? null,
      droppedWrites: this.dropped,
    };
  }

  private setFault(error: string): void {
    const now = Date.now();
    if (!this.fault || this.fault.error !== error) {
      const first = !this.fault;
      this.fault = { error, since: this.fault?.since ?? now, lastLog: now, droppedAtLog: this.dropped };
      this.log?.error({ storeError: error, mode: this.mode, dropped: this.dropped }, first ? 'store degraded: history writes are dropped until the fault is gone' : 'store fault changed');
    } else if (now - this.fault.lastLog >= 60_000) {
      this.log?.warn({ storeError: error, mode: this.mode, droppedSinceLastLine: this.dropped - this.fault.droppedAtLog }, 'store still degraded');
      this.fault.lastLog = now;
      this.fault.droppedAtLog = this.dropped;
    }
  }

  private clearFault(): void {
    if (!this.fault) return;
    this.log?.info({ was: this.fault.error, degradedMs: Date.now() - this.fault.since, dropped: this.dropped }, 'store recovered');
    this.fault = null;
  }

  /** A cached prepared statement returning rows as arrays. */
  private rawStmt(sql: string): Statement {
    let s = this.stmts.get(`raw:${sql}`);
    if (!s) {
      s = this._db.prepare(sql).raw(true);
      this.stmts.set(`raw:${sql}`, s);
    }
    return s;
  }

  /** A cached prepared statement of the current connection. */
  private stmt(sql: string): Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this._db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /**
   * Runs a write whose loss only costs history (samples, migration log, sightings): a storage
   * fault drops it and is counted; anything else (a bug) still throws.
   */
  private historyWrite(fn: () => void): boolean {
    if (this.mode !== 'read-write') {
      this.dropped++;
      this.setFault(this.fault?.error ?? 'store not writable');
      return false;
    }
    try {
      fn();
      this.clearFault();
      return true;
    } catch (e) {
      if (!isStorageFault(e)) throw e;
      this.dropped++;
      this.setFault(describeFault(e));
      return false;
    }
  }

  /** Runs a read; a storage fault is reported in health() and raised as STORE_UNAVAILABLE (503). */
  private read<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (!isStorageFault(e)) throw e;
      this.setFault(describeFault(e));
      throw new VmtierError('STORE_UNAVAILABLE', `${what}: ${describeFault(e)}`, undefined, { cause: e });
    }
  }

  // ---- VMs -------------------------------------------------------------------------

  /** Records that a VM was seen at `t` (first sighting sets first_seen; a rename updates name). */
  recordVmSeen(uuid: string, name: string, t: number = Date.now()): VmRecord {
    this.vmWrites++;
    this.historyWrite(() => {
      this.stmt(
        `INSERT INTO vms (uuid, name, first_seen, last_seen) VALUES (?, ?, ?, ?)
         ON CONFLICT(uuid) DO UPDATE SET name = excluded.name, last_seen = MAX(vms.last_seen, excluded.last_seen)`,
      ).run(uuid, name, t, t);
    });
    let rec: VmRecord | null = null;
    try {
      rec = this.getVm(uuid);
    } catch {
      // unreadable: answer with what we were told
    }
    return rec ?? { uuid, name, firstSeen: t, lastSeen: t };
  }

  /** Counts recordVmSeen calls: what a reader of VM names compares to know they may have changed. */
  get vmRecordWrites(): number {
    return this.vmWrites;
  }

  getVm(uuid: string): VmRecord | null {
    const r = this.read('cannot read VMs', () => this.stmt('SELECT uuid, name, first_seen, last_seen FROM vms WHERE uuid = ?').get(uuid)) as
      | { uuid: string; name: string; first_seen: number; last_seen: number }
      | undefined;
    return r ? { uuid: r.uuid, name: r.name, firstSeen: r.first_seen, lastSeen: r.last_seen } : null;
  }

  listVms(): VmRecord[] {
    const rows = this.read('cannot read VMs', () => this.stmt('SELECT uuid, name, first_seen, last_seen FROM vms ORDER BY name, uuid').all()) as Array<{
      uuid: string;
      name: string;
      first_seen: number;
      last_seen: number;
    }>;
    return rows.map((r) => ({ uuid: r.uuid, name: r.name, firstSeen: r.first_seen, lastSeen: r.last_seen }));
  }

  // ---- guest nodes -----------------------------------------------------------------

  replaceGuestNodes(uuid: string, nodes: readonly GuestNode[], t: number = Date.now()): void {
    this.historyWrite(() => {
      const del = this.stmt('DELETE FROM guest_nodes WHERE vm_uuid = ?');
      const ins = this.stmt(
        `INSERT INTO guest_nodes (vm_uuid, node, cpus, size_bytes, backing_kind, backing_path, backing_id, migratable, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      this._db.transaction(() => {
        del.run(uuid);
        for (const n of nodes) ins.run(uuid, n.node, n.cpus, n.sizeBytes, n.backing.kind, n.backing.path, n.backing.id, n.backing.migratable ? 1 : 0, t);
      })();
    });
  }

  guestNodes(uuid: string): GuestNodeRecord[] {
    const rows = this.read('cannot read guest nodes', () => this.stmt('SELECT * FROM guest_nodes WHERE vm_uuid = ? ORDER BY node').all(uuid)) as Array<Record<string, unknown>>;
    return rows.map((r) => ({
      node: r.node as number,
      cpus: (r.cpus as string | null) ?? null,
      sizeBytes: r.size_bytes as number,
      backing: { kind: r.backing_kind as string, path: (r.backing_path as string | null) ?? null, id: r.backing_id as string, migratable: r.migratable === 1 },
      updatedAt: r.updated_at as number,
    }));
  }

  // ---- policies --------------------------------------------------------------------

  /**
   * Stores a new version of a VM's policy (already validated and normalized), in one
   * transaction: a crash leaves the old version current or the new one complete. Throws
   * STORE_UNAVAILABLE when the file cannot take it (the caller must know it was not kept).
   */
  putPolicy(uuid: string, policy: TierPolicy, t: number = Date.now()): PolicyRecord {
    if (this.mode !== 'read-write') throw new VmtierError('STORE_UNAVAILABLE', `policy not stored: ${this.fault?.error ?? 'store not writable'}`);
    try {
      const next = this.stmt('SELECT COALESCE(MAX(version), 0) + 1 AS v FROM policies WHERE vm_uuid = ?');
      const ins = this.stmt('INSERT INTO policies (vm_uuid, version, policy, updated_at) VALUES (?, ?, ?, ?)');
      const version = this._db.transaction(() => {
        const v = (next.get(uuid) as { v: number }).v;
        ins.run(uuid, v, JSON.stringify(policy), t);
        return v;
      }).immediate();
      const rec = { uuid, version, policy, updatedAt: t };
      this.policyCache.set(uuid, rec);
      this.clearFault();
      return rec;
    } catch (e) {
      if (!isStorageFault(e)) throw e;
      this.setFault(describeFault(e));
      throw new VmtierError('STORE_UNAVAILABLE', `policy not stored: ${describeFault(e)}`, undefined, { cause: e });
    }
  }

  /** The current policy of a VM, or null when none was ever set (the last one read while the file is unreadable). */
  currentPolicy(uuid: string): PolicyRecord | null {
    let r: { version: number; policy: string; updated_at: number } | undefined;
    try {
      r = this.read('cannot read policies', () => this.stmt('SELECT version, policy, updated_at FROM policies WHERE vm_uuid = ? ORDER BY version DESC LIMIT 1').get(uuid)) as typeof r;
    } catch (e) {
      if (isVmtierError(e, 'STORE_UNAVAILABLE') && this.policyCache.has(uuid)) return this.policyCache.get(uuid)!;
      throw e;
    }
    const rec = r ? this.policyRow(uuid, r) : null;
    this.policyCache.set(uuid, rec);
    return rec;
  }

  policyVersions(uuid: string): PolicyRecord[] {
    const rows = this.read('cannot read policies', () => this.stmt('SELECT version, policy, updated_at FROM policies WHERE vm_uuid = ? ORDER BY version').all(uuid)) as Array<{
      version: number;
      policy: string;
      updated_at: number;
    }>;
    return rows.map((r) => this.policyRow(uuid, r));
  }

  private policyRow(uuid: string, r: { version: number; policy: string; updated_at: number }): PolicyRecord {
    let policy: TierPolicy;
    try {
      // Stored normalized; null means "no limit" and is absent from the input schema.
      policy = parsePolicy(withoutNulls(JSON.parse(r.policy)));
    } catch (e) {
      throw new VmtierError('STORE_ERROR', `stored policy v${r.version} of ${uuid} is unreadable: ${(e as Error).message}`);
    }
    return { uuid, version: r.version, policy, updatedAt: r.updated_at };
  }

  // ---- hotness samples ---------------------------------------------------------------

  private seriesId(s: HotnessSample): number {
    const key = `${s.vmUuid}\0${s.guestNode}\0${s.hostNode}\0${s.hostTier}`;
    let id = this.seriesIds.get(key);
    if (id === undefined) {
      this.stmt('INSERT OR IGNORE INTO series (vm_uuid, guest_node, host_node, host_tier) VALUES (?, ?, ?, ?)').run(s.vmUuid, s.guestNode, s.hostNode, s.hostTier);
      id = (this.stmt('SELECT id FROM series WHERE vm_uuid = ? AND guest_node = ? AND host_node = ? AND host_tier = ?').get(s.vmUuid, s.guestNode, s.hostNode, s.hostTier) as { id: number }).id;
      this.seriesIds.set(key, id);
    }
    return id;
  }

  /**
   * Records one round's samples: raw rows, every rollup cell they fall in, and each series'
   * newest round, in one transaction. Returns false when a storage fault dropped them (counted
   * in health().droppedWrites); the engine goes on tiering either way.
   */
  insertSamples(samples: readonly HotnessSample[]): boolean {
    if (samples.length === 0) return true;
    return this.historyWrite(() => {
      const raw = this.stmt(
        `INSERT INTO samples (series_id, t, hot_bytes, warm_bytes, cold_bytes, scanned_bytes, scan_ms, moved_bytes, failures)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      const roll = this.stmt(
        `INSERT INTO rollups (resolution_ms, series_id, t, samples, hot_sum, warm_sum, cold_sum, scanned_sum, scan_ms_sum, moved_bytes, failures)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (resolution_ms, series_id, t) DO UPDATE SET samples = samples + excluded.samples,
           hot_sum = hot_sum + excluded.hot_sum, warm_sum = warm_sum + excluded.warm_sum, cold_sum = cold_sum + excluded.cold_sum,
           scanned_sum = scanned_sum + excluded.scanned_sum, scan_ms_sum = scan_ms_sum + excluded.scan_ms_sum,
           moved_bytes = moved_bytes + excluded.moved_bytes, failures = failures + excluded.failures`,
      );
      const last = this.stmt(
        `UPDATE series SET last_t = ?, last_hot = ?, last_warm = ?, last_cold = ?, last_scanned = ?, last_scan_ms = ?, last_moved = ?, last_failures = ?
         WHERE id = ? AND (last_t IS NULL OR last_t <= ?)`,
      );
      this._db.transaction(() => {
        // A batch of several rounds (a backfill) touches each rollup cell and each series' newest
        // row once; one round (the engine's case) is the same work as row by row.
        const cells = new Map<string, [number, number, number, number[]]>();
        const newest = new Map<number, HotnessSample>();
        for (const s of samples) {
          const id = this.seriesId(s);
          raw.run(id, s.t, s.hotBytes, s.warmBytes, s.coldBytes, s.scannedBytes, s.scanMs, s.movedBytes, s.failures);
          for (const res of ROLLUP_RESOLUTIONS_MS) {
            const cell = Math.floor(s.t / res) * res;
            const key = `${res}:${id}:${cell}`;
            const c = cells.get(key);
            if (!c) cells.set(key, [res, id, cell, [1, s.hotBytes, s.warmBytes, s.coldBytes, s.scannedBytes, s.scanMs, s.movedBytes, s.failures]]);
            else {
              const v = c[3];
              v[0]! += 1;
              v[1]! += s.hotBytes;
              v[2]! += s.warmBytes;
              v[3]! += s.coldBytes;
              v[4]! += s.scannedBytes;
              v[5]! += s.scanMs;
              v[6]! += s.movedBytes;
              v[7]! += s.failures;
            }
          }
          const n = newest.get(id);
          if (!n || n.t <= s.t) newest.set(id, s);
        }
        for (const [res, id, cell, v] of cells.values()) roll.run(res, id, cell, ...v);
        for (const [id, s] of newest) last.run(s.t, s.hotBytes, s.warmBytes, s.coldBytes, s.scannedBytes, s.scanMs, s.movedBytes, s.failures, id, s.t);
      })();
      const earliest = new Map<string, number>();
      for (const s of samples) earliest.set(s.vmUuid, Math.min(earliest.get(s.vmUuid) ?? s.t, s.t));
      for (const [uuid, t] of earliest) this.historyChanged(uuid, t);
    });
  }

  /** Registers a listener told after every write of history rows (see HistoryWriteListener). */
  onHistoryWrite(listener: HistoryWriteListener): void {
    this.historyListeners.push(listener);
  }

  private historyChanged(uuid: string | null, earliestT: number): void {
    for (const l of this.historyListeners) l(uuid, earliestT);
  }

  /**
   * History of one VM over [from, to) in buckets of `stepMs` aligned to multiples of the step
   * since the epoch (so a poller's answers line up from one request to the next; the first and
   * last bucket hold only the samples inside [from, to)). One series per guest node x host node;
   * empty buckets are omitted. Gauges are sample-weighted means, moved bytes and failures sums.
   *
   * Whole rollup cells answer wherever they fit in the buckets (the largest cell size that
   * divides the step); the ragged ends of the range come from smaller cells, then raw rows. The
   * answer equals the raw-row answer (`source: 'raw'`), test/unit/store-rollups.test.ts checks.
   */
  history(uuid: string, from: number, to: number, stepMs: number, source: HistorySource = 'auto'): HistorySeries[] {
    checkHistoryRange(from, to, stepMs);
    return this.read('cannot read history', () => {
      const series = this.stmt('SELECT id, vm_uuid, guest_node, host_node, host_tier FROM series WHERE vm_uuid = ? ORDER BY guest_node, host_node, host_tier').all(uuid) as SeriesRow[];
      if (series.length === 0) return [];
      const levels = source === 'raw' ? [] : ROLLUP_RESOLUTIONS_MS.filter((r) => stepMs % r === 0);
      // Rows come back as arrays [series_id, b, n, hot, warm, cold, scanned, scan_ms, moved, failures]:
      // a day at 5 minutes is ~1,200 rows, and building an object per row cost more than the query.
      const acc = new Map<number, Map<number, number[]>>();
      const add = (rows: number[][]) => {
        for (const r of rows) {
          let m = acc.get(r[0]!);
          if (!m) acc.set(r[0]!, (m = new Map()));
          const x = m.get(r[1]!);
          if (!x) m.set(r[1]!, r);
          else for (let i = 2; i < 10; i++) x[i]! += r[i]!;
        }
      };
      const collect = (lo: number, hi: number, level: number) => {
        if (lo >= hi) return;
        if (level >= levels.length) {
          add(this.rawStmt(
            `SELECT series_id, CAST(t / @step AS INTEGER) AS b, SUM(samples) AS n, SUM(hot_bytes * samples) AS hot, SUM(warm_bytes * samples) AS warm,
               SUM(cold_bytes * samples) AS cold, SUM(scanned_bytes * samples) AS scanned, SUM(scan_ms * samples) AS scan_ms,
               SUM(moved_bytes) AS moved, SUM(failures) AS failures
             FROM samples WHERE series_id IN (SELECT id FROM series WHERE vm_uuid = @uuid) AND t >= @lo AND t < @hi
             GROUP BY series_id, b`,
          ).all({ step: stepMs, uuid, lo, hi }) as number[][]);
          return;
        }
        const res = levels[level]!;
        // 1-minute cells are kept only as long as raw rows; below that floor, finer sources answer.
        const floor = res === 60_000 ? this.minuteFloor : 0;
        const a = Math.max(Math.ceil(lo / res) * res, Math.ceil(floor / res) * res);
        const b = Math.floor(hi / res) * res;
        if (a >= b) return collect(lo, hi, level + 1);
        collect(lo, a, level + 1);
        add(this.rawStmt(
          `SELECT series_id, CAST(t / @step AS INTEGER) AS b, SUM(samples) AS n, SUM(hot_sum) AS hot, SUM(warm_sum) AS warm, SUM(cold_sum) AS cold,
             SUM(scanned_sum) AS scanned, SUM(scan_ms_sum) AS scan_ms, SUM(moved_bytes) AS moved, SUM(failures) AS failures
           FROM rollups WHERE resolution_ms = @res AND series_id IN (SELECT id FROM series WHERE vm_uuid = @uuid) AND t >= @a AND t < @b
           GROUP BY series_id, b`,
        ).all({ step: stepMs, res, uuid, a, b }) as number[][]);
        collect(b, hi, level + 1);
      };
      collect(from, to, 0);
      const out: HistorySeries[] = [];
      for (const s of series) {
        const m = acc.get(s.id);
        if (!m) continue;
        const bs = [...m.values()];
        // Pieces arrive in time order except when a finer edge precedes coarser cells of the same bucket.
        bs.sort((x, y) => x[1]! - y[1]!);
        out.push({
          guestNode: s.guest_node,
          hostNode: s.host_node,
          hostTier: s.host_tier,
          buckets: bs.map((r) => {
            const n = r[2]!;
            return {
              start: r[1]! * stepMs,
              hotBytes: Math.round(r[3]! / n),
              warmBytes: Math.round(r[4]! / n),
              coldBytes: Math.round(r[5]! / n),
              scannedBytes: Math.round(r[6]! / n),
              scanMs: r[7]! / n,
              movedBytes: r[8]!,
              failures: r[9]!,
              samples: n,
            };
          }),
        });
      }
      return out;
    });
  }

  /** The newest sample time of a VM over all its series (null without any): rows of the VM all lie at or before it. */
  newestSampleT(uuid: string): number | null {
    const r = this.read('cannot read history', () => this.stmt('SELECT MAX(last_t) AS t FROM series WHERE vm_uuid = ?').get(uuid)) as { t: number | null };
    return r.t;
  }

  /** The distinct times of a VM's sample rows (raw or coarse) in [lo, hi), ascending. */
  sampleTimes(uuid: string, lo: number, hi: number): number[] {
    return this.read('cannot read history', () =>
      (this.rawStmt('SELECT DISTINCT t FROM samples WHERE series_id IN (SELECT id FROM series WHERE vm_uuid = ?) AND t >= ? AND t < ? ORDER BY t').all(uuid, lo, hi) as number[][]).map((r) => r[0]!),
    );
  }

  /** The newest round of each VM (its series last written at the VM's newest time), for /metrics. */
  latestSamples(): HotnessSample[] {
    const rows = this.read('cannot read latest samples', () =>
      this.stmt(
        `SELECT s.* FROM series s
         JOIN (SELECT vm_uuid, MAX(last_t) AS mt FROM series GROUP BY vm_uuid) m ON s.vm_uuid = m.vm_uuid AND s.last_t = m.mt
         ORDER BY s.vm_uuid, s.guest_node, s.host_node, s.host_tier`,
      ).all(),
    ) as Array<Record<string, number | string>>;
    return rows.map(latestSample);
  }

  /** latestSamples() of one VM. */
  latestSamplesOf(uuid: string): HotnessSample[] {
    const rows = this.read('cannot read latest samples', () =>
      this.stmt(
        `SELECT * FROM series WHERE vm_uuid = @uuid AND last_t = (SELECT MAX(last_t) FROM series WHERE vm_uuid = @uuid)
         ORDER BY guest_node, host_node, host_tier`,
      ).all({ uuid }),
    ) as Array<Record<string, number | string>>;
    return rows.map(latestSample);
  }

  /** Database file size in bytes (main file + WAL), for the store-size figures. */
  sizeBytes(): number {
    if (this.path === ':memory:') return 0;
    const page = this._db.pragma('page_size', { simple: true }) as number;
    const pages = this._db.pragma('page_count', { simple: true }) as number;
    return page * pages;
  }

  // ---- migration log -----------------------------------------------------------------

  logMigration(e: MigrationLogEntry): boolean {
    return this.historyWrite(() => {
      this.stmt(
        `INSERT INTO migration_log (t, vm_uuid, guest_node, from_node, to_node, direction, pages, moved, busy, not_present, no_memory, fault, other, duration_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(e.t, e.vmUuid, e.guestNode, e.fromNode, e.toNode, e.direction, e.pages, e.moved, e.busy ?? 0, e.notPresent ?? 0, e.noMemory ?? 0, e.fault ?? 0, e.other ?? 0, e.durationMs ?? 0);
    });
  }

  migrations(uuid: string, from: number, to: number): MigrationLogEntry[] {
    const rows = this.read('cannot read the migration log', () => this.stmt('SELECT * FROM migration_log WHERE vm_uuid = ? AND t >= ? AND t < ? ORDER BY t, id').all(uuid, from, to)) as Array<Record<string, unknown>>;
    return rows.map((r) => ({
      t: r.t as number,
      vmUuid: r.vm_uuid as string,
      guestNode: r.guest_node as number,
      fromNode: (r.from_node as number | null) ?? null,
      toNode: r.to_node as number,
      direction: r.direction as MigrationLogEntry['direction'],
      pages: r.pages as number,
      moved: r.moved as number,
      busy: r.busy as number,
      notPresent: r.not_present as number,
      noMemory: r.no_memory as number,
      fault: r.fault as number,
      other: r.other as number,
      durationMs: r.duration_ms as number,
    }));
  }

  // ---- retention ---------------------------------------------------------------------

  /**
   * Keeps raw samples and 1-minute rollups for `fullResolutionMs`, folds older raw samples into
   * `coarseStepMs` rows (sample-weighted means kept unrounded so later history means stay
   * exact, summed counters), and drops rows, 5-minute/1-hour rollups and superseded policy
   * versions older than `maxAgeMs` (each VM's newest policy version stays whatever its age: it is
   * the policy in force; a client that PUTs policies often would otherwise grow the table without
   * end, one row per PUT). Works series by series on the (series, t) index. One transaction: a crash leaves either the
   * old or the new rows, never both.
   */
  applyRetention(now: number, r: RetentionPolicy): RetentionResult {
    if (!(r.coarseStepMs > 0 && r.fullResolutionMs >= 0 && r.maxAgeMs >= r.fullResolutionMs)) {
      throw new VmtierError('CONFIG_ERROR', 'retention needs coarseStepMs > 0 and maxAgeMs >= fullResolutionMs');
    }
    const dropBefore = now - r.maxAgeMs;
    const rawBefore = now - r.fullResolutionMs;
    const step = Math.round(r.coarseStepMs);
    const none: RetentionResult = { coarsened: 0, coarseRows: 0, droppedSamples: 0, droppedMigrations: 0, droppedRollups: 0, droppedPolicies: 0, droppedVms: 0, droppedSeries: 0 };
    if (this.mode !== 'read-write') return none;
    const result = this._db.transaction((): RetentionResult => {
      const out: RetentionResult = { ...none };
      out.droppedMigrations = this.stmt('DELETE FROM migration_log WHERE t < ?').run(dropBefore).changes;
      out.droppedPolicies = this.stmt(
        `DELETE FROM policies WHERE updated_at < ? AND version < (SELECT MAX(p.version) FROM policies p WHERE p.vm_uuid = policies.vm_uuid)`,
      ).run(dropBefore).changes;
      const ids = (this.stmt('SELECT id FROM series').all() as Array<{ id: number }>).map((x) => x.id);
      for (const id of ids) {
        out.droppedSamples += this.stmt('DELETE FROM samples WHERE series_id = ? AND t < ?').run(id, dropBefore).changes;
        out.droppedRollups += this.stmt('DELETE FROM rollups WHERE resolution_ms = 60000 AND series_id = ? AND t < ?').run(id, Math.floor(rawBefore / 60_000) * 60_000).changes;
        out.droppedRollups += this.stmt('DELETE FROM rollups WHERE resolution_ms IN (300000, 3600000) AND series_id = ? AND t < ?').run(id, dropBefore).changes;
        out.coarseRows += this.stmt(
          `INSERT INTO samples (series_id, t, hot_bytes, warm_bytes, cold_bytes, scanned_bytes, scan_ms, moved_bytes, failures, samples, resolution_ms)
           SELECT series_id, CAST(t / @step AS INTEGER) * @step,
             SUM(hot_bytes * samples) * 1.0 / SUM(samples),
             SUM(warm_bytes * samples) * 1.0 / SUM(samples),
             SUM(cold_bytes * samples) * 1.0 / SUM(samples),
             SUM(scanned_bytes * samples) * 1.0 / SUM(samples),
             SUM(scan_ms * samples) / SUM(samples), SUM(moved_bytes), SUM(failures), SUM(samples), @step
           FROM samples WHERE series_id = @id AND t < @before AND resolution_ms = 0
           GROUP BY CAST(t / @step AS INTEGER)`,
        ).run({ step, before: rawBefore, id }).changes;
        out.coarsened += this.stmt('DELETE FROM samples WHERE series_id = ? AND t < ? AND resolution_ms = 0').run(id, rawBefore).changes;
      }
      // A host whose VMs come and go (CI, short-lived guests) would otherwise keep a row per VM
      // ever seen, its layout and its series for good.
      out.droppedVms = this.stmt('DELETE FROM vms WHERE last_seen < ?').run(dropBefore).changes;
      this.stmt('DELETE FROM guest_nodes WHERE updated_at < ? AND vm_uuid NOT IN (SELECT uuid FROM vms)').run(dropBefore);
      out.droppedSeries = this.stmt(
        `DELETE FROM series WHERE (last_t IS NULL OR last_t < @before)
           AND NOT EXISTS (SELECT 1 FROM samples WHERE series_id = series.id)
           AND NOT EXISTS (SELECT 1 FROM rollups WHERE resolution_ms IN (60000, 300000, 3600000) AND series_id = series.id)`,
      ).run({ before: dropBefore }).changes;
      return out;
    })();
    // Ids of dropped series must not be reused for new rows: look them up again.
    if (result.droppedSeries > 0) this.seriesIds.clear();
    this.minuteFloor = Math.max(this.minuteFloor, Math.floor(rawBefore / 60_000) * 60_000);
    this.historyChanged(null, 0);
    return result;
  }
}
