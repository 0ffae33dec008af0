/**
 * One round of a VM's loop as named stages, in order:
 *
 *   account — join this round's scan with where every page sits (tiers, cold rounds, cells)
 *   decide  — the policy picks promotions and demotions within the VM's DRAM share
 *   move    — the mover (src/migrate) carries them out within the host budget
 *   advise  — MADV_COLD on DRAM pages that stay cold
 *   record  — samples and heat into the store, metrics, one log line
 *
 * Before the stages the round gathers its inputs from the loop (layout, the hot-map seed, the
 * tracker's scan, the placement cache); after them it paces itself like a real tracker and
 * publishes the hot map. The loop (vm-loop.ts) owns everything that lives longer than a round;
 * the round sees it through RoundVm and carries its own values in a RoundContext.
 */
import type { Logger } from 'pino';
import { VmtierError } from '../../errors.js';
import type { HostTopology } from '../../host/topology.js';
import type { MigrationBudget } from '../../migrate/budget.js';
import { addMoveCounts, emptyMoveCounts } from '../../migrate/counts.js';
import type { NodeRuns } from '../../migrate/node-runs.js';
import type { PlacementCache } from '../../migrate/placement-cache.js';
import { TieringPolicy, type ScanPlan, type TierPolicy } from '../../policy/index.js';
import type { Store } from '../../store/store.js';
import { PAGE_SIZE } from '../../units.js';
import type { VmInventory } from '../../vm/inventory.js';
import { HotUnits } from '../hot-units.js';
import type { EngineMetrics } from '../metrics.js';
import type { PageMap } from '../page-map.js';
import type { RoundSummary, VmEngineStatus } from '../status.js';
import { MigrationStarted } from '../vm-errors.js';
import { account, roundThresholds, tierOfNodes, type Accounting } from './account.js';
import { advise } from './advise.js';
import { decide, type Decider } from './decide.js';
import { publishHotMap, seedFromHotMap } from './hot-map.js';
import { move, type MoveInput } from './move.js';
import { record, report } from './record.js';

/** What a VM's rounds carry from one round to the next (the loop resets parts on a new layout). */
export class RoundState {
  /** The next decision must start from fresh policy state (new layout, new mode). */
  freshPolicy = true;
  /** The last decision's DRAM demand (null until the first decision, and after a fresh start). */
  demandBytes: number | null = null;
  /** The mode the policy state was built in: observe-mode "decisions" were never carried out. */
  policyMode: 'observe' | 'tier' | null = null;
  /** The plan the last decision returned (scans per round, interval multiplier). */
  plan: ScanPlan | null = null;
  /**
   * Consecutive cold rounds per page, for MADV_COLD (the policy keeps its own, privately). Kept
   * only while the VM's policy advises (tier mode with madviseCold): otherwise it is empty, not
   * 2 bytes per 4 KiB page of guest RAM; when advising starts, every page's count starts at 0.
   */
  coldRounds = new Uint16Array(0);
  /** The next advising round advises every cold DRAM page (see advise.ts), not only newly cold ones. */
  adviseSweep = true;
  /** The coldConfirmRounds of the last advising round: pages already past a new one would never reach it. */
  adviseConfirmRounds = -1;
  /** The hot map in the metadata has not been looked at yet (once per loop: after a migration or a restart). */
  seedPending = true;
  hotUnits: HotUnits | null = null;
  /** The hot map last written (base64). */
  lastHotMap: string | null = null;
  /** Longest synchronous move_pages section of the current round (it holds the event loop). */
  longestSyscallMs = 0;
  /**
   * Per-page arrays reused from round to round: allocating megabytes of typed arrays every round
   * makes V8 run full collections for the external memory, which stalls the event loop. They sit
   * on SharedArrayBuffers: the tracker in the VM's worker thread writes the counts in place, and
   * the policy's input (counts, tiers) reaches that thread shared, not copied (a structured clone
   * copied both, 2 bytes per 4 KiB page, every round; issue 13). The round awaits the scan and the
   * decision, so nothing writes them while another thread reads.
   */
  private bufs: { pages: number; counts: Uint8Array; tiers: Uint8Array } | null = null;

