// The store on real SQLite files in temporary directories.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Store, WAL_SIZE_LIMIT_BYTES, type HotnessSample } from '../../src/store/store.js';
import { MIGRATIONS_DIR } from '../../src/store/migrations.js';
import { DEFAULT_POLICY, parsePolicy } from '../../src/policy/schema.js';
import { DEFAULT_RETENTION } from '../../src/config.js';
import { readdirSync } from 'node:fs';

// The schema's migrations as the files say (read independently of the store's loader).
const MIGRATION_FILES = readdirSync(MIGRATIONS_DIR).filter((f) => /^\d{4}_.+\.sql$/.test(f)).sort();
const LATEST = MIGRATION_FILES.length;

const UUID = '6f1f6a7e-9a53-4c1e-9d2b-0c3a4b5c6d7e';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'vmtier-store-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

function sample(t: number, over: Partial<HotnessSample> = {}): HotnessSample {
  return {
    t, vmUuid: UUID, guestNode: 0, hostNode: 0, hostTier: 'top', hotBytes: 0, warmBytes: 0, coldBytes: 0,
    scannedBytes: 0, scanMs: 0, movedBytes: 0, failures: 0, ...over,
  };
}

test('open creates a WAL database with the schema recorded; reopening applies nothing twice', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'sub', 'vmtier.db');
  const s = Store.open(path);
  assert.equal(s.schemaVersion, LATEST);
  assert.equal(String(s.db.pragma('journal_mode', { simple: true })), 'wal');
  s.recordVmSeen(UUID, 'vm-a', 1000);
  assert.ok(existsSync(`${path}-wal`));
  s.close();
  const again = Store.open(path);
  const rows = again.db.prepare('SELECT version, name FROM schema_migrations').all();
  assert.deepEqual(rows, MIGRATION_FILES.map((f) => ({ version: Number(f.slice(0, 4)), name: f.slice(5, -4) })));
  assert.deepEqual(rows.slice(0, 2), [{ version: 1, name: 'initial' }, { version: 2, name: 'series_rollups' }]);
  assert.equal(again.getVm(UUID)?.name, 'vm-a');
  again.close();
});

test('a failing migration rolls back completely and leaves the previous version', (t) => {
  const dir = tempDir(t);
  const mdir = join(dir, 'migrations');
  mkdirSync(mdir);
  copyFileSync(join(MIGRATIONS_DIR, '0001_initial.sql'), join(mdir, '0001_initial.sql'));
  writeFileSync(join(mdir, '0002_broken.sql'), 'CREATE TABLE half_done (x INTEGER);\nALTER TABLE no_such_table ADD COLUMN y INTEGER;\n');
  const path = join(dir, 'v.db');
  assert.throws(() => Store.open(path, { migrationsDir: mdir }), (e: Error & { code?: string }) => e.code === 'STORE_ERROR' && /0002_broken/.test(e.message));
  const raw = new BetterSqlite3(path);
  assert.deepEqual(raw.prepare('SELECT version FROM schema_migrations').all(), [{ version: 1 }]);
  assert.equal(raw.prepare("SELECT name FROM sqlite_master WHERE name = 'half_done'").get(), undefined);
  raw.close();
  writeFileSync(join(mdir, '0002_broken.sql'), 'CREATE TABLE half_done (x INTEGER);\n');
  const s = Store.open(path, { migrationsDir: mdir });
  assert.equal(s.schemaVersion, 2, 'the two migrations of this test directory');
  s.close();
});

test('a database written by a newer schema is refused with SCHEMA_TOO_NEW and left untouched', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'newer.db');
  const s = Store.open(path);
  s.recordVmSeen(UUID, 'keep-me', 5);
  s.db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)').run(LATEST + 1, 'from_the_future');
  s.close();
  assert.throws(() => Store.open(path), (e: Error & { code?: string; details?: Record<string, unknown> }) =>
    e.code === 'SCHEMA_TOO_NEW' && e.details?.dbVersion === LATEST + 1 && e.details?.knownVersion === LATEST);
  const raw = new BetterSqlite3(path, { readonly: true });
  assert.equal((raw.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number }).v, LATEST + 1);
  assert.equal((raw.prepare('SELECT name FROM vms').get() as { name: string }).name, 'keep-me');
  raw.close();
});

