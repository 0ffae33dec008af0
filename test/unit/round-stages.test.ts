// The round's stages (src/daemon/round/) and their contracts with each other: account's tiers,
// cold rounds and cells; move telling account's tiers and cells what arrived and logging each
// batch; advise choosing exactly the DRAM runs that stayed cold; record writing what account and
// move produced into a real SQLite store. Stand-ins, named as such: the VM is a PageMap built
// from a guest node map (no process behind it), the host topology has a slow node 1 this machine
// does not have, and movePages is a recording stand-in for the VM thread's move_pages (the real
// call runs in test/unit/engine-heat-placement.test.ts and on QEMU in test/integration/engine.test.ts).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PageMap } from '../../src/daemon/page-map.js';
import { account, roundThresholds, tierOfNodes } from '../../src/daemon/round/account.js';
import { coldRanges } from '../../src/daemon/round/advise.js';
import { decide } from '../../src/daemon/round/decide.js';
import type { DecisionRequest } from '../../src/daemon/host-decider.js';
import { move } from '../../src/daemon/round/move.js';
import { record } from '../../src/daemon/round/record.js';
import { EngineMetrics } from '../../src/daemon/metrics.js';
import type { HostTopology } from '../../src/host/topology.js';
import { MigrationBudget } from '../../src/migrate/budget.js';
import { emptyMoveCounts } from '../../src/migrate/counts.js';
import { NodeRuns } from '../../src/migrate/node-runs.js';
import { PlacementCache, windowRuns } from '../../src/migrate/placement-cache.js';
import { runsOf } from '../helpers/placement.js';
import { DEFAULT_POLICY, TIER_DRAM, TIER_NONE, TIER_SLOW, heatThresholds, normalizePolicy, type TierPolicy } from '../../src/policy/index.js';
import { Store } from '../../src/store/store.js';
import type { GuestNodeMap } from '../../src/vm/types.js';

