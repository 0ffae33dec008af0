/**
 * vmtier's SQLite store (better-sqlite3, WAL): VMs seen, their guest NUMA layout, versioned
 * policies, hotness samples with downsampled history and retention, and the migration log.
 * Synchronous by design: every statement is a few rows on a local file.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3, { type Database } from 'better-sqlite3';
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
}

export const MAX_HISTORY_BUCKETS = 10_000;

export interface StoreOptions {
  migrationsDir?: string;
}

function storeError(what: string, e: unknown): VmtierError {
  if (isVmtierError(e)) return e;
  return new VmtierError('STORE_ERROR', `${what}: ${(e as Error).message}`, undefined, { cause: e });
}

/** A copy without null-valued fields (the policy input schema expresses "unset" by absence). */
export function withoutNulls<T>(v: T): T {
  if (Array.isArray(v)) return v.map(withoutNulls) as T;
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null).map(([k, x]) => [k, withoutNulls(x)])) as T;
  }
  return v;
}

export class Store {
  readonly db: Database;
  readonly path: string;
  readonly schemaVersion: number;

  private constructor(db: Database, path: string, schemaVersion: number) {
    this.db = db;
    this.path = path;
    this.schemaVersion = schemaVersion;
  }

  /** Opens (creating if missing) and migrates the database at `path` (":memory:" allowed). */
  static open(path: string, opts: StoreOptions = {}): Store {
    const migrations = loadMigrations(opts.migrationsDir);
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
      db.pragma('synchronous = NORMAL');
      const version = migrate(db, migrations);
      return new Store(db, path, version);
    } catch (e) {
      db?.close();
      throw storeError(`cannot open database ${path}`, e);
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // ---- VMs -------------------------------------------------------------------------

  /** Records that a VM was seen at `t` (first sighting sets first_seen; a rename updates name). */
  recordVmSeen(uuid: string, name: string, t: number = Date.now()): VmRecord {
    this.db
      .prepare(
        `INSERT INTO vms (uuid, name, first_seen, last_seen) VALUES (?, ?, ?, ?)
         ON CONFLICT(uuid) DO UPDATE SET name = excluded.name, last_seen = MAX(vms.last_seen, excluded.last_seen)`,
      )
      .run(uuid, name, t, t);
    return this.getVm(uuid)!;
  }

  getVm(uuid: string): VmRecord | null {
    const r = this.db.prepare('SELECT uuid, name, first_seen, last_seen FROM vms WHERE uuid = ?').get(uuid) as
      | { uuid: string; name: string; first_seen: number; last_seen: number }
      | undefined;
    return r ? { uuid: r.uuid, name: r.name, firstSeen: r.first_seen, lastSeen: r.last_seen } : null;
  }

  listVms(): VmRecord[] {
    const rows = this.db.prepare('SELECT uuid, name, first_seen, last_seen FROM vms ORDER BY name, uuid').all() as Array<{
      uuid: string;
      name: string;
      first_seen: number;
      last_seen: number;
    }>;
    return rows.map((r) => ({ uuid: r.uuid, name: r.name, firstSeen: r.first_seen, lastSeen: r.last_seen }));
  }

  // ---- guest nodes -----------------------------------------------------------------

  replaceGuestNodes(uuid: string, nodes: readonly GuestNode[], t: number = Date.now()): void {
    const del = this.db.prepare('DELETE FROM guest_nodes WHERE vm_uuid = ?');
    const ins = this.db.prepare(
      `INSERT INTO guest_nodes (vm_uuid, node, cpus, size_bytes, backing_kind, backing_path, backing_id, migratable, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.db.transaction(() => {
      del.run(uuid);
      for (const n of nodes) ins.run(uuid, n.node, n.cpus, n.sizeBytes, n.backing.kind, n.backing.path, n.backing.id, n.backing.migratable ? 1 : 0, t);
    })();
  }

  guestNodes(uuid: string): GuestNodeRecord[] {
    const rows = this.db.prepare('SELECT * FROM guest_nodes WHERE vm_uuid = ? ORDER BY node').all(uuid) as Array<Record<string, unknown>>;
    return rows.map((r) => ({
      node: r.node as number,
      cpus: (r.cpus as string | null) ?? null,
      sizeBytes: r.size_bytes as number,
      backing: { kind: r.backing_kind as string, path: (r.backing_path as string | null) ?? null, id: r.backing_id as string, migratable: r.migratable === 1 },
      updatedAt: r.updated_at as number,
    }));
  }

  // ---- policies --------------------------------------------------------------------

  /** Stores a new version of a VM's policy (already validated and normalized). */
  putPolicy(uuid: string, policy: TierPolicy, t: number = Date.now()): PolicyRecord {
    const next = this.db.prepare('SELECT COALESCE(MAX(version), 0) + 1 AS v FROM policies WHERE vm_uuid = ?');
    const ins = this.db.prepare('INSERT INTO policies (vm_uuid, version, policy, updated_at) VALUES (?, ?, ?, ?)');
    const version = this.db.transaction(() => {
      const v = (next.get(uuid) as { v: number }).v;
      ins.run(uuid, v, JSON.stringify(policy), t);
      return v;
    }).immediate();
    return { uuid, version, policy, updatedAt: t };
  }

  /** The current policy of a VM, or null when none was ever set. */
  currentPolicy(uuid: string): PolicyRecord | null {
    const r = this.db.prepare('SELECT version, policy, updated_at FROM policies WHERE vm_uuid = ? ORDER BY version DESC LIMIT 1').get(uuid) as
      | { version: number; policy: string; updated_at: number }
      | undefined;
    return r ? this.policyRow(uuid, r) : null;
  }

  policyVersions(uuid: string): PolicyRecord[] {
    const rows = this.db.prepare('SELECT version, policy, updated_at FROM policies WHERE vm_uuid = ? ORDER BY version').all(uuid) as Array<{
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

  insertSamples(samples: readonly HotnessSample[]): void {
    const ins = this.db.prepare(
      `INSERT INTO hotness_samples (t, vm_uuid, guest_node, host_node, host_tier, hot_bytes, warm_bytes, cold_bytes,
         scanned_bytes, scan_ms, moved_bytes, failures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    try {
      this.db.transaction(() => {
        for (const s of samples) {
          ins.run(s.t, s.vmUuid, s.guestNode, s.hostNode, s.hostTier, s.hotBytes, s.warmBytes, s.coldBytes, s.scannedBytes, s.scanMs, s.movedBytes, s.failures);
        }
      })();
    } catch (e) {
      throw storeError('cannot record samples', e);
    }
  }

  /**
   * History of one VM over [from, to) in buckets of `stepMs`, one series per guest node x
   * host node. Empty buckets are omitted.
   */
  history(uuid: string, from: number, to: number, stepMs: number): HistorySeries[] {
    if (!(Number.isInteger(from) && Number.isInteger(to) && to > from)) {
      throw new VmtierError('INVALID_INPUT', `history range must have from < to (got from=${from}, to=${to})`);
    }
    if (!(Number.isInteger(stepMs) && stepMs > 0)) throw new VmtierError('INVALID_INPUT', `history step must be a positive whole number of ms (got ${stepMs})`);
    const buckets = Math.ceil((to - from) / stepMs);
    if (buckets > MAX_HISTORY_BUCKETS) {
      throw new VmtierError('INVALID_INPUT', `history of ${buckets} buckets requested; at most ${MAX_HISTORY_BUCKETS} (use a larger step)`);
    }
    const rows = this.db
      .prepare(
        `SELECT guest_node, host_node, host_tier, CAST((t - @from) / @step AS INTEGER) AS b,
           SUM(hot_bytes * samples) * 1.0 / SUM(samples) AS hot,
           SUM(warm_bytes * samples) * 1.0 / SUM(samples) AS warm,
           SUM(cold_bytes * samples) * 1.0 / SUM(samples) AS cold,
           SUM(scanned_bytes * samples) * 1.0 / SUM(samples) AS scanned,
           SUM(scan_ms * samples) / SUM(samples) AS scan_ms,
           SUM(moved_bytes) AS moved, SUM(failures) AS failures, SUM(samples) AS n
         FROM hotness_samples
         WHERE vm_uuid = @uuid AND t >= @from AND t < @to
         GROUP BY guest_node, host_node, host_tier, b
         ORDER BY guest_node, host_node, host_tier, b`,
      )
      .all({ uuid, from, to, step: stepMs }) as Array<Record<string, number | string>>;
    const out: HistorySeries[] = [];
    let cur: HistorySeries | undefined;
    for (const r of rows) {
      if (!cur || cur.guestNode !== r.guest_node || cur.hostNode !== r.host_node || cur.hostTier !== r.host_tier) {
        cur = { guestNode: r.guest_node as number, hostNode: r.host_node as number, hostTier: r.host_tier as TierClassName, buckets: [] };
        out.push(cur);
      }
      cur.buckets.push({
        start: from + (r.b as number) * stepMs,
        hotBytes: Math.round(r.hot as number),
        warmBytes: Math.round(r.warm as number),
        coldBytes: Math.round(r.cold as number),
        scannedBytes: Math.round(r.scanned as number),
        scanMs: r.scan_ms as number,
        movedBytes: r.moved as number,
        failures: r.failures as number,
        samples: r.n as number,
      });
    }
    return out;
  }

  /** The newest row of each VM's most recent round, for /metrics. */
  latestSamples(): HotnessSample[] {
    const rows = this.db
      .prepare(
        `SELECT s.* FROM hotness_samples s
         JOIN (SELECT vm_uuid, MAX(t) AS mt FROM hotness_samples GROUP BY vm_uuid) m ON s.vm_uuid = m.vm_uuid AND s.t = m.mt
         ORDER BY s.vm_uuid, s.guest_node, s.host_node`,
      )
      .all() as Array<Record<string, number | string>>;
    return rows.map((r) => ({
      t: r.t as number,
      vmUuid: r.vm_uuid as string,
      guestNode: r.guest_node as number,
      hostNode: r.host_node as number,
      hostTier: r.host_tier as TierClassName,
      hotBytes: r.hot_bytes as number,
      warmBytes: r.warm_bytes as number,
      coldBytes: r.cold_bytes as number,
      scannedBytes: r.scanned_bytes as number,
      scanMs: r.scan_ms as number,
      movedBytes: r.moved_bytes as number,
      failures: r.failures as number,
    }));
  }

  /** Moved bytes and failures per VM over the retained history (monotonic until retention drops rows). */
  totalsByVm(): Array<{ vmUuid: string; movedBytes: number; failures: number }> {
    return (this.db.prepare('SELECT vm_uuid, SUM(moved_bytes) AS moved, SUM(failures) AS failures FROM hotness_samples GROUP BY vm_uuid').all() as Array<{
      vm_uuid: string;
      moved: number;
      failures: number;
    }>).map((r) => ({ vmUuid: r.vm_uuid, movedBytes: r.moved, failures: r.failures }));
  }

  // ---- migration log -----------------------------------------------------------------

  logMigration(e: MigrationLogEntry): void {
    this.db
      .prepare(
        `INSERT INTO migration_log (t, vm_uuid, guest_node, from_node, to_node, direction, pages, moved, busy, not_present, no_memory, fault, other, duration_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(e.t, e.vmUuid, e.guestNode, e.fromNode, e.toNode, e.direction, e.pages, e.moved, e.busy ?? 0, e.notPresent ?? 0, e.noMemory ?? 0, e.fault ?? 0, e.other ?? 0, e.durationMs ?? 0);
  }

  migrations(uuid: string, from: number, to: number): MigrationLogEntry[] {
    const rows = this.db.prepare('SELECT * FROM migration_log WHERE vm_uuid = ? AND t >= ? AND t < ? ORDER BY t, id').all(uuid, from, to) as Array<Record<string, unknown>>;
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
   * Keeps raw samples for `fullResolutionMs`, folds older raw samples into `coarseStepMs`
   * buckets (sample-weighted means kept unrounded so later history means stay exact,
   * summed counters), and drops everything older than
   * `maxAgeMs`. One transaction: a crash leaves either the old or the new rows, never both.
   */
  applyRetention(now: number, r: RetentionPolicy): RetentionResult {
    if (!(r.coarseStepMs > 0 && r.fullResolutionMs >= 0 && r.maxAgeMs >= r.fullResolutionMs)) {
      throw new VmtierError('CONFIG_ERROR', 'retention needs coarseStepMs > 0 and maxAgeMs >= fullResolutionMs');
    }
    const dropBefore = now - r.maxAgeMs;
    const rawBefore = now - r.fullResolutionMs;
    const step = Math.round(r.coarseStepMs);
    return this.db.transaction((): RetentionResult => {
      const droppedSamples = this.db.prepare('DELETE FROM hotness_samples WHERE t < ?').run(dropBefore).changes;
      const droppedMigrations = this.db.prepare('DELETE FROM migration_log WHERE t < ?').run(dropBefore).changes;
      const coarseRows = this.db
        .prepare(
          `INSERT INTO hotness_samples (t, vm_uuid, guest_node, host_node, host_tier, hot_bytes, warm_bytes, cold_bytes,
             scanned_bytes, scan_ms, moved_bytes, failures, samples, resolution_ms)
           SELECT CAST(t / @step AS INTEGER) * @step, vm_uuid, guest_node, host_node, host_tier,
             SUM(hot_bytes * samples) * 1.0 / SUM(samples),
             SUM(warm_bytes * samples) * 1.0 / SUM(samples),
             SUM(cold_bytes * samples) * 1.0 / SUM(samples),
             SUM(scanned_bytes * samples) * 1.0 / SUM(samples),
             SUM(scan_ms * samples) / SUM(samples), SUM(moved_bytes), SUM(failures), SUM(samples), @step
           FROM hotness_samples WHERE resolution_ms = 0 AND t < @before
           GROUP BY vm_uuid, guest_node, host_node, host_tier, CAST(t / @step AS INTEGER)`,
        )
        .run({ step, before: rawBefore }).changes;
      const coarsened = this.db.prepare('DELETE FROM hotness_samples WHERE resolution_ms = 0 AND t < ?').run(rawBefore).changes;
      return { coarsened, coarseRows, droppedSamples, droppedMigrations };
    })();
  }
}
