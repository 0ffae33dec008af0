-- Heat history for the dashboard's heatmap: per VM and time cell, the VM's tracked guest memory
-- (guest node by guest node, each in address order) cut into at most 1024 equal buckets, one
-- byte per bucket for each of
--   hot       mean fraction of scans that saw the bucket's resident pages accessed (0..255 = 0..1);
--             NULL when no round of the cell had a working tracker (placement only)
--   dram      fraction of the bucket's resident pages on a top-tier (DRAM) node (0..255)
--   resident  fraction of the bucket's pages resident at all (0..255)
-- Rounds are folded into 1-minute cells as they are recorded (`samples` rounds each); retention
-- folds older cells into coarse cells and drops the oldest, as for hotness history.
-- `nodes` is JSON: [{"guestNode":n,"start":bytes,"end":bytes}] offsets in the same address space.
CREATE TABLE heat_frames (
  vm_uuid        TEXT NOT NULL,
  resolution_ms  INTEGER NOT NULL,
  t              INTEGER NOT NULL,
  samples        INTEGER NOT NULL,
  bucket_bytes   INTEGER NOT NULL,
  total_bytes    INTEGER NOT NULL,
  nodes          TEXT NOT NULL,
  hot            BLOB,
  dram           BLOB NOT NULL,
  resident       BLOB NOT NULL,
  PRIMARY KEY (vm_uuid, resolution_ms, t)
) WITHOUT ROWID;
CREATE INDEX heat_frames_vm_t ON heat_frames (vm_uuid, t);
CREATE INDEX heat_frames_res_t ON heat_frames (resolution_ms, t);
