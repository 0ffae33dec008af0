-- vmtier's first schema. Times are milliseconds since the Unix epoch (UTC); sizes in bytes.

-- Every VM vmtier has seen running.
CREATE TABLE vms (
  uuid        TEXT PRIMARY KEY,
  name        TEXT NOT NULL,
  first_seen  INTEGER NOT NULL,
  last_seen   INTEGER NOT NULL
);

-- The guest NUMA layout last read for a VM (replaced as a whole when it changes).
CREATE TABLE guest_nodes (
  vm_uuid       TEXT NOT NULL,
  node          INTEGER NOT NULL,
  cpus          TEXT,
  size_bytes    INTEGER NOT NULL,
  backing_kind  TEXT NOT NULL,
  backing_path  TEXT,
  backing_id    TEXT NOT NULL,
  migratable    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL,
  PRIMARY KEY (vm_uuid, node)
);

-- Per-VM tiering policy; every change is a new version, the highest is current.
CREATE TABLE policies (
  vm_uuid     TEXT NOT NULL,
  version     INTEGER NOT NULL,
  policy      TEXT NOT NULL,          -- JSON of the normalized TierPolicy
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (vm_uuid, version)
);

-- One row per round x guest node x host node (raw, resolution_ms = 0), or an average of
-- `samples` raw rows over [t, t + resolution_ms) after retention has coarsened them.
CREATE TABLE hotness_samples (
  t              INTEGER NOT NULL,
  vm_uuid        TEXT NOT NULL,
  guest_node     INTEGER NOT NULL,
  host_node      INTEGER NOT NULL,
  host_tier      TEXT NOT NULL CHECK (host_tier IN ('top', 'slow')),
  hot_bytes      INTEGER NOT NULL,
  warm_bytes     INTEGER NOT NULL,
  cold_bytes     INTEGER NOT NULL,
  scanned_bytes  INTEGER NOT NULL,
  scan_ms        REAL NOT NULL,
  moved_bytes    INTEGER NOT NULL,
  failures       INTEGER NOT NULL,
  samples        INTEGER NOT NULL DEFAULT 1,
  resolution_ms  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX hotness_samples_vm_t ON hotness_samples (vm_uuid, t);
CREATE INDEX hotness_samples_res_t ON hotness_samples (resolution_ms, t);

-- Every batch of page moves and its outcome by status.
CREATE TABLE migration_log (
  id           INTEGER PRIMARY KEY,
  t            INTEGER NOT NULL,
  vm_uuid      TEXT NOT NULL,
  guest_node   INTEGER NOT NULL,
  from_node    INTEGER,
  to_node      INTEGER NOT NULL,
  direction    TEXT NOT NULL CHECK (direction IN ('promote', 'demote', 'other')),
  pages        INTEGER NOT NULL,
  moved        INTEGER NOT NULL,
  busy         INTEGER NOT NULL DEFAULT 0,
  not_present  INTEGER NOT NULL DEFAULT 0,
  no_memory    INTEGER NOT NULL DEFAULT 0,
  fault        INTEGER NOT NULL DEFAULT 0,
  other        INTEGER NOT NULL DEFAULT 0,
  duration_ms  REAL NOT NULL DEFAULT 0
);
CREATE INDEX migration_log_vm_t ON migration_log (vm_uuid, t);
