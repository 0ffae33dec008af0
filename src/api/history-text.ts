/**
 * The body of GET /v1/vms/{uuid}/history as JSON text, fast enough for a control plane that
 * polls every VM's last day every few seconds.
 *
 * A request's range [from, to) splits into a ragged head [from, A), the whole buckets [A, B) and a
 * ragged tail [B, to) (A and B the first and last bucket boundary inside the range). Buckets are
 * disjoint and each is computed from the rows inside it, so the answer is the three parts'
 * buckets one after the other, equal to asking the store for the whole range (the test
 * "history: the cached answer equals the store's answer" checks it byte for byte). The head and
 * the tail (under one step each) are read fresh; the whole buckets, which are nearly all of a
 * day's answer and the same for every poll within a step, are kept as text per (VM, A, B, step,
 * source) until the store writes rows of that VM inside [A, B) (Store.onHistoryWrite), or any
 * VM's rows change (retention, a reopened file). `source=raw` (the check against raw rows) is
 * always computed fresh.
 *
 * This relies on the daemon's own store being the only writer of hotness samples, which holds:
 * only the engine of the serving process ingests rounds.
 */
import { checkHistoryRange, type HistorySeries, type HistorySource, type Store } from '../store/store.js';
import { iso } from './context.js';

/**
 * One series' buckets as JSON objects joined by commas (no brackets), UTF-8 encoded, with its
 * identity. Bytes rather than a string: a day's answer is ~230 KB, and joining and encoding it
 * again per request cost more than everything else a kept answer needs; bytes are copied once.
 */
interface SeriesText {
  guestNode: number;
  hostNode: number;
  hostTier: string;
  buckets: Buffer;
}

interface Entry {
  uuid: string;
  /** End of the cached range: a write of this VM earlier than this invalidates the entry. */
  end: number;
  series: SeriesText[];
  bytes: number;
}

/**
 * Bucket starts are multiples of the step, the same for every VM and every poll: formatting
 * them once (a day at 5 minutes is 288 strings per series) saves a good part of a miss.
 */
const isoCache = new Map<number, string>();
function bucketIso(ms: number): string {
  let s = isoCache.get(ms);
  if (s === undefined) {
    if (isoCache.size >= 100_000) isoCache.clear();
    s = new Date(ms).toISOString();
    isoCache.set(ms, s);
  }
  return s;
}

/**
 * The store's series as text, property order and number formatting as JSON.stringify of the
 * response schema's objects (all numbers are finite: bucket means divide by at least one sample).
 */
function seriesText(series: HistorySeries[]): SeriesText[] {
  return series.map((s) => {
    const parts: string[] = new Array(s.buckets.length);
    for (let i = 0; i < s.buckets.length; i++) {
      const b = s.buckets[i]!;
      parts[i] =
        `{"start":"${bucketIso(b.start)}","hotBytes":${b.hotBytes},"warmBytes":${b.warmBytes},"coldBytes":${b.coldBytes},` +
        `"scannedBytes":${b.scannedBytes},"scanMs":${b.scanMs},"movedBytes":${b.movedBytes},"failures":${b.failures},"samples":${b.samples}}`;
    }
    return { guestNode: s.guestNode, hostNode: s.hostNode, hostTier: s.hostTier, buckets: Buffer.from(parts.join(','), 'latin1') };
  });
}

export interface HistoryTextCacheStats {
  hits: number;
  misses: number;
  entries: number;
  bytes: number;
}

