/**
 * The tiering engine on this machine's real parts: real libvirtd with real TCG domains (memfd, two
 * guest nodes), the real LibvirtInventory, a real SQLite file, the real API over real HTTP, and
 * move_pages on the real QEMU process.
 *
 * Stand-ins, named as such: this machine can run neither kernel tracker on a QEMU process (the
 * vmtier_idle module cannot be loaded; DAMON has no vaddr and a platform kdamond must not be
 * disturbed), so the access counts come from the REPLAY tracker, fed a trace laid over the VM's real
 * HVA ranges whose hot set is a known list of really resident guest pages. And this machine has one
 * NUMA node, so the engine is told to demote to node 0 (`targetNodes.slow = 0`): the moves are real
 * move_pages calls on QEMU's pages whose per-page outcome is "already there" (= moved).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { buildApi } from '../../src/api/server.js';
import type { AnyFastify } from '../../src/api/context.js';
import { Engine } from '../../src/daemon/engine.js';
import { PageMap } from '../../src/daemon/page-map.js';
import { readHostTopology } from '../../src/host/topology.js';
import { queryPageNodes } from '../../src/sys/syscalls.js';
import type { Trace } from '../../src/scan/trace.js';
import { Store } from '../../src/store/store.js';
import { POLICY_NS } from '../../src/vm/vm-metadata.js';
import { createLibvirtInventory, type LibvirtInventory } from '../../src/vm/libvirt-inventory.js';
import { destroyDomains, fixtureXml, startDomain, type TestDomain } from '../helpers/domains.js';
import { apiClient, until } from '../helpers/api-client.js';

const PREFIX = 'vmtier-test-h-';
const TOKEN = 'engine-test-token-0123456789';
const PAGE = 4096;
const dir = mkdtempSync(join(tmpdir(), 'vmtier-engine-'));

let inventory: LibvirtInventory;
let store: Store;
let app: AnyFastify;
let url: string;
const logLines: string[] = [];
const logger = pino({ level: 'debug' }, { write: (s: string) => void logLines.push(s) });
const engines: Engine[] = [];
const domains: TestDomain[] = [];

const http = apiClient(() => url, TOKEN);

/** Pages (flat numbering of the VM's PageMap) that are resident in QEMU right now. */
async function residentPages(uuid: string): Promise<{ pm: PageMap; resident: number[] }> {
  const map = await inventory.numaMap(uuid);
  const pm = PageMap.fromNumaMap(map);
  const resident: number[] = [];
  for (const s of pm.segments) {
    const addrs = Array.from({ length: s.pages }, (_, i) => s.start + i * PAGE);
    const st = queryPageNodes(map.domain.pid, addrs);
    st.forEach((v, i) => v >= 0 && resident.push(s.firstPage + i));
  }
  return { pm, resident };
}

/** A one-epoch trace (replayed in a loop): exactly `hot` accessed in every scan, every page known. */
function hotTrace(pages: number, hot: number[]): Trace {
  const known = new Uint8Array(pages).fill(1);
  return { epochs: 1, pages, accessed: [Uint32Array.from([...hot].sort((a, b) => a - b))], known, vms: [] };
}

function newEngine(opts: Partial<ConstructorParameters<typeof Engine>[0]> & { onlyName: string }): Engine {
  const e = new Engine({
    inventory,
    store,
    logger,
    registry: app.vmtier.metrics,
    readHost: () => readHostTopology(),
    manage: (d) => d.name === opts.onlyName,
    resyncMs: 500,
    idleMs: 200,
    backoff: { baseMs: 200, maxMs: 2000 },
    ...opts,
  });
  engines.push(e);
  app.vmtier.engine = e;
  return e;
}

before(async () => {
  await destroyDomains(PREFIX);
  store = Store.open(join(dir, 'vmtier.db'));
  inventory = createLibvirtInventory({ uri: 'qemu:///system', logger });
  app = await buildApi({ inventory, store, token: TOKEN, logger, readHost: () => readHostTopology() });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address() as { port: number };
  url = `http://127.0.0.1:${addr.port}`;
});

