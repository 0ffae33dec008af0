/**
 * The body of GET /v1/vms/{uuid}/history as JSON text, fast enough for a control plane that
 * polls every VM's last day every few seconds.
 *
 * A request's range [from, to) splits into a ragged head [from, A), the whole buckets [A, B) and a
 * ragged tail [B, to) (A and B the first and last bucket boundary inside the range). Buckets are
 * disjoint and each is computed from the rows inside it, so the answer is the three parts'
 * buckets one after the other, equal to asking the store for the whole range (the test
 * "history: the cached answer equals the store's answer" checks it byte for byte). The whole
 * buckets, nearly all of a day's answer and the same for every poll within a step, are kept as
 * text per (VM, A, B, step, source) until the store writes rows of that VM inside [A, B)
 * (Store.onHistoryWrite), or any VM's rows change (retention, a reopened file).
 *
 * The ragged ends are kept too, until the VM's next write, so that a poll between two rounds
 * reads nothing from SQLite. What the store answers for them depends on the request only through:
 * - for the head [from, A): which rows lie in [from, A), i.e. the first row time at or after
 *   `from` (from the VM's row times in [A - step, A), read once), and ceil(from / 1 min), which
 *   fixes where the store switches between raw rows and rollup cells (every cell size is a
 *   multiple of a minute);
 * - for the tail [B, to), when `to` is past the VM's newest row: floor(to / 1 min) alone (the
 *   rows in [B, to) are then all of the VM's rows from B on).
 * Answers are kept under those keys, so the same key is the same query over the same rows. The
 * series text after `"series":[` is then kept whole per (head key, tail key) beside the whole
 * buckets: a poll builds only the ~130-byte start ({"uuid","from","to","stepMs"}) and writes both
 * without copying the ~225 KB. `source=raw` (the check against raw rows) is always computed
 * fresh.
 *
 * This relies on the daemon's own store being the only writer of hotness samples, which holds:
 * only the engine of the serving process ingests rounds.
 */
import { checkHistoryRange, type HistorySeries, type HistorySource, type Store } from '../store/store.js';
import { iso } from './context.js';
import { deflatePart, gzipParts, type DeflatedPart } from './gzip.js';

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
  /** Ragged ends answered from kept text / read from the store. */
  endHits: number;
  endMisses: number;
  entries: number;
  bytes: number;
}

/** Kept whole buckets of one (VM, A, B, step, source), and the series text last built from them. */
interface WholeEntry {
  kind: 'whole';
  key: string;
  /** `${uuid}|${stepMs}|${source}`: what the per-window bound counts by. */
  group: string;
  uuid: string;
  /** End of the cached range: a write of this VM earlier than this invalidates the entry. */
  end: number;
  series: SeriesText[];
  /**
   * The series text after `"series":[` for one (head key, tail key), until the VM's next write;
   * deflated on the first request that accepts gzip.
   */
  assembled: { key: string; body: Buffer; gz: DeflatedPart | null } | null;
  bytes: number;
}

/** The VM's row times in the head's bucket [A - step, A) and the head texts per key; dropped on any write of the VM. */
interface HeadEntry {
  kind: 'head';
  uuid: string;
  group: string;
  times: number[];
  texts: Map<string, SeriesText[]>;
  bytes: number;
}

/** A tail text (`to` past the VM's newest row) or the VM's newest row time; dropped on any write of the VM. */
interface EndEntry {
  kind: 'tail' | 'newest';
  uuid: string;
  /** Null for the VM's newest row time (one per VM). */
  group: string | null;
  series: SeriesText[];
  newestT: number;
  bytes: number;
}

type Entry = WholeEntry | HeadEntry | EndEntry;

/** Head texts kept per head bucket: a poller's `from` moves through a bucket one row time after another. */
const HEAD_TEXTS_KEPT = 8;

/**
 * Whole-bucket windows kept per (VM, step, source). A poller of the last hour or day moves its
 * window on by a step every step: the window it left is never asked again, and the VM's new rows
 * lie after its end, so no write drops it. Without this bound such entries stayed until the byte
 * cap evicted them (hours of polling: the soak's heap snapshot found them); a few windows cover
 * pollers of different spans at one step.
 */