  buffers(pages: number): { counts: Uint8Array; tiers: Uint8Array } {
    if (!this.bufs || this.bufs.pages !== pages) {
      this.bufs = { pages, counts: new Uint8Array(new SharedArrayBuffer(pages)), tiers: new Uint8Array(new SharedArrayBuffer(pages)) };
    }
    return this.bufs;
  }

  /** A new process or a new layout: per-page state of the old one means nothing. */
  relayout(): void {
    this.freshPolicy = true;
    this.demandBytes = null;
    this.coldRounds = new Uint16Array(0);
  }

  /** The cold-round counts this round keeps: per page while advising, else none (and none retained). */
  coldCounts(totalPages: number, advising: boolean): Uint16Array | null {
    if (!advising) {
      if (this.coldRounds.length !== 0) this.coldRounds = new Uint16Array(0);
      return null;
    }
    if (this.coldRounds.length !== totalPages) this.coldRounds = new Uint16Array(totalPages);
    return this.coldRounds;
  }
}

/** What the loop's dependencies give a round. */
export interface RoundDeps {
  inventory: VmInventory;
  store: Store;
  metrics: EngineMetrics;
  budget: MigrationBudget;
  host: () => HostTopology;
  /** The host's decider: this VM's round decided with the other tiered VMs due (host-decider.ts). */
  decider: Decider;
  targetNodes?: { top?: number; slow?: number };
  hotMapEveryRounds: number;
  now: () => number;
}

/** This round's scan: counts per page (null: no tracker ran, placement only) and its time. */
export interface RoundScan {
  counts: Uint8Array | null;
  scanMs: number;
}

/** The loop as its rounds see it: what lives longer than a round. */
export interface RoundVm {
  readonly uuid: string;
  readonly name: string;
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly deps: RoundDeps;
  readonly state: RoundState;
  readonly status: VmEngineStatus;
  /** The guest layout, remapped when stale. */
  layout(): Promise<PageMap>;
  /** Scans with the loop's tracker into `counts` (the tracker's failures are the loop's to report). */
  scan(policy: TierPolicy, pm: PageMap, counts: Uint8Array, scans: number, intervalMs: number): Promise<RoundScan>;
  /** Host node per page from the placement cache, refreshed for this round. */
  placement(pm: PageMap): Promise<{ node: NodeRuns; unqueryable: number }>;
  placementCache(): PlacementCache | null;
  /** Bumped when an outgoing migration starts; migrating() while it runs. */
  migrationEpoch(): number;
  migrating(): boolean;
  movePages: MoveInput['movePages'];
  /** The VM's pidfd, opened on first need. */
  pidfd(): number;
  pause(ms: number): Promise<void>;
  /** The tracker as the log line names it. */
  trackerLabel(): string;
}

/** A round's own values, passed from stage to stage. */
export interface RoundContext {
  policy: TierPolicy;
  mode: 'observe' | 'tier';
  pm: PageMap;
  plan: ScanPlan;
  scans: number;
  intervalMs: number;
  hotMin: number;
  coldMax: number;
  host: HostTopology;
  tierOfNode: Uint8Array;
  scan: RoundScan;
  /** Host node per page, as runs (the placement cache's). */
  hostNode: NodeRuns;
  unqueryable: number;
  /** Tier of every page: written by account, updated by move, read by advise and record. */
  tiers: Uint8Array;
}

/** Only for initialPlan (pure, cheap); decisions run in the VM's thread. */
const planner = new TieringPolicy();

