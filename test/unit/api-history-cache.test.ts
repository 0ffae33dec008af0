// The history route answers from cached whole buckets plus freshly read ragged ends
// (src/api/history-text.ts). These tests hold it to the store's own answer for the whole range,
// byte for byte, across random ranges, steps, retention and newly ingested rounds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { END_ENTRIES_KEPT, HistoryTextCache, WHOLE_WINDOWS_KEPT, historyJson } from '../../src/api/history-text.js';
import { buildApi } from '../../src/api/server.js';
import { Store, type HistorySource, type HotnessSample } from '../../src/store/store.js';
import { InMemoryInventory } from '../helpers/memory-inventory.js';
import { rng } from '../helpers/rng.js';

const TOKEN = 'test-token-0123456789abcdef';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const A = '21111111-2222-4333-8444-555555555555';
const B = '31111111-2222-4333-8444-555555555555';
const NOW = Date.UTC(2026, 10, 26, 12, 0, 0);
const HOUR = 3600_000;


/** `fractionalScanMs`: scan times as arbitrary doubles, whose sums depend on the order they are added in. */
function rounds(uuid: string, from: number, to: number, rand: () => number, fractionalScanMs = false): HotnessSample[] {
  const out: HotnessSample[] = [];
  for (let t = from; t < to; t += 10_000) {
    if (rand() < 0.1) continue; // a missed round
    for (const [g, h, tier] of [[0, 0, 'top'], [0, 1, 'slow'], [1, 0, 'top'], [1, 1, 'slow']] as const) {
      if (g === 1 && rand() < 0.2) continue;
      out.push({
        t: t + Math.floor(rand() * 3), vmUuid: uuid, guestNode: g, hostNode: h, hostTier: tier,
        hotBytes: Math.floor(rand() * 1e9), warmBytes: Math.floor(rand() * 1e8), coldBytes: Math.floor(rand() * 1e9), scannedBytes: 2 ** 31,
        scanMs: fractionalScanMs ? rand() * 200 : Math.floor(rand() * 200) / 8, movedBytes: rand() < 0.3 ? 4096 * Math.floor(rand() * 500) : 0, failures: rand() < 0.05 ? 1 : 0,
      });
    }
  }
  return out;
}