after(async () => {
  for (const e of engines) await e.stop();
  for (const d of domains) await d.destroy();
  await destroyDomains(PREFIX);
  await app?.close();
  await inventory?.close();
  store?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('observe → tier → observe on a real TCG domain with the replay tracker; history and metrics over HTTP', async () => {
  const d = await startDomain('two-cells-memfd.xml', PREFIX);
  domains.push(d);
  // Let SeaBIOS settle so the resident set we pick stays resident.
  await new Promise((r) => setTimeout(r, 1500));
  const { pm, resident } = await residentPages(d.uuid);
  assert.ok(resident.length >= 64, `guest has resident pages (${resident.length})`);
  assert.deepEqual(pm.guestNodes(), [0, 1]);
  const hot = resident.filter((_, i) => i % 2 === 0).slice(0, 256);
  const hotBytes = hot.length * PAGE;

  const observe = { mode: 'observe', tracker: 'auto', scan: { intervalMs: 50, scansPerRound: 2, autoTune: false } };
  assert.equal((await http('PUT', `/v1/vms/${d.uuid}/policy`, observe)).status, 200);
  const engine = newEngine({
    onlyName: d.name,
    tracker: 'replay',
    trackerOptions: { replay: { trace: hotTrace(pm.totalPages, hot), loop: true, paced: true } },
    targetNodes: { slow: 0 },
  });
  await engine.start();
  const t0 = Date.now();

  // observe: scanned and recorded, never moved
  const obs = await until(15_000, 'three observe rounds', async () => {
    const r = await http('GET', `/v1/vms/${d.uuid}/engine`);
    return r.status === 200 && r.body.rounds >= 3 ? r.body : null;
  });
  assert.deepEqual(obs.tracker, { name: 'replay', available: true, error: null });
  assert.equal(obs.mode, 'observe');
  assert.equal(obs.lastRound.scans, 2);
  // The policy's reason for the next plan reaches the API; a steady hot set has no recurrence.
  assert.ok(['shift', 'too-hot', 'stable', 'hold', 'fixed'].includes(obs.lastRound.planReason), `planReason ${obs.lastRound.planReason}`);
  assert.equal(obs.lastRound.recurrencePeriodRounds, 0);
  // Observe mode moves nothing: decided alone, within the share it would have.
  assert.equal(obs.lastRound.decidedWithVms, 1);
  assert.ok(obs.lastRound.shareBytes > 0, `share ${obs.lastRound.shareBytes}`);
  assert.equal(obs.lastRound.hotBytes, hotBytes, 'exactly the replayed hot set is hot');
  assert.equal(obs.lastRound.warmBytes, 0);
  assert.equal(obs.lastRound.coldBytes, obs.lastRound.residentBytes - hotBytes, 'every other resident page is cold');
  assert.equal(obs.lastRound.trackedBytes, pm.totalPages * PAGE);
  assert.equal(obs.totals.demote.requested + obs.totals.promote.requested, 0, 'observe never moves');
  assert.equal(store.migrations(d.uuid, 0, Date.now() + 1).length, 0);

  // tier: DRAM capped at the hot set, so the cold resident pages are demoted (to node 0: already there)
  const tier = {
    ...observe,
    mode: 'tier',
    thresholds: { coldConfirmRounds: 1, hotConfirmRounds: 1 },
    dram: { maxBytes: hotBytes },
    migration: { maxMBps: 1000 },
  };
  assert.equal((await http('PUT', `/v1/vms/${d.uuid}/policy`, tier)).status, 200);
  const moved = await until(15_000, 'a tier round that moved pages', async () => {
    const r = await http('GET', `/v1/vms/${d.uuid}/engine`);
    return r.body.mode === 'tier' && r.body.totals.demote.requested > 0 ? r.body : null;
  });
  const dem = moved.totals.demote;
  const classSum = Object.values(dem.byClass as Record<string, number>).reduce((a, b) => a + b, 0);
  assert.equal(classSum, dem.requested, 'every page has an outcome class');
  assert.ok(dem.byClass.moved > 0, 'pages reported moved (already on node 0)');
  assert.equal(dem.byClass.noMemory, 0);
  assert.equal(moved.totals.promote.requested, 0, 'the hot set is in DRAM already: nothing to promote');
  const log = store.migrations(d.uuid, 0, Date.now() + 1);
  assert.ok(log.length > 0);
  assert.ok(log.every((e) => e.direction === 'demote' && e.toNode === 0 && e.moved + (e.busy ?? 0) + (e.notPresent ?? 0) + (e.noMemory ?? 0) + (e.fault ?? 0) + (e.other ?? 0) === e.pages));
  assert.equal(log.reduce((s, e) => s + e.moved, 0) >= dem.byClass.moved, true);
  // The hot set was never chosen for demotion: every logged page count fits in the cold set.
  assert.ok(moved.lastRound.decided.demotePages <= moved.lastRound.residentBytes / PAGE - hot.length);

  // tier → observe: the round in flight when the PUT lands may still move; none after it.
  const seen = new Map<number, any>();
  const poll = setInterval(() => {
    const s = engine.vm(d.uuid);
    if (s?.lastRound) seen.set(s.lastRound.round, s.lastRound);
  }, 10);
  assert.equal((await http('PUT', `/v1/vms/${d.uuid}/policy`, observe)).status, 200);
  // Counted from the PUT's answer: rounds may complete while the PUT writes the domain metadata.
  const r0 = engine.vm(d.uuid)!.rounds;
  await until(15_000, 'four rounds after the switch', () => engine.vm(d.uuid)!.rounds >= r0 + 4);
  clearInterval(poll);
  const after = [...seen.values()].filter((r) => r.round >= r0 + 2);
  assert.ok(after.length >= 2, `rounds after the switch observed (${after.map((r) => r.round)})`);
  for (const r of after) {
    assert.equal(r.mode, 'observe', `round ${r.round} ran in observe mode`);
    assert.equal(r.moves.demote.requested + r.moves.promote.requested, 0, `round ${r.round} moved nothing`);
  }
  const logAfter = store.migrations(d.uuid, 0, Date.now() + 1);
  await until(5000, 'one more round', () => engine.vm(d.uuid)!.rounds >= r0 + 5);
  assert.equal(store.migrations(d.uuid, 0, Date.now() + 1).length, logAfter.length, 'the migration log stopped growing');

  // History over HTTP: per guest node x host node, hot bytes, scans and moved bytes of the rounds.
  const h = await http('GET', `/v1/vms/${d.uuid}/history?from=${t0}&to=${Date.now() + 1}&step=600000`);
  assert.equal(h.status, 200);
  const series = h.body.series as Array<{ guestNode: number; hostNode: number; hostTier: string; buckets: any[] }>;
  assert.ok(series.length >= 1);
  assert.ok(series.every((s) => s.hostNode === 0 && s.hostTier === 'top'));
  const totalMoved = series.reduce((s, x) => s + x.buckets.reduce((t: number, b: any) => t + b.movedBytes, 0), 0);
  assert.ok(totalMoved > 0);
  assert.equal(totalMoved, store.migrations(d.uuid, t0, Date.now() + 1).reduce((s, e) => s + e.moved, 0) * PAGE, 'history moved bytes = migration log');
  const samples = series.reduce((s, x) => s + x.buckets.reduce((t: number, b: any) => t + b.samples, 0), 0);
  assert.ok(samples >= engine.vm(d.uuid)!.rounds - 1, 'one sample row per round and cell');
  assert.ok(series.some((s) => s.buckets.some((b) => b.hotBytes > 0 && b.scannedBytes > 0)));

  // Metrics over HTTP, labelled by uuid and name.
  const m = await fetch(`${url}/metrics`).then((r) => r.text());
  const rounds = new RegExp(`vmtier_engine_rounds_total\\{vm_uuid="${d.uuid}",vm_name="${d.name}",mode="tier"\\} (\\d+)`).exec(m);
  assert.ok(rounds && Number(rounds[1]) >= 1, 'tier rounds counted');
  const movedPages = new RegExp(`vmtier_engine_move_pages_total\\{vm_uuid="${d.uuid}",vm_name="${d.name}",direction="demote",status="moved"\\} (\\d+)`).exec(m);
  assert.equal(Number(movedPages?.[1]), engine.vm(d.uuid)!.totals.demote.byClass.moved);
  assert.match(m, new RegExp(`vmtier_engine_tracker_up\\{vm_uuid="${d.uuid}",vm_name="${d.name}",tracker="replay"\\} 1`));
  assert.match(m, new RegExp(`vmtier_engine_vm_bytes\\{vm_uuid="${d.uuid}",vm_name="${d.name}",class="hot"\\} ${hotBytes}`));
  assert.match(m, new RegExp(`vmtier_vm_hot_bytes\\{vm_uuid="${d.uuid}",vm_name="${d.name}",guest_node="\\d",host_node="0",host_tier="top"\\}`));

  await engine.stop();
  assert.equal(engine.vm(d.uuid), null);
  assert.equal(logLines.filter((l) => /"level":(50|60)/.test(l)).length, 0, 'no error logged');
});

test('a tracker this machine cannot run (kmod: no /dev/vmtier_idle) is reported unavailable; placement is still recorded', async () => {
  const d = domains[0]!;
  await http('PUT', `/v1/vms/${d.uuid}/policy`, { mode: 'observe', tracker: 'kmod', scan: { intervalMs: 50, scansPerRound: 2, autoTune: false } });
  const engine = newEngine({ onlyName: d.name, trackerOptions: { kmodDevice: join(dir, 'no-such-vmtier_idle') } });
  await engine.start();
  const s = await until(10_000, 'three rounds without a tracker', async () => {
    const r = await http('GET', `/v1/vms/${d.uuid}/engine`);
    return r.status === 200 && r.body.rounds >= 3 ? r.body : null;
  });
  assert.equal(s.tracker.name, 'kmod');
  assert.equal(s.tracker.available, false);
  assert.equal(s.tracker.error.code, 'TRACKER_UNAVAILABLE');
  assert.equal(s.state, 'running', 'the loop stays alive');
  assert.equal(s.failures, 0, 'an unavailable tracker is not a failed round');
  assert.equal(s.lastRound.scans, 0);
  assert.ok(s.lastRound.residentBytes > 0, 'placement is still observed');
  assert.equal(s.lastRound.hotBytes, 0);
  const g = await http('GET', '/v1/engine');
  assert.equal(g.status, 200);
  assert.ok(g.body.vms.some((v: any) => v.uuid === d.uuid && v.tracker.available === false));
  assert.ok('numaBalancing' in g.body.kernel);
  const m = await fetch(`${url}/metrics`).then((r) => r.text());
  assert.match(m, new RegExp(`vmtier_engine_tracker_up\\{vm_uuid="${d.uuid}",vm_name="${d.name}",tracker="kmod"\\} 0`));
  assert.ok(logLines.some((l) => l.includes('tracker unavailable: observing placement only') && l.includes(d.uuid)));
  // Placement-only rounds still write history rows (scanned 0).
  const h = store.history(d.uuid, Date.now() - 60_000, Date.now() + 1, 60_000);
  assert.ok(h.length > 0);
  await engine.stop();
});

test('madviseCold: cold pages that stay in DRAM are marked MADV_COLD with process_madvise on the real QEMU', async () => {
  const d = domains[0]!;
  const { pm, resident } = await residentPages(d.uuid);
  const hot = resident.slice(0, 32);
  // No DRAM ceiling: nothing is demoted, so every confirmed-cold resident page stays in DRAM.
  await http('PUT', `/v1/vms/${d.uuid}/policy`, {
    mode: 'tier',
    madviseCold: true,
    scan: { intervalMs: 50, scansPerRound: 2, autoTune: false },
    thresholds: { coldConfirmRounds: 1, hotConfirmRounds: 1 },
  });
  // Node 0 stands in for the slow tier (this host has one node), so a decided demotion is attempted.
  const engine = newEngine({ onlyName: d.name, tracker: 'replay', trackerOptions: { replay: { trace: hotTrace(pm.totalPages, hot), loop: true, paced: true } }, targetNodes: { slow: 0 } });
  await engine.start();
  const s = await until(15_000, 'a round that advised cold pages', () => {
    const v = engine.vm(d.uuid);
    return v?.lastRound && v.lastRound.madvisedColdBytes > 0 ? v : null;
  });
  const r = s.lastRound!;
  assert.equal(r.moves.demote.requested + r.moves.promote.requested, 0, 'nothing moved (no slow tier, no ceiling)');
  assert.ok(r.madvisedColdBytes <= r.coldBytes, `advised ${r.madvisedColdBytes} <= cold ${r.coldBytes}`);
  assert.ok(r.madvisedColdBytes >= r.coldBytes / 2, 'most cold resident pages were advised');
  assert.equal(r.hotBytes, hot.length * PAGE);
  const m = await fetch(`${url}/metrics`).then((x) => x.text());
  assert.match(m, new RegExp(`vmtier_engine_madvise_cold_bytes_total\\{vm_uuid="${d.uuid}",vm_name="${d.name}"\\} [1-9]`));
  // Advised once: the same cold pages are not advised again in the rounds after (re-advising makes
  // them younger in MGLRU than the pages reclaim should take first).
  const advisedAt = { rounds: s.rounds, bytes: s.totals.madvisedColdBytes };
  const later = await until(15_000, 'five more rounds', () => {
    const v = engine.vm(d.uuid);
    return v && v.rounds >= advisedAt.rounds + 5 ? v : null;
  });
  assert.ok(later.totals.madvisedColdBytes - advisedAt.bytes < r.coldBytes / 2,
    `advised ${later.totals.madvisedColdBytes - advisedAt.bytes} bytes again in ${later.rounds - advisedAt.rounds} rounds (${r.coldBytes} cold bytes)`);
  // Decided for demotion but held back by a zero migration budget: those pages stay in DRAM, so
  // they are advised too. A round without advice first, so the next advising round sweeps every
  // cold DRAM page again (they were all advised once above).
  await http('PUT', `/v1/vms/${d.uuid}/policy`, {
    mode: 'tier',
    madviseCold: false,
    scan: { intervalMs: 50, scansPerRound: 2, autoTune: false },
    thresholds: { coldConfirmRounds: 1, hotConfirmRounds: 1 },
  });
  const offAt = engine.vm(d.uuid)!.rounds;
  await until(15_000, 'two rounds without the advice', () => ((engine.vm(d.uuid)?.rounds ?? 0) >= offAt + 2 ? true : null));
  const beforePut = engine.vm(d.uuid)!.totals.madvisedColdBytes;
  await http('PUT', `/v1/vms/${d.uuid}/policy`, {
    mode: 'tier',
    madviseCold: true,
    scan: { intervalMs: 50, scansPerRound: 2, autoTune: false },
    thresholds: { coldConfirmRounds: 1, hotConfirmRounds: 1 },
    dram: { maxBytes: hot.length * PAGE },
    migration: { maxBytesPerRound: 0 },
  });
  const held = await until(15_000, 'a round that decided demotions it could not make', () => {
    const v = engine.vm(d.uuid);
    return v?.lastRound && v.lastRound.decided.demotePages > 0 ? v.lastRound : null;
  });
  assert.equal(held.moves.demote.requested, 0, 'the budget let nothing move');
  assert.ok(held.skipped['demote: budget']! > 0);
  const advisedSincePut = engine.vm(d.uuid)!.totals.madvisedColdBytes - beforePut;
  assert.ok(advisedSincePut >= held.coldBytes / 2, `held-back cold pages advised (${advisedSincePut} of ${held.coldBytes} cold bytes)`);
  await engine.stop();
});

test('host DRAM below the watermark: cold pages are demoted with no DRAM limit in the policy; above it nothing moves', async () => {
  const d = domains[0]!;
  const { pm, resident } = await residentPages(d.uuid);
  const hot = resident.slice(0, 32);
  // No ceiling, default demote 'pressure': only the host's free DRAM decides whether pages go.
  await http('PUT', `/v1/vms/${d.uuid}/policy`, {
    mode: 'tier',
    scan: { intervalMs: 50, scansPerRound: 2, autoTune: false },
    thresholds: { coldConfirmRounds: 1, hotConfirmRounds: 1 },
    migration: { maxMBps: 1000 },
  });
  const trackerOptions = { replay: { trace: hotTrace(pm.totalPages, hot), loop: true, paced: true } };
  // Control: a watermark of 0 (this host always has more free): rounds run, nothing is demoted.
  const calm = newEngine({ onlyName: d.name, tracker: 'replay', trackerOptions, targetNodes: { slow: 0 }, budget: { dramFreeWatermarkBytes: 0 } });
  await calm.start();
  const c = await until(15_000, 'four calm rounds', () => ((calm.vm(d.uuid)?.rounds ?? 0) >= 4 ? calm.vm(d.uuid) : null));
  assert.ok(c.lastRound!.coldBytes > 0, 'cold pages exist');
  assert.equal(c.totals.demote.requested, 0, 'no pressure, no limit: cold pages stay');
  await calm.stop();
  // Short: a watermark above all of this host's memory, as if the top tier were full.
  const short = newEngine({ onlyName: d.name, tracker: 'replay', trackerOptions, targetNodes: { slow: 0 }, budget: { dramFreeWatermarkBytes: 2 ** 50 } });
  await short.start();
  const s = await until(15_000, 'a round that demoted', () => {
    const v = short.vm(d.uuid);
    return v && v.totals.demote.requested > 0 ? v : null;
  });
  assert.ok(s.totals.demote.byClass.moved > 0, 'pages moved (to node 0, where they already are)');
  assert.equal(s.totals.promote.requested, 0, 'promotion paused below the watermark');
  assert.ok(s.lastRound!.decided.demotePages <= s.lastRound!.residentBytes / PAGE - hot.length, 'the hot set is never chosen');
  await short.stop();
});

test('a domain that starts is picked up; one destroyed mid-scan ends its loop with nothing but a 404', async () => {
  const first = domains[0]!;
  await first.destroy();
  const name = `${PREFIX}late-${Math.random().toString(36).slice(2, 7)}`;
  // A long paced round (4 scans x 1 s) so the destroy lands mid-scan.
  const engine = newEngine({
    onlyName: name,
    tracker: 'replay',
    trackerOptions: { replay: { trace: hotTrace(1, [0]), loop: true, paced: true } },
    targetNodes: { slow: 0 },
  });
  await engine.start();
  const before = logLines.length;
  // The policy comes in the domain's own metadata, so the very first round already runs the long
  // plan (with a PUT after the start, the defaults' short auto-tuned first round could end first).
  const policy = JSON.stringify({ mode: 'tier', scan: { intervalMs: 1000, scansPerRound: 4, autoTune: false } });
  const xml = fixtureXml('two-cells-memfd.xml', name)
    .replace(/<\/name>/, `</name>\n  <metadata><vmtier:policy xmlns:vmtier="${POLICY_NS}">${policy}</vmtier:policy></metadata>`);
  const d = await startDomain('two-cells-memfd.xml', PREFIX, { xml });
  domains.push(d);
  const picked = Date.now();
  await until(3000, 'the new domain is managed', () => engine.vm(d.uuid));
  const pickedMs = Date.now() - picked;
  // Mid-scan: the loop is inside its first round (4 s) when the domain goes.
  await until(5000, 'the loop scanning', () => engine.vm(d.uuid)?.state === 'running' && engine.vm(d.uuid)?.tracker?.available === true);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(engine.vm(d.uuid)!.rounds, 0, 'still in the first round');
  const destroyedAt = Date.now();
  await d.destroy();
  const endedAt = await until(5000, 'the loop ended', () => (engine.vm(d.uuid) === null ? Date.now() : null));
  console.log(`# engine (host): domain managed ${pickedMs} ms after virsh create returned; loop ended ${endedAt - destroyedAt} ms after virsh destroy was issued (mid-scan of a 4 s round)`);
  const eng = await http('GET', `/v1/vms/${d.uuid}/engine`);
  assert.equal(eng.status, 404);
  assert.equal(eng.body.error.code, 'VM_NOT_FOUND');
  const pl = await http('GET', `/v1/vms/${d.uuid}/placement`);
  assert.equal(pl.status, 404);
  const all = await http('GET', '/v1/engine');
  assert.equal(all.status, 200);
  assert.ok(!all.body.vms.some((v: any) => v.uuid === d.uuid));
  const mine = logLines.slice(before).filter((l) => l.includes(d.uuid));
  assert.ok(mine.some((l) => l.includes('"msg":"loop ended"')));
  assert.equal(mine.filter((l) => /"level":(40|50|60)/.test(l)).length, 0, `no warning or error for the vanished domain:\n${mine.join('')}`);
  assert.ok(pickedMs < 3000);
  await engine.stop();
});

// The event-loop bound under load (several VMs, one failing, API clients, CPU hogs) is proven in engine-load.test.ts.