export const WHOLE_WINDOWS_KEPT = 4;
/** Head and tail entries kept per (VM, step, source), for the same reason (a tail's key moves on every minute). */
export const END_ENTRIES_KEPT = 4;

const seriesBytes = (series: SeriesText[]) => series.reduce((n, s) => n + s.buckets.length + 64, 64);
const assembledBytes = (e: WholeEntry) => (e.assembled ? e.assembled.body.length + (e.assembled.gz?.deflated.length ?? 0) : 0);

/**
 * Whole-bucket texts per (VM, A, B, step, source), ragged ends and built series texts: at most
 * WHOLE_WINDOWS_KEPT windows and END_ENTRIES_KEPT heads and tails per (VM, step, source), the least
 * recently used of the group dropped first, and the least recently used of all dropped beyond
 * `maxBytes` (everything kept counts).
 */
export class HistoryTextCache {
  private readonly entries = new Map<string, Entry>();
  /** Per group, the keys of its whole entries and of its head/tail entries, least recently used first. */
  private readonly wholeKeys = new Map<string, Set<string>>();
  private readonly endKeys = new Map<string, Set<string>>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private endHits = 0;
  private endMisses = 0;

  constructor(
    private readonly store: Store,
    readonly maxBytes = 64 << 20,
  ) {}

  /** Subscribed on first use, before anything is kept (the OpenAPI renderer builds routes on a store that answers nothing). */
  private subscribed = false;

  stats(): HistoryTextCacheStats {
    return { hits: this.hits, misses: this.misses, endHits: this.endHits, endMisses: this.endMisses, entries: this.entries.size, bytes: this.bytes };
  }

  /** How many whole windows and head/tail entries are kept per (VM, step, source) group now. */
  groupCounts(): Array<{ group: string; whole: number; ends: number }> {
    const groups = new Set([...this.wholeKeys.keys(), ...this.endKeys.keys()]);
    return [...groups].map((group) => ({ group, whole: this.wholeKeys.get(group)?.size ?? 0, ends: this.endKeys.get(group)?.size ?? 0 }));
  }

  private groupSet(e: Entry): Set<string> | null {
    if (e.group === null) return null;
    const m = e.kind === 'whole' ? this.wholeKeys : this.endKeys;
    let set = m.get(e.group);
    if (!set) m.set(e.group, (set = new Set()));
    return set;
  }

  /** Forgets a kept entry (and its place in its group). */
  private drop(key: string, e: Entry): void {
    this.entries.delete(key);
    this.bytes -= e.bytes;
    if (e.group === null) return;
    const m = e.kind === 'whole' ? this.wholeKeys : this.endKeys;
    const set = m.get(e.group);
    set?.delete(key);
    if (set && set.size === 0) m.delete(e.group);
  }

  private subscribe(): void {
    if (!this.subscribed) {
      this.store.onHistoryWrite((id, earliestT) => this.invalidate(id, earliestT));
      this.subscribed = true;
    }
  }

  private get(key: string): Entry | undefined {
    const e = this.entries.get(key);
    if (e) {
      // Map order is the eviction order: a use moves the entry to the back (of its group too).
      this.entries.delete(key);
      this.entries.set(key, e);
      const set = this.groupSet(e);
      if (set) {
        set.delete(key);
        set.add(key);
      }
    }
    return e;
  }

  private put(key: string, e: Entry): void {
    if (e.bytes > this.maxBytes / 4) return;
    const old = this.entries.get(key);
    if (old) this.drop(key, old);
    this.entries.set(key, e);
    this.bytes += e.bytes;
    const set = this.groupSet(e);
    if (set) {
      set.add(key);
      const limit = e.kind === 'whole' ? WHOLE_WINDOWS_KEPT : END_ENTRIES_KEPT;
      for (const k of set) {
        if (set.size <= limit) break;
        this.drop(k, this.entries.get(k)!);
      }
    }
    this.evict();
  }

  /** Counts `delta` more bytes for a kept entry (a new text hung on it), then evicts. */
  private grow(e: Entry, delta: number): void {
    e.bytes += delta;
    this.bytes += delta;
    this.evict();
  }

