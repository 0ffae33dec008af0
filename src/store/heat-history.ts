/**
 * Heat history for the dashboard's heatmap (migrations/0003_heat_history.sql): per VM, its tracked
 * guest memory cut into at most HEAT_MAX_BUCKETS equal address buckets, one byte per bucket for
 * hotness, DRAM share and residency. A round costs one pass over its per-page arrays (which the
 * round already holds) and one row write; rounds of the same minute fold into one row, so the
 * table grows per VM and minute, never per page.
 *
 * Works on `store.db` only (no Store internals), so the store can change underneath. Writes never
 * throw into a round: a heat frame is a picture, not an account.
 */
import type { Database, Statement } from 'better-sqlite3';
import { VmtierError } from '../errors.js';
import { TIER_DRAM, TIER_NONE } from '../policy/types.js';
import type { RetentionPolicy, Store } from './store.js';

export const HEAT_MAX_BUCKETS = 1024;
/** Rounds are folded into cells of this length as they are recorded. */
export const HEAT_CELL_MS = 60_000;
/** Frames one heat query returns at most (the client draws one column per frame). */
export const HEAT_MAX_FRAMES = 1440;

/** A guest node's part of the bucket axis (guest order, see guestOrder), in bytes from its start. */
export interface HeatNodeSpan {
  guestNode: number;
  start: number;
  end: number;
}

export interface HeatFrame {
  /** Start of the cell (ms since epoch). */
  t: number;
  /** Rounds folded into this frame. */
  samples: number;
  bucketBytes: number;
  totalBytes: number;
  nodes: HeatNodeSpan[];
  /** 0..255 = fraction 0..1 per bucket; hot is null when no round of the frame was scanned. */
  hot: Uint8Array | null;
  dram: Uint8Array;
  resident: Uint8Array;
}

/** What a round knows, page by page (the daemon's PageMap numbering). */
export interface HeatRoundInput {
  segments: ReadonlyArray<{ firstPage: number; pages: number; guestNode: number }>;
  totalPages: number;
  pageSize: number;
  /** Per page: in how many of `scans` scans it was seen accessed; null when the tracker was unavailable. */
  counts: Uint8Array | null;
  scans: number;
  /** Per page: TIER_DRAM, TIER_SLOW or TIER_NONE (not resident). */
  tiers: Uint8Array;
}

function byteOf(num: number, den: number): number {
  return den <= 0 ? 0 : Math.min(255, Math.round((255 * num) / den));
}

/**
 * The address axis: guest node by guest node (ascending), each node's memory in address order —
 * the guest-physical order of a NUMA guest's RAM. The daemon numbers pages by host-virtual address,
 * where QEMU may have placed node 1's RAM below node 0's.
 */
function guestOrder(segs: HeatRoundInput['segments']): HeatRoundInput['segments'] {
  return [...segs].sort((a, b) => a.guestNode - b.guestNode || a.firstPage - b.firstPage);
}

/** One round's frame: O(pages) over arrays the round already has, O(buckets) out. */
export function heatFrameOf(r: HeatRoundInput, t: number): HeatFrame {
  const bucketPages = Math.max(1, Math.ceil(r.totalPages / HEAT_MAX_BUCKETS));
  const n = Math.max(1, Math.ceil(r.totalPages / bucketPages));
  const seen = new Float64Array(n);
  const resident = new Uint32Array(n);
  const dram = new Uint32Array(n);
  const scans = Math.max(1, r.scans);
  const order = guestOrder(r.segments);
  let offset = 0; // pages before this segment on the address axis
  for (const s of order) {
    for (let i = 0; i < s.pages; i++) {
      const p = s.firstPage + i;
      const tier = r.tiers[p];
      if (tier === TIER_NONE) continue;
      const b = ((offset + i) / bucketPages) | 0;
      resident[b]++;
      if (tier === TIER_DRAM) dram[b]++;
      if (r.counts) seen[b] += r.counts[p]!;
    }
    offset += s.pages;
  }
  const out: HeatFrame = {
    t,
    samples: 1,
    bucketBytes: bucketPages * r.pageSize,
    totalBytes: r.totalPages * r.pageSize,
    nodes: nodeSpans(order, r.pageSize),
    hot: r.counts ? new Uint8Array(n) : null,
    dram: new Uint8Array(n),
    resident: new Uint8Array(n),
  };
  for (let b = 0; b < n; b++) {
    const pages = Math.min(bucketPages, r.totalPages - b * bucketPages);
    out.resident[b] = byteOf(resident[b]!, pages);
    out.dram[b] = byteOf(dram[b]!, resident[b]!);
    if (out.hot) out.hot[b] = byteOf(seen[b]!, resident[b]! * scans);
  }
  return out;
}