test('a file that is not SQLite gives STORE_ERROR and keeps its bytes', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'notes.txt');
  const text = 'these are my notes, not a database\n'.repeat(200);
  writeFileSync(path, text);
  assert.throws(() => Store.open(path), { code: 'STORE_ERROR' });
  assert.equal(readFileSync(path, 'utf8'), text);
  assert.throws(() => Store.open(dir), { code: 'STORE_ERROR' });
});

test('VMs keep their first sighting; last seen and name follow the newest', (t) => {
  const s = Store.open(join(tempDir(t), 'v.db'));
  t.after(() => s.close());
  s.recordVmSeen(UUID, 'old-name', 1000);
  s.recordVmSeen(UUID, 'new-name', 5000);
  s.recordVmSeen(UUID, 'new-name', 3000); // a late event never moves last_seen backwards
  assert.deepEqual(s.getVm(UUID), { uuid: UUID, name: 'new-name', firstSeen: 1000, lastSeen: 5000 });
  assert.equal(s.getVm('00000000-0000-0000-0000-000000000000'), null);
  s.replaceGuestNodes(UUID, [
    { node: 0, cpus: '0-1', sizeBytes: 2 ** 28, backing: { kind: 'memfd', path: null, id: 'ram-node0', migratable: true }, hva: [] },
    { node: 1, cpus: null, sizeBytes: 2 ** 27, backing: { kind: 'file', path: '/x', id: 'ram-node1', migratable: true }, hva: [] },
  ], 7);
  assert.deepEqual(s.guestNodes(UUID).map((n) => [n.node, n.cpus, n.sizeBytes, n.backing.kind, n.backing.path]), [
    [0, '0-1', 2 ** 28, 'memfd', null],
    [1, null, 2 ** 27, 'file', '/x'],
  ]);
});

test('policies are versioned: every put is a new version; the newest is current', (t) => {
  const s = Store.open(join(tempDir(t), 'p.db'));
  t.after(() => s.close());
  assert.equal(s.currentPolicy(UUID), null);
  const a = s.putPolicy(UUID, DEFAULT_POLICY, 100);
  const b = s.putPolicy(UUID, parsePolicy({ mode: 'tier', migration: { maxMBps: 64 } }), 200);
  assert.equal(a.version, 1);
  assert.equal(b.version, 2);
  const cur = s.currentPolicy(UUID)!;
  assert.equal(cur.version, 2);
  assert.equal(cur.updatedAt, 200);
  assert.equal(cur.policy.mode, 'tier');
  assert.equal(cur.policy.migration.maxMBps, 64);
  assert.deepEqual(s.policyVersions(UUID).map((p) => [p.version, p.policy.mode]), [[1, 'observe'], [2, 'tier']]);
});

test('history: buckets average gauges by sample weight and sum moved bytes and failures', (t) => {
  const s = Store.open(join(tempDir(t), 'h.db'));
  t.after(() => s.close());
  const t0 = 1_700_000_000_000;
  s.insertSamples([
    sample(t0 + 0, { hotBytes: 100, coldBytes: 10, movedBytes: 4096, scanMs: 2 }),
    sample(t0 + 1000, { hotBytes: 300, coldBytes: 30, movedBytes: 8192, failures: 1, scanMs: 4 }),
    sample(t0 + 10_000, { hotBytes: 50, movedBytes: 0 }),
    sample(t0 + 1000, { hostNode: 1, hostTier: 'slow', coldBytes: 999 }),
    sample(t0 + 20_000, { hotBytes: 7 }), // outside [from, to)
    sample(t0 + 1000, { vmUuid: 'another', hotBytes: 1e9 }),
  ]);
  const h = s.history(UUID, t0, t0 + 20_000, 10_000);
  assert.deepEqual(h, [
    {
      guestNode: 0, hostNode: 0, hostTier: 'top', buckets: [
        { start: t0, hotBytes: 200, warmBytes: 0, coldBytes: 20, scannedBytes: 0, scanMs: 3, movedBytes: 12288, failures: 1, samples: 2 },
        { start: t0 + 10_000, hotBytes: 50, warmBytes: 0, coldBytes: 0, scannedBytes: 0, scanMs: 0, movedBytes: 0, failures: 0, samples: 1 },
      ],
    },
    {
      guestNode: 0, hostNode: 1, hostTier: 'slow', buckets: [
        { start: t0, hotBytes: 0, warmBytes: 0, coldBytes: 999, scannedBytes: 0, scanMs: 0, movedBytes: 0, failures: 0, samples: 1 },
      ],
    },
  ]);
  assert.throws(() => s.history(UUID, t0, t0, 1000), { code: 'INVALID_INPUT' });
  assert.throws(() => s.history(UUID, t0, t0 + 1000, 0), { code: 'INVALID_INPUT' });
  assert.throws(() => s.history(UUID, 0, 1e9, 1), { code: 'INVALID_INPUT' });
  assert.deepEqual(s.latestSamples().filter((x) => x.vmUuid === UUID).map((x) => x.hotBytes), [7]);
});