  private evict(): void {
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.drop(k, e);
    }
  }

  /** The whole buckets of [a, b) (both multiples of the step). */
  whole(uuid: string, a: number, b: number, stepMs: number, source: HistorySource): WholeEntry {
    this.subscribe();
    const key = `w|${uuid}|${a}|${b}|${stepMs}|${source}`;
    const hit = this.get(key);
    if (hit) {
      this.hits++;
      return hit as WholeEntry;
    }
    this.misses++;
    const series = seriesText(this.store.history(uuid, a, b, stepMs, source));
    const e: WholeEntry = { kind: 'whole', key, group: `${uuid}|${stepMs}|${source}`, uuid, end: b, series, assembled: null, bytes: seriesBytes(series) };
    this.put(key, e);
    return e;
  }

  /** The head [from, a) (a the first boundary after `from`) and the key its text is kept under. */
  head(uuid: string, from: number, a: number, stepMs: number, source: HistorySource): { key: string; series: SeriesText[] } {
    this.subscribe();
    const bucketKey = `h|${uuid}|${a}|${stepMs}|${source}`;
    let e = this.get(bucketKey) as HeadEntry | undefined;
    if (!e) {
      const times = this.store.sampleTimes(uuid, a - stepMs, a);
      e = { kind: 'head', uuid, group: `${uuid}|${stepMs}|${source}`, times, texts: new Map(), bytes: 64 + times.length * 8 };
      this.put(bucketKey, e);
    }
    // The first row time at or after `from` (binary search; a.length when none).
    let lo = 0;
    let hi = e.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (e.times[mid]! < from) lo = mid + 1;
      else hi = mid;
    }
    const key = `${lo < e.times.length ? e.times[lo] : 'none'}|${Math.ceil(from / 60_000)}`;
    let series = e.texts.get(key);
    if (series) {
      this.endHits++;
      return { key, series };
    }
    this.endMisses++;
    series = seriesText(this.store.history(uuid, from, a, stepMs, source));
    if (this.entries.get(bucketKey) === e) {
      let delta = seriesBytes(series);
      if (e.texts.size >= HEAD_TEXTS_KEPT) {
        const [oldest, old] = e.texts.entries().next().value!;
        e.texts.delete(oldest);
        delta -= seriesBytes(old);
      }
      e.texts.set(key, series);
      this.grow(e, delta);
    }
    return { key, series };
  }

  /** The tail [b, to) (b the last boundary before `to`) and its key; kept only when `to` is past the VM's newest row. */
  tail(uuid: string, b: number, to: number, stepMs: number, source: HistorySource): { key: string | null; series: SeriesText[] } {
    this.subscribe();
    const newestKey = `n|${uuid}`;
    let newest = this.get(newestKey) as EndEntry | undefined;
    if (!newest) {
      newest = { kind: 'newest', uuid, group: null, series: [], newestT: this.store.newestSampleT(uuid) ?? -Infinity, bytes: 64 };
      this.put(newestKey, newest);
    }
    if (to <= newest.newestT) {
      this.endMisses++;
      return { key: null, series: seriesText(this.store.history(uuid, b, to, stepMs, source)) };
    }
    const minute = Math.floor(to / 60_000);
    const key = `t|${uuid}|${b}|${stepMs}|${source}|${minute}`;
    const hit = this.get(key) as EndEntry | undefined;
    if (hit) {
      this.endHits++;
      return { key: String(minute), series: hit.series };
    }
    this.endMisses++;
    const series = seriesText(this.store.history(uuid, b, to, stepMs, source));
    this.put(key, { kind: 'tail', uuid, group: `${uuid}|${stepMs}|${source}`, series, newestT: newest.newestT, bytes: seriesBytes(series) });
    return { key: String(minute), series };
  }

  /** Keeps `body` as the series text of `whole` for `key` (replacing the one kept before). */
  keepAssembled(whole: WholeEntry, key: string, body: Buffer): void {
    const before = assembledBytes(whole);
    whole.assembled = { key, body, gz: null };
    // Counted only while the entry itself is kept (an eviction may have dropped it meanwhile).
    if (this.entries.get(whole.key) === whole) this.grow(whole, body.length - before);
  }

  /** The kept deflate of `whole`'s assembled body, made on first use. */
  deflatedAssembled(whole: WholeEntry): DeflatedPart {
    const a = whole.assembled!;
    if (!a.gz) {
      a.gz = deflatePart(a.body);
      if (this.entries.get(whole.key) === whole) this.grow(whole, a.gz.deflated.length);
    }
    return a.gz;
  }

  private invalidate(uuid: string | null, earliestT: number): void {
    if (uuid === null) {
      this.entries.clear();
      this.wholeKeys.clear();
      this.endKeys.clear();
      this.bytes = 0;
      return;
    }
    for (const [k, e] of this.entries) {
      if (e.uuid !== uuid) continue;
      if (e.kind !== 'whole' || earliestT < e.end) {
        this.drop(k, e);
      } else if (e.assembled) {
        // Built with the VM's old ends.
        const n = assembledBytes(e);
        this.bytes -= n;
        e.bytes -= n;
        e.assembled = null;
      }
    }
  }
}

