/**
 * Runs inside the lab (its own kernel; never on the machine): does vmtier's MADV_COLD make the
 * kernel's reclaim demote the pages vmtier found cold before the hot ones? (issue 7, `madviseCold`)
 *
 * One arm, with or without `madviseCold` in the policy, same workload:
 *  1. node 0 is shrunk to a known headroom with hugetlb pages (off the LRU, so they are no
 *     reclaim candidates and make the pressure cheap to create under TCG);
 *  2. lab/workload (128 MiB, every page touched once) writes a 32 MiB hot set 20×/s, then moves
 *     it (phase 1): the old hot set is the typical "was hot, now cold, still in DRAM" memory;
 *  3. vmtier's Engine manages the process in tier mode with a zero migration budget (vmtier moves
 *     nothing; its DAMON tracker, policy and, if enabled, madviseCold run as in `vmtier serve`),
 *     until the old hot set has been cold for coldConfirmRounds + 2 rounds; then it stops;
 *  4. a hog bound to node 0 (MPOL_BIND) allocates the free memory plus --pressure-mb, so node 0
 *     must reclaim, which with demotion enabled moves pages to node 1;
 *  5. where every page of the hot set, the old hot set and the once-touched set sits is read with
 *     move_pages (query) and cross-checked with /proc/<pid>/numa_maps, with vmstat deltas.
 *
 * The only stand-in is the inventory (lab/guest/process-inventory.ts): the "VM" is the workload
 * process, not a QEMU. Prints one JSON object; test/lab/madvise-cold.test.ts and
 * bench/madvise-cold.ts judge it.
 *
 *   node dist/lab/guest/madvise-cold-lab.js [--arms off,on,clearrefs,...] [--lru mglru|classic] [--pressure-mb 32]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Engine } from '../../src/daemon/engine.js';
import { queryPageNodes } from '../../src/sys/syscalls.js';
import { parsePolicy } from '../../src/policy/index.js';
import { Store } from '../../src/store/store.js';
import { ProcessInventory } from './process-inventory.js';
import { nodeMemFreeBytes, numaMapsCounts, startWorkload, type RunningWorkload } from './workload-proc.js';

const MiB = 2 ** 20;
const PAGE = 4096;
const SIZE = 128 * MiB;
const HOT = 32 * MiB;
/** The workload's phase 1 hot set starts half a footprint further on (lab/workload.c). */
const HOT1_OFFSET = SIZE / 2;
const PHASE_AFTER_S = 4;
const COLD_CONFIRM_ROUNDS = 2;
/** Free memory node 0 keeps besides the workload before the hog starts. */
const HEADROOM = 160 * MiB;
const HUGE = 2 * MiB;
const HUGEPAGES = '/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages';
const VMSTAT_KEYS = ['pgdemote_kswapd', 'pgdemote_direct', 'pgsteal_kswapd', 'pgsteal_direct', 'pgscan_kswapd', 'pgscan_direct', 'pgactivate', 'pgdeactivate'];

export interface SetPlacement {
  pages: number;
  node0: number;
  node1: number;
  /** Not present or another status. */
  other: number;
}

/** What every arm of a MADV_COLD experiment reports, whatever the workload (process or domain). */
export interface PressureArmFigures {
  madviseCold: boolean;
  /** Rounds the engine ran, and what its last round reported. */
  rounds: number;
  tracker: string | null;
  madvisedColdMBTotal: number;
  /** Pages vmtier moved over all rounds (the zero budget must keep this at 0). */
  vmtierMovedPages: number;
  hogMB: number;
  node0FreeBeforeHogMB: number;
  vmstat: Record<string, number>;
  seconds: { engine: number; hog: number };
}

export interface ArmResult extends PressureArmFigures {
  /**
   * A diagnostic arm (--arms clearrefs, bench only): no advice, but the workload's accessed bits
   * cleared through /proc/<pid>/clear_refs where vmtier would advise, which tells the two halves of
   * MADV_COLD (accessed bits cleared, pages deactivated) apart.
   */
  clearRefs: boolean;
  lastRound: { hotMB: number; coldMB: number; madvisedColdMB: number; promoted: number; demoted: number };
  /** Placement before the hog (everything on node 0) and after it. */
  before: Record<'hot' | 'oldHot' | 'once', SetPlacement>;
  after: Record<'hot' | 'oldHot' | 'once', SetPlacement>;
  /** numa_maps' N1 of the workload's mapping after the hog: must equal the sum over the sets. */
  numaMapsNode1: number;
  /**
   * Memory in use on node 1 when the arm started. An earlier arm's reclaim leaves other processes'
   * pages there (moving them back was tried: the pages moved back became the first victims of the
   * next arm, a worse bias), so later arms find less competing memory on node 0.
   */
  node1UsedMB: number;
  /** The hog's own pages the kernel demoted (numa_maps N1 of its mapping): fresh, just-written memory. */
  hogDemotedPages: number;
}

