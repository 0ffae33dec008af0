-- History that answers in milliseconds and stays small.
--
-- 0001 repeated the VM's UUID (twice, with its index) and the tier name in every round's row and
-- aggregated raw rows for every history request. Here:
--   * `series` names each VM x guest node x host node x tier once and keeps its newest round
--     (what /metrics shows), so rows carry a small integer id;
--   * `samples` is the raw table keyed by series id (same columns and meaning as before);
--   * `rollups` holds per series sums over fixed, epoch-aligned cells of 1 min, 5 min and 1 h,
--     updated in the same transaction as the raw rows, so history reads hundreds of rows.

CREATE TABLE series (
  id             INTEGER PRIMARY KEY,
  vm_uuid        TEXT NOT NULL,
  guest_node     INTEGER NOT NULL,
  host_node      INTEGER NOT NULL,
  host_tier      TEXT NOT NULL CHECK (host_tier IN ('top', 'slow')),
  -- the newest round (NULL until one is recorded)
  last_t         INTEGER,
  last_hot       INTEGER,
  last_warm      INTEGER,
  last_cold      INTEGER,
  last_scanned   INTEGER,
  last_scan_ms   REAL,
  last_moved     INTEGER,
  last_failures  INTEGER,
  UNIQUE (vm_uuid, guest_node, host_node, host_tier)
);

-- One row per round x series (resolution_ms = 0), or the mean of `samples` raw rows over
-- [t, t + resolution_ms) once retention has coarsened them (as in 0001).
CREATE TABLE samples (
  series_id      INTEGER NOT NULL,
  t              INTEGER NOT NULL,
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
CREATE INDEX samples_series_t ON samples (series_id, t);

-- Sums (not means) over the cell [t, t + resolution_ms): a bucket made of whole cells is exact.
-- INTEGER affinity keeps whole sums as integers; a coarsened row's mean x samples may be fractional.
CREATE TABLE rollups (
  resolution_ms  INTEGER NOT NULL,
  series_id      INTEGER NOT NULL,
  t              INTEGER NOT NULL,
  samples        INTEGER NOT NULL,
  hot_sum        INTEGER NOT NULL,
  warm_sum       INTEGER NOT NULL,
  cold_sum       INTEGER NOT NULL,
  scanned_sum    INTEGER NOT NULL,
  scan_ms_sum    REAL NOT NULL,
  moved_bytes    INTEGER NOT NULL,
  failures       INTEGER NOT NULL,
  PRIMARY KEY (resolution_ms, series_id, t)
) WITHOUT ROWID;

INSERT INTO series (vm_uuid, guest_node, host_node, host_tier)
  SELECT DISTINCT vm_uuid, guest_node, host_node, host_tier FROM hotness_samples;

INSERT INTO samples (series_id, t, hot_bytes, warm_bytes, cold_bytes, scanned_bytes, scan_ms, moved_bytes, failures, samples, resolution_ms)
  SELECT s.id, h.t, h.hot_bytes, h.warm_bytes, h.cold_bytes, h.scanned_bytes, h.scan_ms, h.moved_bytes, h.failures, h.samples, h.resolution_ms
  FROM hotness_samples h JOIN series s
    ON s.vm_uuid = h.vm_uuid AND s.guest_node = h.guest_node AND s.host_node = h.host_node AND s.host_tier = h.host_tier;

INSERT INTO rollups
  SELECT r.res, series_id, (t / r.res) * r.res, SUM(samples),
    SUM(hot_bytes * samples), SUM(warm_bytes * samples), SUM(cold_bytes * samples), SUM(scanned_bytes * samples),
    SUM(scan_ms * samples), SUM(moved_bytes), SUM(failures)
  FROM samples, (SELECT 60000 AS res UNION ALL SELECT 300000 UNION ALL SELECT 3600000) r
  GROUP BY r.res, series_id, t / r.res;

UPDATE series SET (last_t, last_hot, last_warm, last_cold, last_scanned, last_scan_ms, last_moved, last_failures) = (
  SELECT t, hot_bytes, warm_bytes, cold_bytes, scanned_bytes, scan_ms, moved_bytes, failures
  FROM samples WHERE series_id = series.id ORDER BY t DESC LIMIT 1);

DROP TABLE hotness_samples;