const COMMA = Buffer.from(',');
const SERIES_END = Buffer.from(']}');

/**
 * The series text after `"series":[` through the closing `]}` of the answer: the parts' series
 * merged in the store's order (guest node, host node, host tier), each part's buckets in time order.
 */
function seriesBody(parts: SeriesText[][]): Buffer {
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
  const out: Buffer[] = [];
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

/** The answer's request-specific start, its series body, and the cache entry keeping that body (null when not kept). */
interface HistoryAnswer {
  start: Buffer;
  body: Buffer;
  kept: WholeEntry | null;
}

function historyAnswer(store: Store, cache: HistoryTextCache, uuid: string, from: number, to: number, stepMs: number, source: HistorySource): HistoryAnswer {
  checkHistoryRange(from, to, stepMs);
  const start = Buffer.from(`{"uuid":${JSON.stringify(uuid)},"from":"${iso(from)}","to":"${iso(to)}","stepMs":${stepMs},"series":[`);
  const a = Math.ceil(from / stepMs) * stepMs;
  const b = Math.floor(to / stepMs) * stepMs;
  // source=raw is the check of the rollups: always read fresh, never from kept text.
  if (a >= b || source === 'raw') {
    // (Or the whole range lies within one or two buckets: nothing worth keeping.)
    return { start, body: seriesBody([seriesText(store.history(uuid, from, to, stepMs, source))]), kept: null };
  }
  const whole = cache.whole(uuid, a, b, stepMs, source);
  const head = from < a ? cache.head(uuid, from, a, stepMs, source) : { key: '', series: [] };
  const tail = b < to ? cache.tail(uuid, b, to, stepMs, source) : { key: '', series: [] };
  const key = tail.key === null ? null : `${head.key}/${tail.key}`;
  if (key !== null && whole.assembled?.key === key) return { start, body: whole.assembled.body, kept: whole };
  const body = seriesBody([head.series, whole.series, tail.series]);
  if (key === null) return { start, body, kept: null };
  cache.keepAssembled(whole, key, body);
  return { start, body, kept: whole };
}

/**
 * The history answer as JSON in two pieces to be sent one after the other: what fastify would
 * serialize from { uuid, from, to, stepMs, series: store.history(uuid, from, to, stepMs, source) }
 * with ISO bucket starts. The second piece is usually kept text, shared between requests: never
 * write into it.
 */
export function historyJsonParts(store: Store, cache: HistoryTextCache, uuid: string, from: number, to: number, stepMs: number, source: HistorySource): [Buffer, Buffer] {
  const r = historyAnswer(store, cache, uuid, from, to, stepMs, source);
  return [r.start, r.body];
}

/**
 * The same answer as one gzip member, in pieces to be written one after the other: the kept body is
 * deflated once and shared (src/api/gzip.ts); a body that is not kept is deflated for this answer.
 */
export function historyGzipParts(store: Store, cache: HistoryTextCache, uuid: string, from: number, to: number, stepMs: number, source: HistorySource): Buffer[] {
  const r = historyAnswer(store, cache, uuid, from, to, stepMs, source);
  const kept = r.kept?.assembled?.body === r.body ? cache.deflatedAssembled(r.kept) : deflatePart(r.body);
  return gzipParts(r.start, kept);
}

/** historyJsonParts as one buffer. */
export function historyJson(store: Store, cache: HistoryTextCache, uuid: string, from: number, to: number, stepMs: number, source: HistorySource): Buffer {
  return Buffer.concat(historyJsonParts(store, cache, uuid, from, to, stepMs, source));
}