async function setup(t: { after: (fn: () => unknown) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-history-cache-'));
  const store = Store.open(join(dir, 'h.db'));
  const inv = new InMemoryInventory();
  const app = await buildApi({ inventory: inv, store, readHost: () => { throw new Error('not used'); }, token: TOKEN, now: () => NOW });
  store.recordVmSeen(A, 'vm-a', NOW - 8 * HOUR);
  store.recordVmSeen(B, 'vm-b', NOW - 8 * HOUR);
  t.after(async () => {
    await app.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { app, store };
}

/** The answer computed the plain way: the store over the whole range, serialized by JSON.stringify. */
function expected(store: Store, uuid: string, from: number, to: number, stepMs: number, source: HistorySource): string {
  return JSON.stringify({
    uuid,
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    stepMs,
    series: store.history(uuid, from, to, stepMs, source).map((s) => ({
      guestNode: s.guestNode,
      hostNode: s.hostNode,
      hostTier: s.hostTier,
      buckets: s.buckets.map((b) => ({
        start: new Date(b.start).toISOString(),
        hotBytes: b.hotBytes, warmBytes: b.warmBytes, coldBytes: b.coldBytes, scannedBytes: b.scannedBytes,
        scanMs: b.scanMs, movedBytes: b.movedBytes, failures: b.failures, samples: b.samples,
      })),
    })),
  });
}

async function get(app: Awaited<ReturnType<typeof setup>>['app'], uuid: string, from: number, to: number, step: number, source: HistorySource) {
  const url = `/v1/vms/${uuid}/history?from=${from}&to=${to}&step=${step}${source === 'raw' ? '&source=raw' : ''}`;
  const r = await app.inject({ url, headers: AUTH });
  assert.equal(r.statusCode, 200, r.body);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  assert.equal(r.headers['content-encoding'], undefined);
  assert.equal(r.headers.vary, 'Accept-Encoding');
  // The same request from a client that takes gzip (a control plane's default): one gzip member
  // built from a stored block and the kept deflated body must decode to the same bytes, however
  // the cache got there (fresh, kept, invalidated by a round).
  const z = await app.inject({ url, headers: { ...AUTH, 'accept-encoding': 'br;q=1.0, gzip;q=0.8, *;q=0.1' } });
  assert.equal(z.statusCode, 200);
  assert.equal(z.headers['content-encoding'], 'gzip');
  assert.equal(Number(z.headers['content-length']), z.rawPayload.length);
  assert.ok(z.rawPayload.length < Math.max(600, r.rawPayload.length / 2), `gzip ${z.rawPayload.length} bytes for ${r.rawPayload.length} plain`);
  assert.equal(gunzipSync(z.rawPayload).toString(), r.body);
  return r.body;
}

test('history: the cached answer equals the store\'s answer for the whole range, byte for byte (random ranges, steps, retention)', async (t) => {
  const { app, store } = await setup(t);
  const rand = rng(17);
  store.insertSamples(rounds(A, NOW - 7 * HOUR, NOW, rand));
  const steps = [10_000, 60_000, 300_000, 420_000, 1_800_000, HOUR];
  const check = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const step = steps[Math.floor(rand() * steps.length)]!;
      const from = NOW - 7 * HOUR - 5 * 60_000 + Math.floor(rand() * 6 * HOUR);
      const to = rand() < 0.3 ? NOW + Math.floor(rand() * 60_000) : from + 1 + Math.floor(rand() * (NOW - from));
      const source: HistorySource = rand() < 0.2 ? 'raw' : 'auto';
      const want = expected(store, A, from, to, step, source);
      // Twice: the second answer comes from the cache where the range has whole buckets.
      assert.equal(await get(app, A, from, to, step, source), want, `from=${from} to=${to} step=${step} ${source}`);
      assert.equal(await get(app, A, from, to, step, source), want, `again: from=${from} to=${to} step=${step} ${source}`);
    }
  };
  await check(60);
  // A poller's pattern: the last 3 h at 5 m, the window sliding by a few seconds per poll.
  for (let now = NOW - 20 * 60_000; now < NOW; now += 7_000) {
    assert.equal(await get(app, A, now - 3 * HOUR, now, 300_000, 'auto'), expected(store, A, now - 3 * HOUR, now, 300_000, 'auto'));
  }
  // Retention folds raw rows older than 2 h and drops their 1-minute cells: every cached answer goes.
  // (The VM is still seen: retention drops VMs not seen for maxAge.)
  store.recordVmSeen(A, 'vm-a', NOW);
  store.applyRetention(NOW, { fullResolutionMs: 2 * HOUR, coarseStepMs: 60_000, maxAgeMs: 6 * HOUR });
  await check(40);
});

test('history: a round ingested for the VM changes the next answer (cached whole buckets are dropped)', async (t) => {
  const { app, store } = await setup(t);
  const rand = rng(5);
  store.insertSamples(rounds(A, NOW - 3 * HOUR, NOW - HOUR, rand));
  store.insertSamples(rounds(B, NOW - 3 * HOUR, NOW - HOUR, rand));
  const from = NOW - 3 * HOUR + 12_345;
  const to = NOW - 30 * 60_000 + 999;
  const first = await get(app, A, from, to, 300_000, 'auto');
  assert.equal(await get(app, A, from, to, 300_000, 'auto'), first);
  // Another VM's round leaves A's answer as it was.
  store.insertSamples(rounds(B, NOW - 2 * HOUR, NOW - 2 * HOUR + 10_000, rand));
  assert.equal(await get(app, A, from, to, 300_000, 'auto'), first);
  // A round of A inside the cached whole buckets (a late or backfilled round): the answer changes.
  store.insertSamples(rounds(A, NOW - 2 * HOUR + 3_000, NOW - 2 * HOUR + 13_000, () => 0.5));
  const second = await get(app, A, from, to, 300_000, 'auto');
  assert.notEqual(second, first);
  assert.equal(second, expected(store, A, from, to, 300_000, 'auto'));
  // The engine's case: the next round, after the newest, inside the range.
  store.insertSamples(rounds(A, NOW - HOUR, NOW - HOUR + 10_000, () => 0.5));
  const third = await get(app, A, from, to, 300_000, 'auto');
  assert.notEqual(third, second);
  assert.equal(third, expected(store, A, from, to, 300_000, 'auto'));
});

/** Counts the store's history reads (the real store's methods, wrapped). */
function countReads(store: Store): { n: number } {
  const count = { n: 0 };
  for (const name of ['history', 'sampleTimes', 'newestSampleT'] as const) {
    const real = store[name].bind(store) as (...args: unknown[]) => unknown;
    (store as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
      count.n++;
      return real(...args);
    };
  }
  return count;
}

test('history: a poller past the newest round reads nothing from SQLite between rounds, and every answer still equals the store\'s', async (t) => {
  const { app, store } = await setup(t);
  const rand = rng(23);
  const newest = NOW - 60_000;
  // Fractional scan times: the head's bucket mean then depends on which rows come from raw rows
  // and which from 1-minute cells (floating-point sums in another order), so a head kept under
  // a key that does not fix the store's split would show in the bytes.
  // Rounds 3 s past each 10 s, so that `from` crosses a minute boundary between two rows.
  store.insertSamples(rounds(A, NOW - 5 * HOUR + 3_000, newest, rand, true));
  store.insertSamples(rounds(B, NOW - 5 * HOUR + 3_000, newest, rand, true));
  const reads = countReads(store);
  // The window slides by 1.7 s per poll over 3 minutes: `from` passes row times and minute
  // boundaries, `to` passes minute boundaries and one 5-minute boundary, always past the newest row.
  let cachedPolls = 0;
  for (let now = NOW - 100_000; now < NOW + 80_000; now += 1_700) {
    const before = reads.n;
    const body = await get(app, A, now - 3 * HOUR, now, 300_000, 'auto');
    const after = reads.n;
    assert.equal(body, expected(store, A, now - 3 * HOUR, now, 300_000, 'auto'), `now=${now}`);
    if (after === before) cachedPolls++;
  }
  // 106 polls; the ends change key only when `from` passes a row (every ~10 s) or a minute boundary.
  assert.ok(cachedPolls >= 60, `only ${cachedPolls} polls answered without a store read`);
  // The same poll twice: the second reads nothing.
  await get(app, A, NOW - 3 * HOUR + 5, NOW + 5, 300_000, 'auto');
  const before = reads.n;
  await get(app, A, NOW - 3 * HOUR + 6, NOW + 6, 300_000, 'auto');
  assert.equal(reads.n, before);
});

test('history: the next round of the VM, and a late row in the head\'s bucket, change the next poll\'s answer', async (t) => {
  const { app, store } = await setup(t);
  const rand = rng(29);
  const newest = NOW - 45_000;
  store.insertSamples(rounds(A, NOW - 4 * HOUR, newest, rand));
  const poll = (now: number) => get(app, A, now - 3 * HOUR, now, 300_000, 'auto');
  const want = (now: number) => expected(store, A, now - 3 * HOUR, now, 300_000, 'auto');
  const first = await poll(NOW);
  assert.equal(await poll(NOW + 1), first.replace(new Date(NOW).toISOString(), new Date(NOW + 1).toISOString()).replace(new Date(NOW - 3 * HOUR).toISOString(), new Date(NOW + 1 - 3 * HOUR).toISOString()));
  // The engine's next round, after the newest row and before `to`: the tail changes.
  store.insertSamples(rounds(A, newest + 5_000, newest + 15_000, () => 0.5));
  const second = await poll(NOW + 2);
  assert.equal(second, want(NOW + 2));
  assert.notEqual(second.slice(second.indexOf('"series"')), first.slice(first.indexOf('"series"')));
  // A late row inside the head's bucket (before A, after `from`): the head changes.
  const lateT = NOW - 3 * HOUR + 20_000;
  assert.ok(Math.ceil((NOW + 3 - 3 * HOUR) / 300_000) * 300_000 > lateT);
  const headBefore = await poll(NOW + 3);
  store.insertSamples([{ t: lateT, vmUuid: A, guestNode: 0, hostNode: 0, hostTier: 'top', hotBytes: 7, warmBytes: 7, coldBytes: 7, scannedBytes: 7, scanMs: 7, movedBytes: 7, failures: 7 }]);
  const headAfter = await poll(NOW + 3);
  assert.notEqual(headAfter, headBefore);
  assert.equal(headAfter, want(NOW + 3));
});

test('history: `to` at or before the newest row is answered fresh, not from a kept tail', async (t) => {
  const { app, store } = await setup(t);
  store.insertSamples(rounds(A, NOW - 2 * HOUR, NOW, rng(31)));
  // Rows come every 10 s up to NOW: each `to` below cuts a different set of rows out of the tail.
  for (let to = NOW - 200_000; to < NOW; to += 3_333) {
    assert.equal(await get(app, A, to - HOUR, to, 300_000, 'auto'), expected(store, A, to - HOUR, to, 300_000, 'auto'), `to=${to}`);
  }
});

test('history: everything kept stays within the cache\'s bytes, evicting the least recently used', async (t) => {
  const { store } = await setup(t);
  const rand = rng(37);
  store.insertSamples(rounds(A, NOW - 6 * HOUR, NOW - 30_000, rand));
  store.insertSamples(rounds(B, NOW - 6 * HOUR, NOW - 30_000, rand));
  const one = historyJson(store, new HistoryTextCache(store), A, NOW - 6 * HOUR + 1, NOW, 60_000, 'auto').length;
  // Room for about three answers' worth of kept text (whole buckets and built series text count both).
  const cache = new HistoryTextCache(store, 3 * one);
  let maxSeen = 0;
  for (let i = 0; i < 120; i++) {
    const uuid = i % 2 ? A : B;
    // A few windows, each asked for again now and then (a hit moves it to the back).
    const now = NOW - 7_777 - Math.floor(rand() * 8) * 420_000 + Math.floor(rand() * 20);
    const span = [HOUR, 2 * HOUR, 4 * HOUR][Math.floor(rand() * 3)]!;
    const got = historyJson(store, cache, uuid, now - span, now, 60_000, 'auto').toString();
    assert.equal(got, expected(store, uuid, now - span, now, 60_000, 'auto'));
    maxSeen = Math.max(maxSeen, cache.stats().bytes);
    assert.ok(cache.stats().bytes <= cache.maxBytes, `kept ${cache.stats().bytes} > ${cache.maxBytes} bytes`);
  }
  assert.ok(maxSeen > cache.maxBytes / 2, `the cache never filled (max ${maxSeen} of ${cache.maxBytes} bytes): the bound was not exercised`);
  assert.ok(cache.stats().hits > 0 && cache.stats().misses > 0);
});

test('history: HEAD has the GET\'s length and no body; the request counter counts the route', async (t) => {
  const { app, store } = await setup(t);
  store.insertSamples(rounds(A, NOW - 2 * HOUR, NOW - 20_000, rng(41)));
  const url = `/v1/vms/${A}/history?from=${NOW - HOUR}&to=${NOW}&step=5m`;
  const got = await app.inject({ url, headers: AUTH });
  const head = await app.inject({ method: 'HEAD', url, headers: AUTH });
  assert.equal(head.statusCode, 200);
  assert.equal(head.body, '');
  assert.equal(Number(head.headers['content-length']), Buffer.byteLength(got.body));
  assert.equal(Number(got.headers['content-length']), Buffer.byteLength(got.body));
  const metrics = (await app.inject({ url: '/metrics' })).body;
  assert.match(metrics, /vmtier_http_requests_total\{method="GET",route="\/v1\/vms\/:uuid\/history",status="200"\} 1\b/);
});

test('history: a poller whose window moves on keeps at most 4 whole windows and 4 heads/tails per VM, step and source', async (t) => {
  const { store } = await setup(t);
  const rand = rng(41);
  store.insertSamples(rounds(A, NOW - 3 * HOUR, NOW - 30_000, rand));
  // A byte cap far above what is kept: only the per-group bound can hold the entries down.
  const cache = new HistoryTextCache(store, 1 << 30);
  let now = NOW;
  const check = () => {
    for (const g of cache.groupCounts()) {
      assert.ok(g.whole <= WHOLE_WINDOWS_KEPT, `${g.whole} whole windows kept for ${g.group}`);
      assert.ok(g.ends <= END_ENTRIES_KEPT, `${g.ends} heads/tails kept for ${g.group}`);
    }
  };
  // Rounds keep coming, each after the window's end (so no write drops a window left behind),
  // and the poller asks for the last hour at 1-minute steps, once a minute.
  for (let i = 0; i < 30; i++) {
    now += 60_000;
    store.insertSamples(rounds(A, now - 60_000, now - 5_000, rand));
    for (const step of [60_000, 300_000]) {
      const got = historyJson(store, cache, A, now - HOUR + 123, now, step, 'auto').toString();
      assert.equal(got, expected(store, A, now - HOUR + 123, now, step, 'auto'));
    }
    check();
  }
  // No more rounds: a poller past the newest row, whose head and tail keys move every minute.
  for (let i = 0; i < 30; i++) {
    now += 60_000;
    const got = historyJson(store, cache, A, now - HOUR + 4_567, now, 60_000, 'auto').toString();
    assert.equal(got, expected(store, A, now - HOUR + 4_567, now, 60_000, 'auto'));
    check();
  }
  // One newest-time entry plus at most 4 + 4 per group (two steps).
  assert.ok(cache.stats().entries <= 1 + 2 * (WHOLE_WINDOWS_KEPT + END_ENTRIES_KEPT), `${cache.stats().entries} entries kept`);
  assert.ok(cache.stats().hits + cache.stats().endHits > 0, 'nothing was ever answered from kept text');
});
