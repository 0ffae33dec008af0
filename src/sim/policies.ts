/**
 * The policies the simulator compares. `vmtier` runs src/policy — the code the daemon runs — and
 * the baselines follow their published descriptions (../shared/ANCHORS.md, issue 5). Every
 * baseline parameter is listed here and in README "Policy and simulator"; none is tuned against
 * vmtier.
 */
import { TieringPolicy, TIER_NONE as P_NONE, parsePolicy, type TierPolicy, type TierPolicyInput, type VmRoundInput, type ScanPlan, type TieringOptions } from '../policy/index.js';
import { VmtierError } from '../errors.js';
import {
  TIER_DRAM,
  TIER_NONE,
  TIER_SLOW,
  simulateSync,
  type EpochTouches,
  type Moves,
  type RoundContext,
  type SimConfig,
  type SimPolicy,
  type SimResult,
  type SimView,
} from './engine.js';
import type { EpochBatch, TraceMeta } from './trace.js';

export const POLICY_NAMES = ['vmtier', 'static', 'memopt', 'tpp', 'oracle'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

export interface PolicyOptions {
  vmtierPolicy?: TierPolicyInput;
  /** memopt's main knob: a fixed scan interval in ms (default: auto-tuned as the archived code does). */
  memoptIntervalMs?: number;
  /** tpp's main knob: numa_balancing_promote_rate_limit_MBps (default 65536, the kernel's). */
  tppRateLimitMBps?: number;
}

export function makePolicy(name: string, opts: PolicyOptions = {}): SimPolicy {
  switch (name) {
    case 'vmtier':
      return new VmtierSim(opts.vmtierPolicy);
    case 'static':
      return new StaticSim();
    case 'memopt':
      return new MemoptSim(opts.memoptIntervalMs);
    case 'tpp':
      return new TppSim(opts.tppRateLimitMBps);
    case 'oracle':
      return new OracleSim();
    default:
      throw new VmtierError('INVALID_INPUT', `unknown policy "${name}" (one of ${POLICY_NAMES.join(', ')})`);
  }
}

/**
 * vmtier: the daemon's decision core with the daemon's scan schedule. The plan's interval
 * (policy.scan.intervalMs × multiplier, wall clock) becomes epochs per scan through the one clock;
 * an interval shorter than an epoch is several scans per epoch. All VMs are scanned in lockstep, as
 * one daemon clock would: the round uses the fastest plan any VM asks for.
 */
export class VmtierSim implements SimPolicy {
  readonly name = 'vmtier';
  private readonly core: TieringPolicy;
  private readonly policy: TierPolicy;
  private view!: SimView;
  private plans: ScanPlan[] = [];

  /** `tiering` overrides the decision core's internal options (experiments only; the CLI never sets them). */
  constructor(policy: TierPolicyInput = {}, tiering: TieringOptions = {}) {
    this.policy = parsePolicy({ ...policy, mode: 'tier' });
    this.core = new TieringPolicy(tiering);
  }

  init(view: SimView): void {
    this.view = view;
    this.plans = view.meta.vms.map(() => this.core.initialPlan(this.policy));
  }

  plan(): { epochsPerScan: number; scansPerRound: number } {
    let m = Infinity;
    let n = Infinity;
    for (const p of this.plans) {
      m = Math.min(m, p.intervalMultiplier);
      n = Math.min(n, p.scansPerRound);
    }
    return { epochsPerScan: (m * this.policy.scan.intervalMs) / this.view.cfg.epochMs, scansPerRound: n };
  }

  endRound(ctx: RoundContext): Moves {
    const { meta, cfg } = this.view;
    // The plan as it ran (intervals rounded to the clock, rounds ending on epoch boundaries).
    const plan: ScanPlan = { intervalMultiplier: (ctx.epochsPerScan * cfg.epochMs) / this.policy.scan.intervalMs, scansPerRound: ctx.scansPerRound };
    const vms: VmRoundInput[] = meta.vms.map((vm, v) => ({
      vmId: vm,
      policy: this.policy,
      counts: ctx.counts.subarray(meta.vmOffsets[v]!, meta.vmOffsets[v + 1]!),
      tiers: ctx.tiers.subarray(meta.vmOffsets[v]!, meta.vmOffsets[v + 1]!),
      pageBytes: cfg.unitBytes,
      plan,
    }));
    const d = this.core.decide({ dramCapacityBytes: this.view.capacity * cfg.unitBytes, vms });
    const promote: number[] = [];
    const demote: number[] = [];
    d.vms.forEach((vd, v) => {
      const base = meta.vmOffsets[v]!;
      for (const p of vd.promote) promote.push(base + p);
      for (const p of vd.demote) demote.push(base + p);
      this.plans[v] = vd.plan;
    });
    return { promote, demote };
  }
}
// The policy core and the simulator agree on tier codes; a change on one side must fail loudly.
if (P_NONE !== TIER_NONE) throw new Error('tier codes differ between src/policy and src/sim');

/** static: first-touch placement, never migrates, never scans. */
export class StaticSim implements SimPolicy {
  readonly name = 'static';
  readonly scans = false;
  init(): void {}
  plan(): { epochsPerScan: number; scansPerRound: number } {
    return { epochsPerScan: 1e6, scansPerRound: 255 };
  }
  endRound(): null {
    return null;
  }
}

/**
 * memopt: intel/memory-optimizer (the RFC's daemon, archived) as its code runs it (ANCHORS.md):
 *  - a period is 6 walks (Option.h defaults: nr_scans 3 × nr_scan_rounds 2); the interval between
 *    walks starts at GlobalScan::INITIAL_INTERVAL (0.1 s) within [MIN_INTERVAL 0.001 s,
 *    MAX_INTERVAL 10 s] and is re-fitted each period by interpolating the last 5 (interval, young
 *    pages per walk) points toward young = all × dram_percent / 200 (GlobalScan::update_interval),
 *    where dram_percent is DRAM's share of the pages, so the target is half the DRAM capacity;
 *  - in steady state a page is hot only when seen in *every* walk of the period
 *    (GlobalScan::calc_migrate_count; EPTMigrate::select_top_pages with default options); cold =
 *    DRAM pages from the lowest count up;
 *  - 256 MiB per period (one_period_migration_size); the DRAM deficit (free DRAM) is filled by
 *    promotions alone and the rest of the budget goes to 1:1 promote/demote pairs; a pair is skipped
 *    (and pairing stops) when hot count − cold count < 2 (the anti-thrash gap).
 * Main knob for the sweep: a fixed interval (option `interval`, no re-fitting).
 */
export class MemoptSim implements SimPolicy {
  readonly name: string = 'memopt';
  static readonly WALKS = 6;
  static readonly BUDGET_BYTES = 256 * 1048576;
  static readonly INITIAL_INTERVAL_MS = 100;
  static readonly MIN_INTERVAL_MS = 1;
  static readonly MAX_INTERVAL_MS = 10_000;
  static readonly GAP = 2;
  private view!: SimView;
  private intervalMs: number;
  private readonly history: [number, number][] = [];

  constructor(private readonly fixedIntervalMs?: number) {
    this.intervalMs = fixedIntervalMs ?? MemoptSim.INITIAL_INTERVAL_MS;
    if (fixedIntervalMs !== undefined) this.name = `memopt@${fixedIntervalMs}ms`;
  }

  init(view: SimView): void {
    this.view = view;
  }

  plan(): { epochsPerScan: number; scansPerRound: number } {
    return { epochsPerScan: this.intervalMs / this.view.cfg.epochMs, scansPerRound: MemoptSim.WALKS };
  }

  endRound(ctx: RoundContext): Moves {
    const { capacity, cfg } = this.view;
    const { counts, tiers } = ctx;
    const N = ctx.scansPerRound;
    const hot: number[] = [];
    const coldBuckets: number[][] = Array.from({ length: N + 1 }, () => []);
    let young = 0;
    for (let p = 0; p < tiers.length; p++) {
      const t = tiers[p];
      const c = Math.min(N, counts[p]!);
      young += c;
      if (t === TIER_SLOW && c === N) hot.push(p);
      else if (t === TIER_DRAM && c + MemoptSim.GAP <= N) coldBuckets[c]!.push(p);
    }
    const cold: number[] = [];
    for (let c = 0; c <= N; c++) for (const p of coldBuckets[c]!) cold.push(p);
    const free = capacity - this.view.dramUsed();
    const budget = Math.floor(MemoptSim.BUDGET_BYTES / cfg.unitBytes);
    const promoteOnly = Math.min(Math.max(0, free), hot.length, budget);
    const promote = hot.slice(0, promoteOnly);
    const demote: number[] = [];
    const pairs = Math.floor((budget - promoteOnly) / 2);
    for (let i = 0; i < pairs && promoteOnly + i < hot.length && i < cold.length; i++) {
      promote.push(hot[promoteOnly + i]!);
      demote.push(cold[i]!);
    }
    if (this.fixedIntervalMs === undefined) this.tune((ctx.epochsPerScan * cfg.epochMs), young / N, capacity / 2);
    return { promote, demote };
  }

  /** update_interval: solve young(interval) = target on a least-squares line through recent points. */
  private tune(interval: number, young: number, target: number): void {
    this.history.push([interval, young]);
    if (this.history.length > 5) this.history.shift();
    let next = interval;
    const n = this.history.length;
    const mx = this.history.reduce((a, [x]) => a + x, 0) / n;
    const my = this.history.reduce((a, [, y]) => a + y, 0) / n;
    let sxx = 0;
    let sxy = 0;
    for (const [x, y] of this.history) {
      sxx += (x - mx) * (x - mx);
      sxy += (x - mx) * (y - my);
    }
    if (sxx > 0 && sxy > 0) next = mx + (target - my) / (sxy / sxx);
    else if (young > target) next = interval / 2;
    else if (young < target / 2) next = interval * 2;
    this.intervalMs = Math.min(MemoptSim.MAX_INTERVAL_MS, Math.max(MemoptSim.MIN_INTERVAL_MS, next));
  }
}

/**
 * tpp: upstream Linux 6.12 with numa_balancing=2 and demotion enabled (ANCHORS.md):
 *  - task_numa_work (kernel/sched/fair.c) unmaps (PROT_NONE) up to numa_balancing_scan_size_mb
 *    (256 MiB) of the address space every scan period (numa_balancing_scan_period_min_ms, 1000 ms;
 *    the period's growth toward scan_period_max is not modelled); in tiering mode only slow-tier
 *    pages are unmapped (mm/mprotect.c change_pte_range skips top-tier nodes) and the scan time is
 *    stored in the folio, once: an already PROT_NONE page keeps its first scan time;
 *  - the first access after that takes a hint fault; its latency is fault time − scan time
 *    (numa_hint_fault_latency). should_numa_migrate_memory: when DRAM has "enough" free space
 *    (pgdat_free_space_enough: free above the promo watermark + 1/16 of the node; the 1 GiB floor is
 *    dropped because simulated nodes are smaller than 1 GiB) the page is promoted and the threshold
 *    reset; otherwise numa_promotion_adjust_threshold moves the threshold (default
 *    numa_balancing_hot_threshold_ms 1000) by ±2/16 of the default once per scan_period_max
 *    (60 s) toward promotion candidates of rate_limit × 60 s (±10 %), a fault at or above the
 *    threshold is not promoted, and numa_promotion_rate_limit refuses candidates beyond
 *    numa_balancing_promote_rate_limit_MBps within the current 1 s window;
 *  - a promotion needs free DRAM above the high watermark (migrate_balanced_pgdat), else it fails
 *    and wakes kswapd, which reclaims (demotes) from the LRU tail until free DRAM reaches the promo
 *    watermark, within the same epoch (kswapd runs beside the faulting task; the SWAP_CLUSTER_MAX
 *    floor of 32 pages is left out, as it would be much of a simulated node); kswapd also runs
 *    when free DRAM falls below
 *    the low watermark. Watermark gaps are 0.1 % of DRAM (watermark_scale_factor 10). The LRU is a
 *    second-chance list: reclaim keeps (and moves back) a page whose accessed bit was set since
 *    reclaim last looked at it;
 *  - hint faults cost CPU (2 µs each, fault + do_numa_page) and so does unmapping (20 ns a page).
 * Main knob for the sweep: numa_balancing_promote_rate_limit_MBps (default 65536).
 */
export class TppSim implements SimPolicy {
  readonly name: string = 'tpp';
  readonly scans = false;
  static readonly SCAN_PERIOD_MS = 1000;
  static readonly SCAN_SIZE_BYTES = 256 * 1048576;
  static readonly HOT_THRESHOLD_MS = 1000;
  static readonly THRESHOLD_PERIOD_MS = 60_000;
  static readonly ADJUST_STEPS = 16;
  static readonly FAULT_NS = 2000;
  static readonly UNMAP_NS = 20;
  private view!: SimView;
  private scanTime!: Float64Array;
  private protNone!: Uint8Array;
  private referenced!: Uint8Array;
  private inLru!: Uint8Array;
  private lru: number[] = [];
  private lruHead = 0;
  private cursor = 0;
  private nextScanMs = 0;
  private threshold = 0;
  private thStartMs = 0;
  private thCandidates = 0;
  private rlStartMs = 0;
  private rlCandidates = 0;
  private candidates = 0;
  private readonly rateLimitMBps: number;

  constructor(rateLimitMBps?: number) {
    this.rateLimitMBps = rateLimitMBps ?? 65536;
    if (rateLimitMBps !== undefined) this.name = `tpp@${rateLimitMBps}MBps`;
  }

  init(view: SimView): void {
    this.view = view;
    const n = view.meta.pages;
    this.scanTime = new Float64Array(n);
    this.protNone = new Uint8Array(n);
    this.referenced = new Uint8Array(n);
    this.inLru = new Uint8Array(n);
    this.nextScanMs = TppSim.SCAN_PERIOD_MS;
  }

  plan(): { epochsPerScan: number; scansPerRound: number } {
    return { epochsPerScan: 1e6, scansPerRound: 255 };
  }

  endRound(): null {
    return null;
  }

  afterEpoch(ev: EpochTouches): Moves | null {
    const view = this.view;
    const { capacity, cfg } = view;
    const gap = Math.max(1, Math.ceil(0.001 * capacity));
    const high = 3 * gap;
    const low = 2 * gap;
    const promo = 4 * gap;
    const enough = promo + capacity / 16;
    const rateLimit = (this.rateLimitMBps * 1048576) / cfg.unitBytes;
    const t0 = ev.epoch * cfg.epochMs;
    const promote: number[] = [];
    const demote: number[] = [];
    let free = capacity - view.dramUsed();
    const faults: number[] = [];
    for (let i = 0; i < ev.length; i++) {
      const p = ev.pages[i]!;
      const t = view.tierOf(p);
      if (t === TIER_DRAM) {
        this.referenced[p] = 1;
        if (!this.inLru[p]) this.enqueue(p);
      } else if (t === TIER_SLOW && this.protNone[p]) faults.push(i);
    }
    // Hint faults in the order they happen.
    faults.sort((a, b) => ev.firstAccessMs[a]! - ev.firstAccessMs[b]!);
    view.chargeTracking(faults.length * TppSim.FAULT_NS);
    for (const i of faults) {
      const p = ev.pages[i]!;
      const now = t0 + ev.firstAccessMs[i]!;
      this.protNone[p] = 0;
      let migrate: boolean;
      if (free > enough) {
        this.threshold = 0;
        migrate = true;
      } else {
        this.adjustThreshold(now, rateLimit);
        const th = this.threshold || TppSim.HOT_THRESHOLD_MS;
        if (now - this.scanTime[p]! >= th) migrate = false;
        else migrate = !this.rateLimited(now, rateLimit);
      }
      if (!migrate) continue;
      if (free - 1 < high) {
        // migrate_balanced_pgdat failed: the promotion is lost, kswapd is woken and reclaims now.
        free += this.reclaim(promo - free, demote);
        continue;
      }
      promote.push(p);
      free--;
      this.referenced[p] = 1;
      this.enqueue(p);
    }
    // kswapd below the low watermark (a failed promotion already woke it above).
    if (free < low) free += this.reclaim(high - free, demote);
    // task_numa_work at the next scan period: unmap the next 256 MiB of slow pages.
    const tEnd = t0 + cfg.epochMs;
    while (tEnd >= this.nextScanMs) {
      this.unmapScan(this.nextScanMs, demote);
      this.nextScanMs += TppSim.SCAN_PERIOD_MS;
    }
    return promote.length || demote.length ? { promote, demote } : null;
  }

  private enqueue(p: number): void {
    this.inLru[p] = 1;
    this.lru.push(p);
  }

  /** kswapd: demotes up to `want` pages from the LRU tail, giving referenced pages a second chance. */
  private reclaim(want: number, demote: number[]): number {
    let freed = 0;
    let looked = 0;
    const limit = 2 * (this.lru.length - this.lruHead) + 1;
    while (freed < want && this.lruHead < this.lru.length && looked++ < limit) {
      const p = this.lru[this.lruHead++]!;
      this.inLru[p] = 0;
      if (this.view.tierOf(p) !== TIER_DRAM) continue;
      if (this.referenced[p]) {
        this.referenced[p] = 0;
        this.enqueue(p);
        continue;
      }
      demote.push(p);
      this.protNone[p] = 0;
      freed++;
    }
    if (this.lruHead > 4096 && this.lruHead * 2 > this.lru.length) {
      this.lru = this.lru.slice(this.lruHead);
      this.lruHead = 0;
    }
    return freed;
  }

  private unmapScan(nowMs: number, demoted: number[]): void {
    const n = this.view.meta.pages;
    const justDemoted = new Set(demoted);
    let budget = Math.max(1, Math.floor(TppSim.SCAN_SIZE_BYTES / this.view.cfg.unitBytes));
    let changed = 0;
    for (let k = 0; k < n && budget > 0; k++) {
      const p = this.cursor;
      this.cursor = (this.cursor + 1) % n;
      const t = this.view.tierOf(p);
      if (t === TIER_NONE) continue;
      budget--;
      if (t !== TIER_SLOW && !justDemoted.has(p)) continue;
      if (this.protNone[p]) continue;
      this.protNone[p] = 1;
      this.scanTime[p] = nowMs;
      changed++;
    }
    this.view.chargeTracking(changed * TppSim.UNMAP_NS);
  }

  private adjustThreshold(now: number, rateLimit: number): void {
    if (now - this.thStartMs <= TppSim.THRESHOLD_PERIOD_MS) return;
    this.thStartMs = now;
    const ref = TppSim.HOT_THRESHOLD_MS;
    const refCand = (rateLimit * TppSim.THRESHOLD_PERIOD_MS) / 1000;
    const diff = this.candidates - this.thCandidates;
    const unit = (ref * 2) / TppSim.ADJUST_STEPS;
    let th = this.threshold || ref;
    if (diff > (refCand * 11) / 10) th = Math.max(th - unit, unit);
    else if (diff < (refCand * 9) / 10) th = Math.min(th + unit, ref * 2);
    this.thCandidates = this.candidates;
    this.threshold = th;
  }

  private rateLimited(now: number, rateLimit: number): boolean {
    this.candidates++;
    if (now - this.rlStartMs > 1000) {
      this.rlStartMs = now;
      this.rlCandidates = this.candidates;
    }
    return this.candidates - this.rlCandidates >= rateLimit;
  }
}

/**
 * oracle: each epoch DRAM holds that epoch's most accessed pages (ties: lower page id), chosen
 * with knowledge of the epoch; migration is free. A lower bound on cost, not a real policy.
 */
export class OracleSim implements SimPolicy {
  readonly name = 'oracle';
  readonly migrationFree = true;
  readonly scans = false;
  private view!: SimView;
  private want!: Uint8Array;

  init(view: SimView): void {
    this.view = view;
    this.want = new Uint8Array(view.meta.pages);
  }

  plan(): { epochsPerScan: number; scansPerRound: number } {
    return { epochsPerScan: 1e6, scansPerRound: 255 };
  }

  endRound(): null {
    return null;
  }

  beforeEpoch(batch: EpochBatch): Moves | null {
    const { capacity } = this.view;
    const tierOf = this.view.tierOf;
    // Sum duplicate rows per page, then rank.
    const acc = new Map<number, number>();
    for (let i = 0; i < batch.length; i++) {
      const a = batch.accesses[i]!;
      if (a > 0) acc.set(batch.pages[i]!, (acc.get(batch.pages[i]!) ?? 0) + a);
    }
    const ranked = [...acc.entries()].sort((x, y) => y[1] - x[1] || x[0] - y[0]);
    const top = ranked.slice(0, capacity).map(([p]) => p);
    const want = this.want;
    for (const p of top) want[p] = 1;
    const promote = top.filter((p) => tierOf(p) !== TIER_DRAM);
    const free = capacity - this.view.dramUsed();
    const demote: number[] = [];
    let need = promote.length - free;
    for (let p = 0; p < this.view.meta.pages && need > 0; p++) {
      if (tierOf(p) === TIER_DRAM && !want[p]) {
        demote.push(p);
        need--;
      }
    }
    for (const p of top) want[p] = 0;
    return promote.length || demote.length ? { promote, demote } : null;
  }
}

/**
 * clairvoyant: a reference that knows the future and pays for every move. Before every epoch e it
 * looks at the accesses of [e, e + W): a slow page takes a free DRAM unit when its window accesses
 * × (slow − DRAM latency) exceed one migration, and swaps with the DRAM page of fewest window
 * accesses while the difference exceeds two migrations. Free DRAM is kept for the pages first
 * touched in the window (the engine places them in DRAM while there is room). With
 * `planFirstTouch` it also makes that room: the engine hands free DRAM to epoch e's new pages in
 * trace order, so it demotes the k DRAM pages of fewest window accesses (each demotion charged as
 * any move) for the k new pages beyond the free room, choosing the k whose summed benefit — new
 * pages' window accesses minus the demoted ones', × the latency gap, minus k migrations — is
 * largest, and none when no k gains. It demotes just before the epoch the new pages arrive,
 * never earlier, since it plans again every epoch. `bestClairvoyant` runs it for W = 1, 2, 4, …
 * and keeps the cheapest: a target a causal policy can approach, unlike the free oracle.
 */
export class ClairvoyantSim implements SimPolicy {
  readonly name: string;
  readonly scans = false;
  private view!: SimView;
  private acc!: Float64Array;
  private isNew!: Uint8Array;

  constructor(
    private readonly batches: readonly EpochBatch[],
    private readonly window: number,
    private readonly planFirstTouch = true,
  ) {
    this.name = `clairvoyant@${window}${planFirstTouch ? '' : '/no-first-touch-plan'}`;
  }

  init(view: SimView): void {
    this.view = view;
    this.acc = new Float64Array(view.meta.pages);
    this.isNew = new Uint8Array(view.meta.pages);
    for (let e = 0; e < Math.min(this.window, this.batches.length); e++) this.add(e, 1);
  }

  private add(e: number, sign: number): void {
    const b = this.batches[e];
    if (!b) return;
    for (let i = 0; i < b.length; i++) this.acc[b.pages[i]!] += sign * b.accesses[i]!;
  }

  plan(): { epochsPerScan: number; scansPerRound: number } {
    return { epochsPerScan: 1e6, scansPerRound: 255 };
  }

  endRound(): null {
    return null;
  }

  beforeEpoch(batch: EpochBatch): Moves | null {
    const e = batch.epoch;
    if (e > 0) {
      this.add(e - 1, -1);
      this.add(e + this.window - 1, 1);
    }
    const { capacity, cfg, tierOf } = this.view;
    const acc = this.acc;
    const gain = cfg.slowLatencyNs - cfg.dramLatencyNs;
    const move = cfg.unitBytes / cfg.migrationGBps;
    const up: number[] = [];
    const down: number[] = [];
    let firstTouch = 0;
    for (let p = 0; p < this.view.meta.pages; p++) {
      const t = tierOf(p);
      if (t === TIER_DRAM) down.push(p);
      else if (t === TIER_SLOW) {
        if (acc[p]! * gain > move) up.push(p);
      } else if (acc[p]! > 0.5) firstTouch++;
    }
    // This epoch's new pages in the order the engine places them.
    const arriving: number[] = [];
    if (this.planFirstTouch) {
      for (let i = 0; i < batch.length; i++) {
        const p = batch.pages[i]!;
        if (batch.accesses[i]! > 0 && tierOf(p) === TIER_NONE && this.isNew[p] === 0) {
          this.isNew[p] = 1;
          arriving.push(p);
        }
      }
      for (const p of arriving) this.isNew[p] = 0;
    }
    const dramFree = capacity - this.view.dramUsed();
    if (up.length === 0 && arriving.length <= dramFree) return null;
    up.sort((a, b) => acc[b]! - acc[a]! || a - b);
    down.sort((a, b) => acc[a]! - acc[b]! || a - b);
    // Untouched pages that first touch would place in DRAM during the window keep their room.
    let free = Math.max(0, dramFree - firstTouch);
    const promote: number[] = [];
    const demote: number[] = [];
    let i = 0;
    for (; i < up.length && free > 0; i++, free--) promote.push(up[i]!);
    let j = 0;
    for (; i < up.length && j < down.length; i++, j++) {
      if ((acc[up[i]!]! - acc[down[j]!]!) * gain <= 2 * move) break;
      promote.push(up[i]!);
      demote.push(down[j]!);
    }
    // Room for the new pages that would otherwise land in the slow tier.
    const room = dramFree - promote.length + demote.length;
    let bestGain = 0;
    let bestK = 0;
    let sum = 0;
    for (let k = 1; room + k - 1 < arriving.length && j + k - 1 < down.length; k++) {
      sum += (acc[arriving[room + k - 1]!]! - acc[down[j + k - 1]!]!) * gain - move;
      if (sum > bestGain) {
        bestGain = sum;
        bestK = k;
      }
    }
    for (let k = 0; k < bestK; k++) demote.push(down[j + k]!);
    return promote.length || demote.length ? { promote, demote } : null;
  }
}

/**
 * The paying clairvoyant at its best setting in hindsight: window W = 1, 2, 4, … 256 epochs, each
 * with and without first-touch planning (planning is a greedy rule that can lose a little where a
 * page demoted for a newcomer comes back after the window, so the better of the two is kept and the
 * reference never rises above the one that does not plan). `planFirstTouch` fixes the choice;
 * `false` is the earlier reference that never makes room for new pages.
 */
export function bestClairvoyant(
  meta: TraceMeta,
  batches: readonly EpochBatch[],
  cfg: SimConfig,
  opts: { planFirstTouch?: boolean } = {},
): SimResult & { window: number; firstTouchPlan: boolean } {
  let best: (SimResult & { window: number; firstTouchPlan: boolean }) | null = null;
  const plans = opts.planFirstTouch === undefined ? [true, false] : [opts.planFirstTouch];
  for (const plan of plans) {
    for (let w = 1; w <= 256; w *= 2) {
      const r = simulateSync(meta, batches, new ClairvoyantSim(batches, w, plan), cfg);
      if (!best || r.slowdown < best.slowdown) best = { ...r, policy: 'clairvoyant', window: w, firstTouchPlan: plan };
      if (w >= batches.length) break;
    }
  }
  return best!;
}