/** Whole-bucket texts per (VM, A, B, step, source), least recently used dropped beyond `maxBytes`. */
export class HistoryTextCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;

  constructor(
    private readonly store: Store,
    private readonly maxBytes = 64 << 20,
  ) {}

  /** Subscribed on first use, before anything is kept (the OpenAPI renderer builds routes on a store that answers nothing). */
  private subscribed = false;

  stats(): HistoryTextCacheStats {
    return { hits: this.hits, misses: this.misses, entries: this.entries.size, bytes: this.bytes };
  }

  /** The whole buckets of [a, b) (both multiples of the step). */
  wholeBuckets(uuid: string, a: number, b: number, stepMs: number, source: HistorySource): SeriesText[] {
    if (!this.subscribed) {
      this.store.onHistoryWrite((id, earliestT) => this.invalidate(id, earliestT));
      this.subscribed = true;
    }
    const key = `${uuid}|${a}|${b}|${stepMs}|${source}`;
    const hit = this.entries.get(key);
    if (hit) {
      this.hits++;
      // Map order is the eviction order: a hit moves to the back.
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.series;
    }
    this.misses++;
    const series = seriesText(this.store.history(uuid, a, b, stepMs, source));
    const bytes = series.reduce((n, s) => n + s.buckets.length + 64, 64);
    if (bytes <= this.maxBytes / 4) {
      this.entries.set(key, { uuid, end: b, series, bytes });
      this.bytes += bytes;
      for (const [k, e] of this.entries) {
        if (this.bytes <= this.maxBytes) break;
        this.entries.delete(k);
        this.bytes -= e.bytes;
      }
    }
    return series;
  }

  private invalidate(uuid: string | null, earliestT: number): void {
    if (uuid === null) {
      this.entries.clear();
      this.bytes = 0;
      return;
    }
    for (const [k, e] of this.entries) {
      if (e.uuid === uuid && earliestT < e.end) {
        this.entries.delete(k);
        this.bytes -= e.bytes;
      }
    }
  }
}

const COMMA = Buffer.from(',');
const SERIES_END = Buffer.from(']}');

/**
 * The history answer as JSON (UTF-8 bytes): what fastify would serialize from
 * { uuid, from, to, stepMs, series: store.history(uuid, from, to, stepMs, source) } with ISO bucket starts.
 */
export function historyJson(store: Store, cache: HistoryTextCache, uuid: string, from: number, to: number, stepMs: number, source: HistorySource): Buffer {
  checkHistoryRange(from, to, stepMs);
  const a = Math.ceil(from / stepMs) * stepMs;
  const b = Math.floor(to / stepMs) * stepMs;
  const parts: SeriesText[][] = [];
  // source=raw is the check of the rollups: always read fresh, never from kept text.
  if (a >= b || source === 'raw') {
    // (Or the whole range lies within one or two buckets: nothing worth keeping.)
    parts.push(seriesText(store.history(uuid, from, to, stepMs, source)));
  } else {
    if (from < a) parts.push(seriesText(store.history(uuid, from, a, stepMs, source)));
    parts.push(cache.wholeBuckets(uuid, a, b, stepMs, source));
    if (b < to) parts.push(seriesText(store.history(uuid, b, to, stepMs, source)));
  }
  // Series in the store's order (guest node, host node, host tier), each part's buckets in time order.
  const merged = new Map<string, { s: SeriesText; buckets: Buffer[] }>();
  for (const part of parts) {
    for (const s of part) {
      if (s.buckets.length === 0) continue;
      const key = `${s.guestNode}:${s.hostNode}:${s.hostTier}`;
      const m = merged.get(key);
      if (m) m.buckets.push(s.buckets);
      else merged.set(key, { s, buckets: [s.buckets] });
    }
  }
  const series = [...merged.values()].sort(
    (x, y) => x.s.guestNode - y.s.guestNode || x.s.hostNode - y.s.hostNode || (x.s.hostTier < y.s.hostTier ? -1 : x.s.hostTier > y.s.hostTier ? 1 : 0),
  );
  const out: Buffer[] = [Buffer.from(`{"uuid":${JSON.stringify(uuid)},"from":"${iso(from)}","to":"${iso(to)}","stepMs":${stepMs},"series":[`)];
  series.forEach(({ s, buckets }, i) => {
    out.push(Buffer.from(`${i > 0 ? ',' : ''}{"guestNode":${s.guestNode},"hostNode":${s.hostNode},"hostTier":${JSON.stringify(s.hostTier)},"buckets":[`));
    buckets.forEach((bytes, j) => {
      if (j > 0) out.push(COMMA);
      out.push(bytes);
    });
    out.push(SERIES_END);
  });
  out.push(SERIES_END);
  return Buffer.concat(out);
}