function summaryOf(ctx: RoundContext, a: Accounting, round: number): RoundSummary {
  return {
    round,
    t: 0,
    mode: ctx.mode,
    scans: ctx.scan.counts ? ctx.scans : 0,
    intervalMs: ctx.intervalMs,
    scanMs: ctx.scan.scanMs,
    durationMs: 0,
    trackedBytes: ctx.pm.totalPages * PAGE_SIZE,
    residentBytes: a.residentPages * PAGE_SIZE,
    hotBytes: a.hotPages * PAGE_SIZE,
    warmBytes: a.warmPages * PAGE_SIZE,
    coldBytes: a.coldPages * PAGE_SIZE,
    decided: { promotePages: 0, demotePages: 0 },
    moves: { promote: emptyMoveCounts(), demote: emptyMoveCounts() },
    promotionPaused: false,
    skipped: {},
    madvisedColdBytes: 0,
    unmovablePages: a.unmovablePages,
    longestSyscallMs: 0,
    planReason: 'none',
    recurrencePeriodRounds: 0,
    decidedWithVms: 0,
    shareBytes: 0,
  };
}

function moveInput(vm: RoundVm, pm: PageMap, policy: TierPolicy, host: HostTopology): Omit<MoveInput, 'promote' | 'demote' | 'accounted'> {
  const d = vm.deps;
  return { vmId: vm.uuid, vmName: vm.name, pm, policy, host, targetNodes: d.targetNodes, budget: d.budget, movePages: vm.movePages, placement: vm.placementCache(), store: d.store, metrics: d.metrics, now: d.now };
}