/** Spans of the guest-ordered segments, merged per guest node. */
function nodeSpans(ordered: HeatRoundInput['segments'], pageSize: number): HeatNodeSpan[] {
  const out: HeatNodeSpan[] = [];
  let offset = 0;
  for (const s of ordered) {
    const last = out[out.length - 1];
    const start = offset * pageSize;
    const end = (offset + s.pages) * pageSize;
    if (last && last.guestNode === s.guestNode) last.end = end;
    else out.push({ guestNode: s.guestNode, start, end });
    offset += s.pages;
  }
  return out;
}

/** Sample-weighted mean of two byte arrays of equal length. */
function mix(a: Uint8Array | null, na: number, b: Uint8Array | null, nb: number): Uint8Array | null {
  if (!a) return b;
  if (!b) return a;
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Math.round((a[i]! * na + b[i]! * nb) / (na + nb));
  return out;
}

function sameLayout(a: Pick<HeatFrame, 'bucketBytes' | 'totalBytes'>, b: Pick<HeatFrame, 'bucketBytes' | 'totalBytes'>): boolean {
  return a.bucketBytes === b.bucketBytes && a.totalBytes === b.totalBytes;
}

/** Folds b into a (same layout): means weighted by rounds. */
function fold(a: HeatFrame, b: HeatFrame): HeatFrame {
  return {
    ...a,
    samples: a.samples + b.samples,
    hot: mix(a.hot, a.samples, b.hot, b.samples),
    dram: mix(a.dram, a.samples, b.dram, b.samples)!,
    resident: mix(a.resident, a.samples, b.resident, b.samples)!,
  };
}

interface Row {
  vm_uuid: string;
  resolution_ms: number;
  t: number;
  samples: number;
  bucket_bytes: number;
  total_bytes: number;
  nodes: string;
  hot: Buffer | null;
  dram: Buffer;
  resident: Buffer;
}

function fromRow(r: Row): HeatFrame {
  return {
    t: r.t,
    samples: r.samples,
    bucketBytes: r.bucket_bytes,
    totalBytes: r.total_bytes,
    nodes: JSON.parse(r.nodes) as HeatNodeSpan[],
    hot: r.hot ? new Uint8Array(r.hot) : null,
    dram: new Uint8Array(r.dram),
    resident: new Uint8Array(r.resident),
  };
}

export interface HeatRetentionResult {
  coarsenedFrames: number;
  coarseFrames: number;
  droppedFrames: number;
}

/** Heat frames of one store; statements are prepared per database handle (the store may reopen its file). */
export class HeatHistory {
  private stmts = new WeakMap<Database, Map<string, Statement>>();

  constructor(private readonly store: Pick<Store, 'db'>) {}

  private stmt(sql: string): Statement {
    const db = this.store.db;
    let m = this.stmts.get(db);
    if (!m) this.stmts.set(db, (m = new Map()));
    let s = m.get(sql);
    if (!s) m.set(sql, (s = db.prepare(sql)));
    return s;
  }

  /** Folds one round's frame into its VM's current minute cell. */
  record(vmUuid: string, frame: HeatFrame): void {
    const cellT = Math.floor(frame.t / HEAT_CELL_MS) * HEAT_CELL_MS;
    const db = this.store.db;
    db.transaction(() => {
      const old = this.stmt('SELECT * FROM heat_frames WHERE vm_uuid = ? AND resolution_ms = ? AND t = ?').get(vmUuid, HEAT_CELL_MS, cellT) as Row | undefined;
      const prev = old ? fromRow(old) : null;
      // A resized VM starts its cell afresh: buckets of two layouts do not line up.
      const f = prev && sameLayout(prev, frame) ? fold(prev, { ...frame, t: cellT }) : { ...frame, t: cellT };
      this.write(vmUuid, HEAT_CELL_MS, f);
    })();
  }