const P = 4096;
const VM = '00000000-0000-4000-8000-0000000057a6';
const dir = mkdtempSync(join(tmpdir(), 'vmtier-round-stages-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const memfd = (id: string) => ({ kind: 'memfd' as const, path: null, id, migratable: true });

/** Guest node 0: pages 0..7 at 0x10000000; guest node 1: pages 8..11 at 0x20000000, then a devdax device (12..13). */
function pageMap(): PageMap {
  const map: GuestNodeMap = {
    domain: { name: 'stand-in', uuid: VM, pid: 1 },
    nodes: [
      { node: 0, cpus: '0', sizeBytes: 8 * P, backing: memfd('ram-node0'), hva: [{ start: 0x1000_0000, end: 0x1000_0000 + 8 * P }] },
      {
        node: 1, cpus: null, sizeBytes: 4 * P, backing: memfd('ram-node1'), hva: [{ start: 0x2000_0000, end: 0x2000_0000 + 4 * P }],
        devices: [{ model: 'nvdimm', sizeBytes: 2 * P, backing: { kind: 'devdax', path: '/dev/dax0.0', id: 'memnvdimm0', migratable: false, reason: 'devdax' }, hva: [{ start: 0x3000_0000, end: 0x3000_0000 + 2 * P }] }],
      },
    ],
  };
  return PageMap.fromNumaMap(map);
}

function host(topFreeBytes = 8 * 2 ** 30): HostTopology {
  const node = (n: number, cls: 'top' | 'slow') => ({ node: n, memFreeBytes: cls === 'top' ? topFreeBytes : 8 * 2 ** 30, tier: { class: cls } });
  return { nodes: [node(0, 'top'), node(1, 'slow')] } as unknown as HostTopology;
}

// Host node per page: node 0 (DRAM) for pages 0..5 and 8..9, node 1 (slow) for 6..7 and 10..11,
// not present (-1) for the devdax pages 12..13.
const HOST_NODE = Int16Array.from([0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, -1, -1]);
// Four scans: hot >= 2 (half), cold <= 0 with the default thresholds checked below.
const COUNTS = Uint8Array.from([4, 4, 1, 0, 0, 0, 3, 0, 2, 0, 0, 4, 4, 4]);

async function accounted(counts: Uint8Array | null = COUNTS, coldRounds: Uint16Array | null = new Uint16Array(14)) {
  const pm = pageMap();
  const h = host();
  const policy: TierPolicy = { ...DEFAULT_POLICY, thresholds: { ...DEFAULT_POLICY.thresholds, hotMinFraction: 0.5, coldMaxFraction: 0 } };
  const th = roundThresholds(policy, 4);
  const tiers = new Uint8Array(14).fill(0xee);
  const tierOfNode = tierOfNodes(h);
  const a = await account({ pm, hostNode: NodeRuns.fromArray(HOST_NODE), counts, tierOfNode, ...th, tiers, coldRounds });
  return { pm, h, policy, th, tiers, tierOfNode, coldRounds, a };
}

test('account: tier per page, cold rounds per page, and pages per guest node x host node', async () => {
  const coldRounds = new Uint16Array(14).fill(5);
  coldRounds[5] = 0xffff;
  const { th, tiers, a } = await accounted(COUNTS, coldRounds);
  assert.deepEqual(th, { hotMin: 2, coldMax: 0 });
  assert.deepEqual([...tiers], [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 2, 2].map((t) => [TIER_DRAM, TIER_SLOW, TIER_NONE][t]));
  // Hot and warm pages restart their count; cold ones add a round (saturating); absent pages reset.
  assert.deepEqual([...coldRounds], [0, 0, 0, 6, 6, 0xffff, 0, 6, 0, 6, 6, 0, 0, 0]);
  assert.equal(a.dramPages, 8);
  assert.equal(a.unmovablePages, 2);
  const cells = [...a.cells.entries()].map(({ guestNode, hostNode, cell }) => [guestNode, hostNode, cell.resident, cell.hot, cell.warm, cell.cold]);
  assert.deepEqual(cells, [
    [0, 0, 6, 2, 1, 3],
    [0, 1, 2, 1, 0, 1],
    [1, 0, 2, 1, 0, 1],
    [1, 1, 2, 1, 0, 1],
  ]);
  assert.deepEqual([a.residentPages, a.hotPages, a.warmPages, a.coldPages], [12, 5, 1, 6]);
});

test('account without cold-round counts (a VM that does not advise): the same tiers and cells', async () => {
  const kept = await accounted(COUNTS, new Uint16Array(14));
  const none = await accounted(COUNTS, null);
  assert.deepEqual([...none.tiers], [...kept.tiers]);
  assert.deepEqual([...none.a.cells.entries()], [...kept.a.cells.entries()]);
  assert.deepEqual([none.a.residentPages, none.a.hotPages, none.a.warmPages, none.a.coldPages], [12, 5, 1, 6]);
});

test('account without a scan: placement only, no heat, cold rounds kept', async () => {
  const coldRounds = new Uint16Array(14).fill(3);
  const { a, tiers } = await accounted(null, coldRounds);
  assert.equal(a.residentPages, 12);
  assert.deepEqual([a.hotPages, a.warmPages, a.coldPages], [0, 0, 0]);
  assert.equal(tiers[6], TIER_SLOW);
  assert.deepEqual([...coldRounds], [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0]);
});

test('decide: the host decider gets the VM counts, tiers, DRAM and last demand (first round: hot + warm)', async () => {
  const { policy, tiers, a } = await accounted();
  const asked: DecisionRequest[] = [];
  const run = (lastDemandBytes: number | null) =>
    decide({
      vmId: VM, policy, counts: COUNTS, tiers, plan: { scansPerRound: 4, intervalMultiplier: 1 } as never, accounting: a, lastDemandBytes, fresh: lastDemandBytes === null,
      // Stand-in decider: the policy's answer is not this stage's contract, its request is.
      decider: async (req) => (asked.push(req), { decision: { vmId: VM, promote: new Int32Array([6]), demote: new Int32Array(0), plan: req.vm.plan, stats: { demandBytes: 7 * P } as never }, batchVms: 2, dramCapacityBytes: 3 * P }),
      signal: new AbortController().signal,
    });
  const d = await run(null);
  assert.deepEqual([...d.decision.promote], [6]);
  assert.equal(d.batchVms, 2);
  await run(9 * P);
  assert.deepEqual(asked.map((r) => [r.dramBytes, r.demandBytes, r.fresh]), [[8 * P, 6 * P, true], [8 * P, 9 * P, false]]);
  assert.ok(asked.every((r) => r.vm.counts === COUNTS && r.vm.tiers === tiers && r.vm.vmId === VM), 'the round\'s own buffers, not copies');
  const aborted = new AbortController();
  const late = decide({
    vmId: VM, policy, counts: COUNTS, tiers, plan: { scansPerRound: 4, intervalMultiplier: 1 } as never, accounting: a, lastDemandBytes: null, fresh: false,
    decider: async (req) => (aborted.abort(new Error('loop stopping')), { decision: { vmId: VM, promote: new Int32Array(0), demote: new Int32Array(0), plan: req.vm.plan, stats: {} as never }, batchVms: 1, dramCapacityBytes: 0 }),
    signal: aborted.signal,
  });
  await assert.rejects(late, /loop stopping/, 'a decision that comes back after the loop stopped is not used');
});

test('move: arrivals update the accounted tiers, the placement cache and the cells; one log row per guest node batch', async () => {
  const { pm, h, policy, tiers, tierOfNode, a } = await accounted();
  const store = Store.open(join(dir, 'move.db'));
  store.recordVmSeen(VM, 'stand-in', 1000);
  const placement = new PlacementCache(pm.totalPages);
  placement.node.apply(runsOf(HOST_NODE, 0, HOST_NODE.length));
  const calls: Array<{ target: number; addrs: number[] }> = [];
  const r = await move({
    vmId: VM, vmName: 'stand-in', pm, policy: { ...policy, migration: { ...policy.migration, maxMBps: 1000, maxBytesPerRound: null } }, host: h, budget: new MigrationBudget({ dramFreeWatermarkBytes: 0 }),
    // Page 3 is busy; everything else arrives. The devdax page 12 never reaches the mover's call.
    movePages: async (addrs, target) => {
      calls.push({ target, addrs: [...addrs] });
      const counts = emptyMoveCounts();
      counts.requested = addrs.length;
      const reached = new Uint8Array(addrs.length);
      addrs.forEach((x, i) => {
        if (x === pm.addrOf(3)) counts.byClass.busy++;
        else (reached[i] = 1), counts.byClass.moved++;
      });
      return { counts, reached };
    },
    placement, promote: Int32Array.from([6, 10]), demote: Int32Array.from([3, 4, 8, 12]),
    accounted: { cells: a.cells, tiers, tierOfNode }, store, metrics: new EngineMetrics(), now: () => 2000,
  });
  assert.deepEqual(calls.map((c) => [c.target, c.addrs.map((x) => pm.pageOf(x))]), [[1, [3, 4]], [1, [8]], [0, [6]], [0, [10]]]);
  assert.deepEqual(r.skipped, { 'demote: unmovable backing': 1 });
  assert.deepEqual([tiers[3], tiers[4], tiers[8], tiers[6], tiers[10]], [TIER_DRAM, TIER_SLOW, TIER_SLOW, TIER_DRAM, TIER_DRAM]);
  assert.deepEqual([3, 4, 6].map((p) => placement.node.nodeAt(p)), [0, 1, 0]);
  assert.deepEqual([a.cells.cell(0, 1).moved, a.cells.cell(0, 1).failures, a.cells.cell(1, 1).moved, a.cells.cell(0, 0).moved], [1, 1, 1, 1]);
  const rows = store.migrations(VM, 0, 3000).map((m) => [m.guestNode, m.toNode, m.direction, m.pages, m.moved, m.busy]);
  assert.deepEqual(rows.sort(), [[0, 0, 'promote', 1, 1, 0], [0, 1, 'demote', 2, 1, 1], [1, 0, 'promote', 1, 1, 0], [1, 1, 'demote', 1, 1, 0]].sort());
  store.close();
});

test('advise: exactly the runs of movable DRAM pages cold for the confirm rounds and not leaving; once per page unless sweeping', async () => {
  const pm = pageMap();
  const tiers = Uint8Array.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0].map((t) => (t ? TIER_SLOW : TIER_DRAM)));
  const coldRounds = Uint16Array.from([3, 3, 2, 3, 4, 3, 3, 3, 3, 3, 7, 3, 9, 9]);
  const asPages = (sweep: boolean) => coldRanges({ pm, tiers, coldRounds, confirmRounds: 3, leaving: [7], sweep }).map((r) => [pm.pageOf(r.start), (r.end - r.start) / P]);
  // Sweep: 0-1 (2 not confirmed), 3-4 (5 slow), 6 (7 leaving), 8-11 (guest node 1); devdax 12-13 never.
  assert.deepEqual(asPages(true), [[0, 2], [3, 2], [6, 1], [8, 4]]);
  // Otherwise only the pages that turned cold this round: 4 and 10 were advised in earlier rounds.
  assert.deepEqual(asPages(false), [[0, 2], [3, 1], [6, 1], [8, 2], [11, 1]]);
});