export async function runRound(vm: RoundVm, policy: TierPolicy): Promise<void> {
  const { state, status, deps: d } = vm;
  const t0 = performance.now();
  state.longestSyscallMs = 0;
  const phases: Record<string, number> = {};
  let tp = t0;
  const phase = (name: string) => {
    const t = performance.now();
    phases[name] = Math.round((t - tp) * 10) / 10;
    tp = t;
  };
  const mode = policy.mode as 'observe' | 'tier';
  const pm = await vm.layout();
  if (pm.totalPages === 0) throw new VmtierError('HVA_MISMATCH', 'the domain has no guest RAM ranges to manage');
  if (state.policyMode !== mode) {
    state.freshPolicy = true;
    state.demandBytes = null;
    state.plan = null;
    state.policyMode = mode;
  }
  const plan = state.plan ?? planner.initialPlan(policy);
  const scans = plan.scansPerRound;
  const intervalMs = Math.max(10, Math.round(policy.scan.intervalMs * plan.intervalMultiplier));
  const roundMinMs = scans * intervalMs;
  const epoch = vm.migrationEpoch();
  const migrationStarted = () => vm.migrationEpoch() !== epoch || vm.migrating();

  if (state.seedPending) {
    state.seedPending = false;
    const units = (state.hotUnits ??= new HotUnits(pm));
    const seed = await seedFromHotMap({ inventory: d.inventory, log: vm.log, units, mode, round: status.rounds + 1, now: d.now, move: moveInput(vm, pm, policy, d.host()) });
    if (seed) {
      status.seed = seed;
      if (seed.promote) addMoveCounts(status.totals.promote, seed.promote);
    }
  }

  const bufs = state.buffers(pm.totalPages);
  const scan = await vm.scan(policy, pm, bufs.counts, scans, intervalMs);
  // The migration's pre-copy read every page while this scan ran: its counts say nothing.
  if (migrationStarted()) throw new MigrationStarted();
  phase('scan');
  const { node: hostNode, unqueryable } = await vm.placement(pm);
  phase('placement');
  const host = d.host();
  const ctx: RoundContext = { policy, mode, pm, plan, scans, intervalMs, ...roundThresholds(policy, scans), host, tierOfNode: tierOfNodes(host), scan, hostNode, unqueryable, tiers: bufs.tiers };

  const coldRounds = state.coldCounts(pm.totalPages, mode === 'tier' && policy.madviseCold);
  // Only a round that advises clears the sweep: a round that fails, observes, has no counts or
  // does not advise may let pages pass coldConfirmRounds unseen, and a new policy may bring a new
  // coldConfirmRounds that pages already passed. (A new layout restarts every cold count at 0.)
  const adviseSweep = state.adviseSweep || state.adviseConfirmRounds !== policy.thresholds.coldConfirmRounds;
  state.adviseSweep = true;
  const accounting = await account({ pm, hostNode, counts: scan.counts, tierOfNode: ctx.tierOfNode, hotMin: ctx.hotMin, coldMax: ctx.coldMax, tiers: ctx.tiers, coldRounds });
  phase('account');

  const summary = summaryOf(ctx, accounting, status.rounds + 1);
  const skip = (why: string, n: number) => {
    if (n > 0) summary.skipped[why] = (summary.skipped[why] ?? 0) + n;
  };
  if (scan.counts) {
    const { decision, batchVms } = await decide({
      vmId: vm.uuid,
      policy,
      counts: scan.counts,
      tiers: ctx.tiers,
      plan,
      accounting,
      lastDemandBytes: state.demandBytes,
      fresh: state.freshPolicy,
      decider: d.decider,
      signal: vm.signal,
    });
    state.freshPolicy = false;
    state.demandBytes = decision.stats.demandBytes;
    state.plan = decision.plan;
    summary.planReason = decision.stats.planReason;
    summary.recurrencePeriodRounds = decision.stats.recurrencePeriodRounds;
    summary.decidedWithVms = batchVms;
    summary.shareBytes = decision.stats.shareBytes;
    phase('decide');
    summary.decided = { promotePages: decision.promote.length, demotePages: decision.demote.length };
    if (migrationStarted()) throw new MigrationStarted();
    if (mode === 'tier') {
      const moved = await move({ ...moveInput(vm, pm, policy, host), promote: decision.promote, demote: decision.demote, accounted: { cells: accounting.cells, tiers: ctx.tiers, tierOfNode: ctx.tierOfNode } });
      summary.moves = { promote: moved.promote, demote: moved.demote };
      summary.promotionPaused = moved.promotionPaused;
      for (const [why, n] of Object.entries(moved.skipped)) skip(why, n);
      phase('move');
      if (coldRounds) {
        summary.madvisedColdBytes = await advise({ pm, tiers: ctx.tiers, coldRounds, confirmRounds: policy.thresholds.coldConfirmRounds, leaving: moved.leaving, sweep: adviseSweep, pidfd: vm.pidfd, signal: vm.signal });
        state.adviseSweep = false;
        state.adviseConfirmRounds = policy.thresholds.coldConfirmRounds;
      }
      phase('madvise');
    }
  }
  if (unqueryable > 0) skip('unqueryable', unqueryable);

  // Paced like a real tracker would be (a replayed or failed scan returns at once).
  const elapsed = performance.now() - t0;
  if (elapsed < roundMinMs) await vm.pause(roundMinMs - elapsed);
  vm.signal.throwIfAborted();
  phase('pace');

  const t = d.now();
  summary.t = t;
  summary.durationMs = performance.now() - t0;
  summary.longestSyscallMs = Math.round(state.longestSyscallMs * 10) / 10;
  record(d.store, { vmId: vm.uuid, t, cells: accounting.cells, host, pm, counts: scan.counts, scans, scanMs: scan.scanMs, tiers: ctx.tiers });
  phase('record');
  status.rounds++;
  if (scan.counts && (status.rounds === 1 || status.rounds % d.hotMapEveryRounds === 0)) {
    const units = (state.hotUnits ??= new HotUnits(pm));
    const published = await publishHotMap({ inventory: d.inventory, vmId: vm.uuid, log: vm.log, units, counts: scan.counts, hotMin: ctx.hotMin, round: status.rounds, t, last: state.lastHotMap });
    if (published) {
      status.hotMap = published;
      if (published.error === null) state.lastHotMap = published.map;
    }
  }
  phase('publish');
  status.lastRound = summary;
  addMoveCounts(status.totals.promote, summary.moves.promote);
  addMoveCounts(status.totals.demote, summary.moves.demote);
  status.totals.madvisedColdBytes += summary.madvisedColdBytes;
  const pc = vm.placementCache();
  report({ metrics: d.metrics, log: vm.log, vmId: vm.uuid, vmName: vm.name }, summary, vm.trackerLabel(), phases, pc ? { runs: pc.node.runs, bytes: pc.bytes } : undefined);
}