  private write(vmUuid: string, resolutionMs: number, f: HeatFrame): void {
    this.stmt(
      `INSERT OR REPLACE INTO heat_frames (vm_uuid, resolution_ms, t, samples, bucket_bytes, total_bytes, nodes, hot, dram, resident)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(vmUuid, resolutionMs, f.t, f.samples, f.bucketBytes, f.totalBytes, JSON.stringify(f.nodes), f.hot ? Buffer.from(f.hot) : null, Buffer.from(f.dram), Buffer.from(f.resident));
  }

  /**
   * Frames of one VM over [from, to), folded into at most `maxFrames` columns of equal length.
   * Only frames with the newest layout (bucket size and total) are returned: older layouts' buckets
   * would not line up with the newest.
   */
  query(vmUuid: string, from: number, to: number, maxFrames: number): { stepMs: number; frames: HeatFrame[] } {
    if (!(Number.isSafeInteger(from) && Number.isSafeInteger(to) && from < to)) {
      throw new VmtierError('INVALID_INPUT', `heat range must have from < to (got from=${from}, to=${to})`);
    }
    if (!(Number.isInteger(maxFrames) && maxFrames >= 1 && maxFrames <= HEAT_MAX_FRAMES)) {
      throw new VmtierError('INVALID_INPUT', `frames must be 1..${HEAT_MAX_FRAMES} (got ${maxFrames})`);
    }
    const stepMs = Math.max(HEAT_CELL_MS, Math.ceil((to - from) / maxFrames));
    const rows = this.stmt('SELECT * FROM heat_frames WHERE vm_uuid = ? AND t >= ? AND t < ? ORDER BY t, resolution_ms').all(vmUuid, from, to) as Row[];
    if (rows.length === 0) return { stepMs, frames: [] };
    const newest = fromRow(rows[rows.length - 1]!);
    const out: HeatFrame[] = [];
    for (const r of rows) {
      if (r.bucket_bytes !== newest.bucketBytes || r.total_bytes !== newest.totalBytes) continue;
      const f = fromRow(r);
      const colT = from + Math.floor((f.t - from) / stepMs) * stepMs;
      const last = out[out.length - 1];
      if (last && last.t === colT) out[out.length - 1] = fold(last, f);
      else out.push({ ...f, t: colT, nodes: newest.nodes });
    }
    return { stepMs, frames: out };
  }

  /**
   * Same rule as the hotness history: minute cells older than fullResolutionMs fold into
   * coarseStepMs cells, everything older than maxAgeMs is dropped. One transaction.
   */
  applyRetention(now: number, r: RetentionPolicy): HeatRetentionResult {
    const step = Math.max(HEAT_CELL_MS, Math.round(r.coarseStepMs));
    const db = this.store.db;
    return db.transaction((): HeatRetentionResult => {
      const droppedFrames = this.stmt('DELETE FROM heat_frames WHERE t < ?').run(now - r.maxAgeMs).changes;
      const old = this.stmt('SELECT * FROM heat_frames WHERE resolution_ms = ? AND t < ? ORDER BY vm_uuid, t').all(HEAT_CELL_MS, now - r.fullResolutionMs) as Row[];
      if (old.length === 0 || step === HEAT_CELL_MS) return { coarsenedFrames: 0, coarseFrames: 0, droppedFrames };
      const cells = new Map<string, { vm: string; f: HeatFrame }>();
      for (const row of old) {
        const f = fromRow(row);
        const t = Math.floor(f.t / step) * step;
        const key = `${row.vm_uuid}:${t}`;
        const c = cells.get(key);
        if (!c) {
          const existing = this.stmt('SELECT * FROM heat_frames WHERE vm_uuid = ? AND resolution_ms = ? AND t = ?').get(row.vm_uuid, step, t) as Row | undefined;
          const base = existing ? fromRow(existing) : null;
          cells.set(key, { vm: row.vm_uuid, f: base && sameLayout(base, f) ? fold(base, { ...f, t }) : { ...f, t } });
        } else if (sameLayout(c.f, f)) {
          c.f = fold(c.f, f);
        } else {
          c.f = { ...f, t }; // the newer layout wins the cell
        }
      }
      for (const { vm, f } of cells.values()) this.write(vm, step, f);
      const coarsenedFrames = this.stmt('DELETE FROM heat_frames WHERE resolution_ms = ? AND t < ?').run(HEAT_CELL_MS, now - r.fullResolutionMs).changes;
      return { coarsenedFrames, coarseFrames: cells.size, droppedFrames };
    })();
  }
}

const histories = new WeakMap<object, HeatHistory>();

/** The heat history of a store (one per store object). */
export function heatHistoryOf(store: Pick<Store, 'db'>): HeatHistory {
  let h = histories.get(store);
  if (!h) histories.set(store, (h = new HeatHistory(store)));
  return h;
}

/**
 * Records one round's heat for the daemon; returns false (and leaves the round alone) when the
 * write fails — the store's own fault handling covers its tables, a missing picture is not an error.
 */
export function recordHeat(store: Pick<Store, 'db'>, vmUuid: string, t: number, round: HeatRoundInput): boolean {
  try {
    heatHistoryOf(store).record(vmUuid, heatFrameOf(round, t));
    return true;
  } catch {
    return false;
  }
}