test('record: the store holds, per guest node x host node, what account counted and move did', async () => {
  const { pm, h, tiers, a } = await accounted();
  a.cells.cell(0, 1).moved += 2;
  a.cells.cell(0, 1).failures += 1;
  const store = Store.open(join(dir, 'record.db'));
  store.recordVmSeen(VM, 'stand-in', 1000);
  record(store, { vmId: VM, t: 5000, cells: a.cells, host: h, pm, counts: COUNTS, scans: 4, scanMs: 12, tiers });
  const got = store.latestSamplesOf(VM).map((s) => [s.guestNode, s.hostNode, s.hostTier, s.hotBytes / P, s.warmBytes / P, s.coldBytes / P, s.scannedBytes / P, s.movedBytes / P, s.failures]);
  const want = [...a.cells.entries()].map(({ guestNode, hostNode, cell: c }) => [guestNode, hostNode, hostNode === 1 ? 'slow' : 'top', c.hot, c.warm, c.cold, c.resident, c.moved, c.failures]);
  assert.deepEqual(got.sort(), want.sort());
  assert.ok(got.some((s) => s[7] === 2 && s[8] === 1), 'the moved and failed pages of the move stage');
  store.close();
});

test('record without a scan: resident pages are not reported as scanned', async () => {
  const { pm, h, tiers, a } = await accounted(null);
  const store = Store.open(join(dir, 'record-noscan.db'));
  store.recordVmSeen(VM, 'stand-in', 1000);
  record(store, { vmId: VM, t: 5000, cells: a.cells, host: h, pm, counts: null, scans: 4, scanMs: 0, tiers });
  const got = store.latestSamplesOf(VM);
  assert.equal(got.length, 4);
  assert.ok(got.every((s) => s.scannedBytes === 0));
  store.close();
});