test('retention: full resolution for 24 h, coarse buckets after, dropped after 30 days; history keeps its means', (t) => {
  const s = Store.open(join(tempDir(t), 'r.db'));
  t.after(() => s.close());
  const hour = 3600_000;
  const now = Date.UTC(2026, 10, 26, 0, 0, 0);
  const samples: HotnessSample[] = [];
  // A round every 60 s from 31 days ago until now, with varying values.
  for (let ts = now - 31 * 24 * hour; ts < now; ts += 60_000) {
    const i = (ts / 60_000) % 17;
    samples.push(sample(ts, { hotBytes: 4096 * i, coldBytes: 4096 * (17 - i), movedBytes: 4096 * (i % 3), failures: i % 5 === 0 ? 1 : 0, scanMs: i }));
  }
  s.insertSamples(samples);
  s.logMigration({ t: now - 40 * 24 * hour, vmUuid: UUID, guestNode: 0, fromNode: 1, toNode: 0, direction: 'promote', pages: 1, moved: 1 });
  s.logMigration({ t: now - hour, vmUuid: UUID, guestNode: 0, fromNode: 1, toNode: 0, direction: 'promote', pages: 8, moved: 6, busy: 2 });
  const window: [number, number, number] = [now - 10 * 24 * hour, now - 2 * 24 * hour, hour];
  const before = s.history(UUID, ...window);
  const recentBefore = s.history(UUID, now - 2 * hour, now, 60_000);

  const r = s.applyRetention(now, DEFAULT_RETENTION);
  const count = (sql: string) => (s.db.prepare(sql).get() as { n: number }).n;
  assert.equal(r.droppedSamples, 24 * 60, 'the day older than 30 days is dropped');
  assert.equal(r.droppedMigrations, 1);
  assert.equal(r.coarsened, 29 * 24 * 60);
  assert.equal(r.coarseRows, 29 * 24 * 12);
  assert.equal(count('SELECT COUNT(*) AS n FROM samples WHERE resolution_ms = 0'), 24 * 60);
  assert.equal(count(`SELECT COUNT(*) AS n FROM samples WHERE t < ${now - 30 * 24 * hour}`), 0);
  // Hour buckets over coarsened days equal those computed from the raw rows.
  assert.deepEqual(s.history(UUID, ...window), before);
  assert.deepEqual(s.history(UUID, now - 2 * hour, now, 60_000), recentBefore);
  assert.equal(s.migrations(UUID, 0, now).length, 1);
  // Idempotent: a second pass right away changes nothing.
  assert.deepEqual(s.applyRetention(now, DEFAULT_RETENTION), { coarsened: 0, coarseRows: 0, droppedSamples: 0, droppedMigrations: 0, droppedRollups: 0, droppedPolicies: 0, droppedVms: 0, droppedSeries: 0 });
});

