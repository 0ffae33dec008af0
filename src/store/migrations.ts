/**
 * Schema migrations: numbered SQL files (migrations/NNNN_name.sql) applied in order, each in
 * its own transaction, recorded in `schema_migrations`. A database that records a version
 * newer than any file here was written by a newer vmtier: refuse it rather than guess.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Database } from 'better-sqlite3';
import { VmtierError } from '../errors.js';

/** The repository's migrations/ folder (this file runs as dist/src/store/migrations.js). */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../../migrations/', import.meta.url));

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (e) {
    throw new VmtierError('STORE_ERROR', `cannot read migrations in ${dir}: ${(e as Error).message}`);
  }
  const out: Migration[] = [];
  for (const f of entries) {
    const m = /^(\d{4})_([\w-]+)\.sql$/.exec(f);
    if (!m) continue;
    out.push({ version: Number(m[1]), name: m[2], sql: readFileSync(join(dir, f), 'utf8') });
  }
  out.sort((a, b) => a.version - b.version);
  out.forEach((m, i) => {
    if (m.version !== i + 1) throw new VmtierError('STORE_ERROR', `migrations must be numbered 0001.. without gaps; found ${String(m.version).padStart(4, '0')} at position ${i + 1}`);
  });
  return out;
}

/** Applies pending migrations; returns the schema version now in the database. */
export function migrate(db: Database, migrations: Migration[]): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const current = (db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations').get() as { v: number }).v;
  const known = migrations.length === 0 ? 0 : migrations[migrations.length - 1].version;
  if (current > known) {
    throw new VmtierError('SCHEMA_TOO_NEW', `database schema version ${current} is newer than this vmtier knows (${known}); upgrade vmtier or use another --db`, {
      dbVersion: current,
      knownVersion: known,
    });
  }
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of migrations) {
    if (m.version <= current) continue;
    const apply = db.transaction(() => {
      db.exec(m.sql);
      record.run(m.version, m.name, Date.now());
    });
    try {
      apply();
    } catch (e) {
      throw new VmtierError('STORE_ERROR', `migration ${String(m.version).padStart(4, '0')}_${m.name} failed: ${(e as Error).message}`, undefined, { cause: e });
    }
  }
  return Math.max(current, known);
}
