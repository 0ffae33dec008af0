/**
 * The heatmap shows where heat lives after a round, not where it was when the round began: a
 * round that demotes a region records that region in the slow tier in that round's heat frame.
 *
 * Real parts: the engine's own round (VmLoop: worker thread, placement queries with move_pages on a
 * real process, the real policy, the mover and the budget), heat written to a real SQLite file.
 * Stand-ins, named as such: the "guest" is a child process's 8 MiB buffer (no libvirt domain in a
 * unit test; the stand-in inventory maps it as guest node 0), the access counts are replayed (the
 * first half of the buffer hot, the second cold), and this machine has one NUMA node, so the slow
 * tier is a node 1 that exists only in the host topology handed to the loop, and moves to it are
 * answered by the syscall layer's VMTIER_INJECT_MOVE_PAGES=ARRIVED (every page reports it arrived;
 * queries still tell the kernel's truth: node 0, DRAM).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { EngineMetrics } from '../../src/daemon/metrics.js';
import { HostDecider } from '../../src/daemon/host-decider.js';
import { VmLoop } from '../../src/daemon/vm-loop.js';
import type { HostTopology } from '../../src/host/topology.js';
import { MigrationBudget } from '../../src/migrate/budget.js';
import { parsePolicy } from '../../src/policy/schema.js';
import { HEAT_CELL_MS, heatHistoryOf } from '../../src/store/heat-history.js';
import { Store } from '../../src/store/store.js';
import { MOVE_PAGES_INJECT_ENV } from '../../src/sys/fault-injection.js';
import type { VmInventory } from '../../src/vm/inventory.js';
import type { GuestNodeMap } from '../../src/vm/types.js';
import { fastTierPolicy } from '../helpers/policies.js';

const PAGE = 4096;
const VM = '00000000-0000-4000-8000-00000000beef';
const dir = mkdtempSync(join(tmpdir(), 'vmtier-heat-placement-'));
let child: ChildProcess | null = null;

after(() => {
  child?.kill('SIGKILL');
  delete process.env[MOVE_PAGES_INJECT_ENV];
  rmSync(dir, { recursive: true, force: true });
});

/** A child that allocates and touches 8 MiB and prints the new anonymous mapping holding it. */
async function childWithBuffer(): Promise<{ pid: number; start: number; end: number }> {
  const src = `
    const fs = require('node:fs');
    const maps = () => new Set(fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => / rw-p 00000000 00:00 0 +$/.test(l)));
    const before = maps();
    const buf = new Uint8Array(8 << 20).fill(1);
    const fresh = [...maps()].filter((l) => !before.has(l)).map((l) => l.split(' ')[0].split('-').map((x) => parseInt(x, 16)))
      .filter(([s, e]) => e - s >= (8 << 20)).sort((a, b) => (a[1] - a[0]) - (b[1] - b[0]));
    globalThis.keep = buf;
    process.stdout.write(JSON.stringify(fresh[0] ?? null) + '\\n');
    setInterval(() => { buf[0]++; }, 1000);
  `;
  child = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child!.stdout!.on('data', (b) => {
      out += b;
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child!.once('exit', (c) => reject(new Error(`child exited ${c}`)));
  });
  const range = JSON.parse(line) as [number, number] | null;
  assert.ok(range, 'the child found its buffer mapping');
  return { pid: child.pid!, start: range[0], end: range[1] };
}

function topology(): HostTopology {
  const node = (n: number, cls: 'top' | 'slow') => ({
    node: n, cpus: cls === 'top' ? '0-1' : null, memTotalBytes: 16 * 2 ** 30, memFreeBytes: 8 * 2 ** 30,
    distances: { 0: n === 0 ? 10 : 20, 1: n === 1 ? 10 : 20 }, tier: { kernelTier: null, class: cls, source: 'config' as const },
  });
  return {
    nodes: [node(0, 'top'), node(1, 'slow')], tiers: [], dax: [],
    kernel: { numaBalancing: null, demotionEnabled: null, promoteRateLimitMBps: null },
    warnings: [],
  } as unknown as HostTopology;
}