test('retention drops policy versions older than maxAge but always keeps each VM\'s newest, and the next PUT numbers on', (t) => {
  const s = Store.open(join(tempDir(t), 'p.db'));
  t.after(() => s.close());
  const day = 24 * 3600_000;
  const now = Date.UTC(2026, 10, 26, 0, 0, 0);
  const OTHER = '7f1f6a7e-9a53-4c1e-9d2b-0c3a4b5c6d7e';
  const QUIET = '8f1f6a7e-9a53-4c1e-9d2b-0c3a4b5c6d7e';
  // UUID: five versions 40..36 days old, then two recent ones; OTHER: one version changed twice
  // long ago (its newest is old, and must stay: it is the policy in force); QUIET: one old version.
  for (let i = 0; i < 5; i++) s.putPolicy(UUID, parsePolicy({ mode: 'observe', scan: { intervalMs: 500 + i * 100 } }), now - (40 - i) * day);
  s.putPolicy(UUID, parsePolicy({ mode: 'tier', migration: { maxMBps: 32 } }), now - 2 * day);
  s.putPolicy(UUID, parsePolicy({ mode: 'tier', migration: { maxMBps: 64 } }), now - day);
  s.putPolicy(OTHER, DEFAULT_POLICY, now - 60 * day);
  s.putPolicy(OTHER, parsePolicy({ mode: 'tier' }), now - 50 * day);
  s.putPolicy(QUIET, parsePolicy({ mode: 'tier' }), now - 90 * day);
  const r = s.applyRetention(now, DEFAULT_RETENTION);
  assert.equal(r.droppedPolicies, 6, 'the five old versions of UUID and the superseded one of OTHER');
  assert.deepEqual(s.policyVersions(UUID).map((p) => [p.version, p.policy.mode]), [[6, 'tier'], [7, 'tier']]);
  assert.deepEqual(s.policyVersions(OTHER).map((p) => [p.version, p.policy.mode]), [[2, 'tier']]);
  assert.deepEqual(s.policyVersions(QUIET).map((p) => p.version), [1]);
  // The current policies are unchanged.
  assert.equal(s.currentPolicy(UUID)!.policy.migration.maxMBps, 64);
  assert.equal(s.currentPolicy(OTHER)!.version, 2);
  assert.equal(s.currentPolicy(QUIET)!.policy.mode, 'tier');
  // Version numbers go on from the newest kept (never reused after a drop).
  assert.equal(s.putPolicy(OTHER, DEFAULT_POLICY, now).version, 3);
  // ... and the version it superseded (50 days old) goes on the next pass.
  assert.equal(s.applyRetention(now, DEFAULT_RETENTION).droppedPolicies, 1);
  assert.deepEqual(s.policyVersions(OTHER).map((p) => p.version), [3]);
  // A short maxAge leaves only the newest of each VM, however many were written meanwhile.
  for (let i = 0; i < 50; i++) s.putPolicy(UUID, parsePolicy({ mode: 'observe', scan: { intervalMs: 500 + i } }), now + i);
  const short = { fullResolutionMs: 0, coarseStepMs: 60_000, maxAgeMs: 0 };
  assert.equal(s.applyRetention(now + 1000, short).droppedPolicies, 2 + 49, 'versions 6 and 7 and all but the newest of the 50');
  const n = (s.db.prepare('SELECT COUNT(*) AS n FROM policies').get() as { n: number }).n;
  assert.equal(n, 3, 'one version per VM');
  assert.equal(s.currentPolicy(UUID)!.version, 57);
  assert.equal(s.currentPolicy(UUID)!.policy.scan.intervalMs, 549);
});

test('retention drops VMs not seen for maxAge with their layout and emptied series; their newest policy stays; a returning VM records again', (t) => {
  const s = Store.open(join(tempDir(t), 'v.db'));
  t.after(() => s.close());
  const day = 24 * 3600_000;
  const now = Date.UTC(2026, 10, 26, 0, 0, 0);
  const GONE = '9f1f6a7e-9a53-4c1e-9d2b-0c3a4b5c6d7e';
  const node = { node: 0, cpus: '0', sizeBytes: 1 << 30, backing: { kind: 'memfd' as const, path: null, id: 'm0', migratable: true }, hva: [] };
  s.recordVmSeen(GONE, 'gone', now - 40 * day);
  s.replaceGuestNodes(GONE, [node], now - 40 * day);
  s.insertSamples([sample(now - 40 * day, { vmUuid: GONE, hotBytes: 1 }), sample(now - 40 * day, { vmUuid: GONE, hostNode: 1, hostTier: 'slow' })]);
  s.putPolicy(GONE, parsePolicy({ mode: 'tier' }), now - 40 * day);
  s.recordVmSeen(UUID, 'here', now - 60_000);
  s.replaceGuestNodes(UUID, [node], now - 40 * day); // an old layout of a VM still seen stays
  s.insertSamples([sample(now - 60_000, { hotBytes: 2 })]);
  const r = s.applyRetention(now, DEFAULT_RETENTION);
  assert.equal(r.droppedVms, 1);
  assert.equal(r.droppedSeries, 2);
  assert.equal(s.getVm(GONE), null);
  assert.deepEqual(s.guestNodes(GONE), []);
  assert.equal(s.guestNodes(UUID).length, 1);
  assert.deepEqual(s.listVms().map((v) => v.uuid), [UUID]);
  const count = (sql: string) => (s.db.prepare(sql).get() as { n: number }).n;
  assert.equal(count(`SELECT COUNT(*) AS n FROM series WHERE vm_uuid = '${GONE}'`), 0);
  assert.equal(count(`SELECT COUNT(*) AS n FROM series WHERE vm_uuid = '${UUID}'`), 1);
  assert.equal(s.currentPolicy(GONE)!.policy.mode, 'tier', 'the policy in force is kept');
  // The VM comes back: its rounds get a new series and read back.
  s.recordVmSeen(GONE, 'gone', now);
  s.insertSamples([sample(now + 1000, { vmUuid: GONE, hotBytes: 4096 })]);
  const h = s.history(GONE, now, now + 60_000, 60_000);
  assert.equal(h.length, 1);
  assert.equal(h[0]!.buckets[0]!.hotBytes, 4096);
  assert.equal(count(`SELECT COUNT(*) AS n FROM samples WHERE series_id NOT IN (SELECT id FROM series)`), 0, 'no row under a dropped series id');
  assert.deepEqual(s.applyRetention(now + 1000, DEFAULT_RETENTION), { coarsened: 0, coarseRows: 0, droppedSamples: 0, droppedMigrations: 0, droppedRollups: 0, droppedPolicies: 0, droppedVms: 0, droppedSeries: 0 });
});