test('placement windows: the address runs of a window that spans segments', () => {
  const pm = pageMap();
  const runs = windowRuns(pm.segments, { first: 6, count: 7 });
  assert.deepEqual(runs.map((r) => [r.start.toString(16), r.pages, r.firstPage]), [['10006000', 2, 6], ['20000000', 4, 8], ['30000000', 1, 12]]);
  assert.deepEqual(windowRuns(pm.segments, { first: 14, count: 3 }), []);
});

test('hot and cold: the daemon\'s accounting and the policy share one definition (exact decimal fractions, hysteresis)', async () => {
  // 0.14 × 50 is 7.000000000000001 in binary: a separate Math.ceil made 8 scans "hot" in the daemon
  // while the policy counted 7; 0.58 × 50 gave coldMax 28 against the policy's 29.
  for (const [hot, cold, scans, want] of [[0.14, 0.1, 50, { hotMin: 7, coldMax: 5 }], [0.75, 0.58, 50, { hotMin: 38, coldMax: 29 }],
    [0.75, 0.25, 4, { hotMin: 3, coldMax: 1 }], [0.5, 0.49, 1, { hotMin: 1, coldMax: 0 }]] as const) {
    const policy = normalizePolicy({ thresholds: { hotMinFraction: hot, coldMaxFraction: cold } });
    assert.deepEqual(roundThresholds(policy, scans), want, `${hot}/${cold} of ${scans}`);
    assert.deepEqual(roundThresholds(policy, scans), heatThresholds(policy.thresholds, scans));
  }
});