test("a round that demotes a region records that region in the slow tier in that round's heat frame", async () => {
  const guest = await childWithBuffer();
  const totalPages = (guest.end - guest.start) / PAGE;
  const hotPages = Math.floor(totalPages / 2);
  const map: GuestNodeMap = {
    domain: { name: 'heat-placement-stand-in', uuid: VM, pid: guest.pid },
    nodes: [{ node: 0, cpus: '0', sizeBytes: guest.end - guest.start, backing: { kind: 'anonymous', path: null, id: 'ram-node0', migratable: true }, hva: [{ start: guest.start, end: guest.end }] }],
  };
  const inventory = {
    numaMap: async () => map,
    resolve: async () => ({ name: map.domain.name, uuid: VM, state: 'running' }),
    // No libvirt domain behind the stand-in: no metadata, never migrating.
    metadata: async () => null,
    setMetadata: async () => ({ live: false, config: false }),
    jobActive: async () => false,
    subscribe: () => () => undefined,
  } as unknown as VmInventory;
  const store = Store.open(join(dir, 'vmtier.db'));
  // DRAM capped at the hot half: the cold half is demoted once confirmed cold.
  store.putPolicy(VM, parsePolicy(fastTierPolicy(hotPages * PAGE)));
  const hot = Uint32Array.from({ length: hotPages }, (_, i) => i);
  const trace = { epochs: 1, pages: totalPages, accessed: [hot], known: new Uint8Array(totalPages).fill(1), vms: [] };
  const rounds: Array<{ round: number; demoted: number }> = [];
  const logger = pino({ level: 'info' }, {
    write: (s: string) => {
      const l = JSON.parse(s);
      if (l.msg === 'round') rounds.push({ round: l.round, demoted: l.demoted });
    },
  });
  // One real millisecond is one second of the loop's clock: every round lands in a heat cell of its own.
  const t0 = Math.floor(Date.now() / HEAT_CELL_MS) * HEAT_CELL_MS;
  const real0 = Date.now();
  const now = () => t0 + (Date.now() - real0) * 1000;
  process.env[MOVE_PAGES_INJECT_ENV] = 'ARRIVED';
  let ended = '';
  // The daemon's decider and policy thread, with a fixed pool: DRAM for the hot half.
  const decider = new HostDecider({ pool: { capacity: () => ({ dramCapacityBytes: hotPages * PAGE, dramShort: false }) } });
  const loop = new VmLoop({
    uuid: VM, name: map.domain.name, inventory, store, logger, metrics: new EngineMetrics(),
    budget: new MigrationBudget({ dramFreeWatermarkBytes: 0 }),
    host: topology,
    trackerFor: () => ({ name: 'replay', options: { replay: { trace, loop: true, paced: true } } }),
    decider: (req, signal) => decider.submit(req, signal),
    targetNodes: { slow: 1 },
    idleMs: 50, backoff: { baseMs: 50, maxMs: 200 }, now, hotMapEveryRounds: 5,
    onEnd: (why) => (ended = why),
  });
  void loop.start();
  try {
    const deadline = Date.now() + 30_000;
    while (!rounds.some((r) => r.demoted > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  } finally {
    await loop.stop();
    await decider.close();
  }
  assert.equal(loop.snapshot().lastError, null, `no failed round (${ended})`);
  const moving = rounds.findIndex((r) => r.demoted > 0);
  assert.ok(moving >= 0, `a round demoted the cold half (rounds: ${JSON.stringify(rounds)})`);
  assert.equal(rounds[moving]!.demoted, totalPages - hotPages, 'the whole cold half, in one round');

  const { frames } = heatHistoryOf(store).query(VM, t0, now() + HEAT_CELL_MS, 1440);
  assert.equal(frames.length, rounds.length, 'one heat cell per round');
  assert.ok(frames.every((f) => f.samples === 1));
  const f = frames[moving]!;
  const bucketPages = f.bucketBytes / PAGE;
  const bucketsOf = (first: number, end: number) => Array.from(f.dram).filter((_, b) => b * bucketPages >= first && (b + 1) * bucketPages <= end);
  const hotBuckets = bucketsOf(0, hotPages);
  const coldBuckets = bucketsOf(hotPages, totalPages);
  assert.ok(hotBuckets.length > 100 && coldBuckets.length > 100);
  // The kernel still answers node 0 (DRAM) for every page: only the round's own moves put the cold half on the slow tier.
  assert.deepEqual(new Set(coldBuckets), new Set([0]), 'the demoted half is shown in the slow tier in the round that moved it');
  assert.deepEqual(new Set(hotBuckets), new Set([255]), 'the hot half stays in DRAM');
  for (let i = 0; i < moving; i++) assert.ok(Array.from(frames[i]!.dram).every((d, b) => d === 255 || f.resident[b] === 0), `round ${i + 1}: all DRAM before any move`);
  store.close();
});