test('the WAL file shrinks back to the limit after a large transaction has been checkpointed', (t) => {
  const path = join(tempDir(t), 'w.db');
  const s = Store.open(path);
  t.after(() => s.close());
  const walSize = () => statSync(`${path}-wal`).size;
  // One transaction of 600,000 rows (raw rows, rollups, index): far more than the limit.
  const big: HotnessSample[] = [];
  for (let i = 0; i < 150_000; i++) {
    for (const [g, h] of [[0, 0], [0, 1], [1, 0], [1, 1]] as const) big.push(sample(1_000_000 + i * 1000, { guestNode: g, hostNode: h, hotBytes: i }));
  }
  // Its commit writes ~25 MB of frames to the WAL (what the file keeps without the limit).
  s.insertSamples(big);
  // The checkpoint its commit triggered (or this one) lets the next writer restart the WAL from the start, truncated.
  s.db.pragma('wal_checkpoint(PASSIVE)');
  s.insertSamples([sample(2e12)]);
  assert.ok(walSize() <= WAL_SIZE_LIMIT_BYTES, `WAL ${walSize()} bytes after the checkpoint, limit ${WAL_SIZE_LIMIT_BYTES}`);
});

test('0002 moves a 0001 database into series, samples and rollups without changing its history', (t) => {
  const dir = tempDir(t);
  const mdir = join(dir, 'migrations');
  mkdirSync(mdir);
  copyFileSync(join(MIGRATIONS_DIR, '0001_initial.sql'), join(mdir, '0001_initial.sql'));
  const path = join(dir, 'old.db');
  const old = Store.open(path, { migrationsDir: mdir });
  const t0 = Date.UTC(2026, 10, 26, 0, 0, 0);
  const ins = old.db.prepare(
    `INSERT INTO hotness_samples (t, vm_uuid, guest_node, host_node, host_tier, hot_bytes, warm_bytes, cold_bytes, scanned_bytes, scan_ms, moved_bytes, failures)
     VALUES (?, ?, ?, ?, ?, ?, 0, ?, 0, 1, ?, 0)`,
  );
  for (let i = 0; i < 720; i++) {
    ins.run(t0 + i * 10_000, UUID, 0, 0, 'top', 4096 * (i % 7), 4096 * (i % 3), 4096 * (i % 2));
    ins.run(t0 + i * 10_000, UUID, 0, 1, 'slow', 8192, 0, 0);
  }
  old.close();
  const s = Store.open(path);
  t.after(() => s.close());
  assert.equal(s.schemaVersion, LATEST);
  assert.equal(s.db.prepare("SELECT name FROM sqlite_master WHERE name = 'hotness_samples'").get(), undefined);
  assert.equal((s.db.prepare('SELECT COUNT(*) AS n FROM samples').get() as { n: number }).n, 1440);
  const range: [number, number] = [t0, t0 + 7200_000];
  for (const step of [60_000, 300_000, 3600_000]) {
    assert.deepEqual(s.history(UUID, ...range, step), s.history(UUID, ...range, step, 'raw'), `step ${step}`);
  }
  assert.equal(s.history(UUID, ...range, 3600_000)[0]!.buckets[0]!.samples, 360);
  assert.deepEqual(s.latestSamples().map((x) => [x.hostNode, x.t]), [[0, t0 + 719 * 10_000], [1, t0 + 719 * 10_000]]);
});