export interface MadviseColdRun {
  kernel: string;
  lru: string;
  demotion: string;
  pressureMB: number;
  arms: ArmResult[];
}

function nodeMemTotalBytes(node: number): number {
  const m = /MemTotal:\s+(\d+) kB/.exec(readFileSync(`/sys/devices/system/node/node${node}/meminfo`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function readVmstat(): Record<string, number> {
  const r: Record<string, number> = {};
  for (const l of readFileSync('/proc/vmstat', 'utf8').split('\n')) {
    const [k, v] = l.split(' ');
    if (k && v) r[k] = Number(v);
  }
  return r;
}

function place(pid: number, start: number, bytes: number): SetPlacement {
  const addrs = new Float64Array(bytes / PAGE);
  for (let i = 0; i < addrs.length; i++) addrs[i] = start + i * PAGE;
  const st = queryPageNodes(pid, addrs);
  const p = { pages: addrs.length, node0: 0, node1: 0, other: 0 };
  for (const s of st) {
    if (s === 0) p.node0++;
    else if (s === 1) p.node1++;
    else p.other++;
  }
  return p;
}

function sets(w: RunningWorkload): Record<'hot' | 'oldHot' | 'once', SetPlacement> {
  const { pid, base } = w.layout;
  const hot = place(pid, base + HOT1_OFFSET, HOT);
  const oldHot = place(pid, base, HOT);
  // Touched once at start and never again: [32, 64) and [96, 128) MiB.
  const a = place(pid, base + HOT, HOT1_OFFSET - HOT);
  const b = place(pid, base + HOT1_OFFSET + HOT, SIZE - HOT1_OFFSET - HOT);
  const once = { pages: a.pages + b.pages, node0: a.node0 + b.node0, node1: a.node1 + b.node1, other: a.other + b.other };
  return { hot, oldHot, once };
}

/** Sets node 0's 2 MiB hugetlb pool so that about `free` bytes of node 0 stay free. */
function shrinkNode0To(free: number): void {
  writeFileSync(HUGEPAGES, '0');
  const avail = nodeMemFreeBytes(0);
  const n = Math.max(0, Math.floor((avail - free) / HUGE));
  writeFileSync(HUGEPAGES, String(n));
}

async function waitFor(what: string, timeoutMs: number, cond: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

async function arm(madviseCold: boolean, clearRefs: boolean, pressureMB: number, log: (l: string) => void): Promise<ArmResult> {
  const node1UsedMB = (nodeMemTotalBytes(1) - nodeMemFreeBytes(1)) / MiB;
  shrinkNode0To(SIZE + HEADROOM);
  const w = await startWorkload(['--size', `${SIZE / MiB}m`, '--hot', `${HOT / MiB}m`, '--rate', '20', '--phase-after', String(PHASE_AFTER_S), '--thp', 'off']);
  let out = '';
  w.proc.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
  let hog: RunningWorkload | null = null;
  try {
    const uuid = '6d616476-6973-4563-8f6c-64000000000' + (madviseCold ? '1' : '0');
    const inventory = new ProcessInventory({ name: 'madvise-cold-workload', uuid, pid: w.layout.pid, ranges: [{ start: w.layout.base, end: w.layout.base + SIZE }] });
    const store = Store.open(':memory:');
    store.putPolicy(uuid, parsePolicy({
      mode: 'tier',
      tracker: 'damon',
      scan: { intervalMs: 250, scansPerRound: 4, autoTune: false },
      thresholds: { coldConfirmRounds: COLD_CONFIRM_ROUNDS },
      // vmtier moves nothing: what reaches node 1 is the kernel's reclaim alone.
      migration: { maxBytesPerRound: 0 },
      madviseCold,
    }));
    const engine = new Engine({ inventory, store, logger: pino({ level: 'error' }, process.stderr), resyncMs: 1000, idleMs: 200 });
    const t0 = Date.now();
    await engine.start();
    await waitFor('the workload\'s phase 1', 60_000, () => out.includes('"phase":1'));
    const r1 = engine.vm(uuid)?.rounds ?? 0;
    // The round in flight at the phase change may still count the old hot set hot.
    await waitFor('rounds after the phase change', 120_000, () => (engine.vm(uuid)?.rounds ?? 0) >= r1 + 1 + COLD_CONFIRM_ROUNDS + 2);
    const st = engine.vm(uuid)!;
    await engine.stop();
    // "1": every accessed bit of the process (its hot set sets them again within a pass).
    if (clearRefs) writeFileSync(`/proc/${w.layout.pid}/clear_refs`, '1');
    store.close();
    const engineS = (Date.now() - t0) / 1000;
    const lr = st.lastRound!;
    log(`arm madviseCold=${madviseCold}${clearRefs ? ' clear_refs' : ''}: ${st.rounds} rounds in ${engineS.toFixed(0)} s, last round hot ${(lr.hotBytes / MiB).toFixed(1)} MiB cold ${(lr.coldBytes / MiB).toFixed(1)} MiB, advised ${(lr.madvisedColdBytes / MiB).toFixed(1)} MiB`);

    const before = sets(w);
    const free = nodeMemFreeBytes(0);
    const hogBytes = Math.ceil((free + pressureMB * MiB) / HUGE) * HUGE;
    const v0 = readVmstat();
    const th = Date.now();
    hog = await startWorkload(['--size', `${hogBytes / MiB}m`, '--hot', '64k', '--rate', '0', '--node', '0', '--policy', 'bind', '--thp', 'off'], 300_000);
    // kswapd may still be working towards the high watermark when the hog's last fault returns.
    await sleep(2000);
    const hogS = (Date.now() - th) / 1000;
    const after = sets(w);
    const v1 = readVmstat();
    const numaMapsNode1 = numaMapsCounts(w.layout.pid, w.layout.base).nodes['1'] ?? 0;
    const hogDemotedPages = numaMapsCounts(hog.layout.pid, hog.layout.base).nodes['1'] ?? 0;
    log(`arm madviseCold=${madviseCold}${clearRefs ? ' clear_refs' : ''}: hog ${hogBytes / MiB} MiB in ${hogS.toFixed(0)} s; on node 1: hot ${after.hot.node1}/${after.hot.pages}, old hot ${after.oldHot.node1}/${after.oldHot.pages}, once ${after.once.node1}/${after.once.pages}, hog's own ${hogDemotedPages}`);
    return {
      madviseCold,
      clearRefs,
      rounds: st.rounds,
      tracker: st.tracker ? `${st.tracker.name}${st.tracker.available ? '' : ' (unavailable)'}` : null,
      lastRound: {
        hotMB: lr.hotBytes / MiB, coldMB: lr.coldBytes / MiB, madvisedColdMB: lr.madvisedColdBytes / MiB,
        promoted: lr.moves.promote.byClass.moved, demoted: lr.moves.demote.byClass.moved,
      },
      madvisedColdMBTotal: st.totals.madvisedColdBytes / MiB,
      vmtierMovedPages: st.totals.promote.byClass.moved + st.totals.demote.byClass.moved,
      before,
      after,
      numaMapsNode1,
      hogMB: hogBytes / MiB,
      node1UsedMB,
      hogDemotedPages,
      node0FreeBeforeHogMB: free / MiB,
      vmstat: Object.fromEntries(VMSTAT_KEYS.map((k) => [k, (v1[k] ?? 0) - (v0[k] ?? 0)])),
      seconds: { engine: engineS, hog: hogS },
    };
  } finally {
    await hog?.stop();
    await w.stop();
    writeFileSync(HUGEPAGES, '0');
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      arms: { type: 'string', default: 'off,on' },
      lru: { type: 'string', default: 'default' },
      'pressure-mb': { type: 'string', default: '32' },
    },
  });
  const log = (l: string) => process.stderr.write(`madvise-cold: ${l}\n`);
  // It switches demotion and the LRU kind and fills node 0: global mm settings that only the lab's
  // own kernel may have changed (the lab agent sets VMTIER_LAB=1).
  if (process.env.VMTIER_LAB !== '1') throw new Error('madvise-cold-lab runs only inside the lab (VMTIER_LAB=1), never on the host');
  writeFileSync('/sys/kernel/mm/numa/demotion_enabled', '1');
  if (values.lru === 'classic') writeFileSync('/sys/kernel/mm/lru_gen/enabled', 'n');
  else if (values.lru === 'mglru') writeFileSync('/sys/kernel/mm/lru_gen/enabled', 'y');
  const lruRaw = readFileSync('/sys/kernel/mm/lru_gen/enabled', 'utf8').trim();
  const run: MadviseColdRun = {
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    // lru_gen/enabled is a bit mask: 0x0000 = MGLRU off (the classic active/inactive lists).
    lru: Number.parseInt(lruRaw, 16) === 0 ? 'classic' : `mglru (${lruRaw})`,
    demotion: readFileSync('/sys/kernel/mm/numa/demotion_enabled', 'utf8').trim(),
    pressureMB: Number(values['pressure-mb']),
    arms: [],
  };
  log(`kernel ${run.kernel}, LRU ${run.lru}, demotion_enabled ${run.demotion}`);
  for (const a of values.arms!.split(',')) {
    if (a !== 'on' && a !== 'off' && a !== 'clearrefs') throw new Error(`--arms takes on, off or clearrefs, not ${a}`);
    run.arms.push(await arm(a === 'on', a === 'clearrefs', run.pressureMB, log));
  }
  process.stdout.write(`${JSON.stringify(run)}\n`);
}

main().catch((e) => {
  process.stderr.write(`madvise-cold-lab: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
