/**
 * The policies the simulator compares. `vmtier` runs src/policy — the code the daemon runs — and
 * the baselines follow their published descriptions (../shared/ANCHORS.md, issue 5). Every
 * baseline parameter is listed here and in README "Policy and simulator"; none is tuned against
 * vmtier.
 */
import { TieringPolicy, TIER_NONE as P_NONE, parsePolicy, type TierPolicy, type TierPolicyInput, type VmRoundInput, type ScanPlan, type TieringOptions } from '../policy/index.js';
import { VmtierError } from '../errors.js';
import {
  SIM_PAGE_BYTES,
  TIER_DRAM,
  TIER_NONE,
  TIER_SLOW,
  type Moves,
  type RoundContext,
  type SimPolicy,
  type SimView,
} from './engine.js';
import type { EpochBatch } from './trace.js';

export const POLICY_NAMES = ['vmtier', 'static', 'memopt', 'tpp', 'oracle'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

export function makePolicy(name: string, opts: { vmtierPolicy?: TierPolicyInput } = {}): SimPolicy {
  switch (name) {
    case 'vmtier':
      return new VmtierSim(opts.vmtierPolicy);
    case 'static':
      return new StaticSim();
    case 'memopt':
      return new MemoptSim();
    case 'tpp':
      return new TppSim();
    case 'oracle':
      return new OracleSim();
    default:
      throw new VmtierError('INVALID_INPUT', `unknown policy "${name}" (one of ${POLICY_NAMES.join(', ')})`);
  }
}

/**
 * vmtier: the daemon's decision core. One epoch is the base scan interval, so the plan's interval
 * multiplier is rounded to whole epochs (at least 1). All VMs are scanned in lockstep, as one
 * daemon clock would: the round uses the fastest plan any VM asks for.
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
    this.core = new TieringPolicy({ minScansPerRound: 2, ...tiering, minIntervalMultiplier: 1 });
  }

  init(view: SimView): void {
    this.view = view;
    this.plans = view.meta.vms.map(() => this.core.initialPlan(this.policy));
  }

  plan(): { epochsPerScan: number; scansPerRound: number } {
    let m = Infinity;
    let n = Infinity;
    for (const p of this.plans) {
      m = Math.min(m, Math.max(1, Math.round(p.intervalMultiplier)));
      n = Math.min(n, p.scansPerRound);
    }
    return { epochsPerScan: m, scansPerRound: n };
  }

  endRound(ctx: RoundContext): Moves {
    const { meta, tiers } = this.view;
    const plan: ScanPlan = { intervalMultiplier: ctx.epochsPerScan, scansPerRound: ctx.scansPerRound };
    const vms: VmRoundInput[] = meta.vms.map((vm, v) => ({
      vmId: vm,
      policy: this.policy,
      counts: ctx.counts.subarray(meta.vmOffsets[v]!, meta.vmOffsets[v + 1]!),
      tiers: tiers.subarray(meta.vmOffsets[v]!, meta.vmOffsets[v + 1]!),
      pageBytes: SIM_PAGE_BYTES,
      plan,
    }));
    const d = this.core.decide({ dramCapacityBytes: this.view.capacity * SIM_PAGE_BYTES, vms });
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

/** static: first-touch placement, never migrates. */
export class StaticSim implements SimPolicy {
  readonly name = 'static';
  init(): void {}
  plan(): { epochsPerScan: number; scansPerRound: number } {
    return { epochsPerScan: 1, scansPerRound: 1 };
  }
  endRound(): null {
    return null;
  }
}

/**
 * memopt: intel/memory-optimizer as published (the RFC's daemon).
 *  - N = 4 scans per round (the RFC's 3..10; the same N as vmtier's default so that only the
 *    decision rules differ); the scan interval (whole epochs, 1..16) is auto-tuned by a
 *    least-squares fit over the last 5 (interval, young pages per scan) points toward
 *    young = all × dram_percent / 200 = half the DRAM capacity;
 *  - hot = slow-tier pages with count > N/2, from the highest count down; cold = DRAM pages with
 *    count <= N/2, from the lowest count up (select_top_pages);
 *  - budget 256 MiB per period (one round) = 65536 pages; the DRAM deficit (free DRAM) is filled
 *    by promotions alone, the rest of the budget is split evenly into 1:1 promote/demote pairs;
 *  - a pair is skipped (and pairing stops) when hot count − cold count < 2 (anti-thrash).
 */
export class MemoptSim implements SimPolicy {
  readonly name = 'memopt';
  static readonly N = 4;
  static readonly BUDGET_PAGES = (256 * 1048576) / SIM_PAGE_BYTES;
  static readonly MAX_INTERVAL = 16;
  private view!: SimView;
  private interval = 1;
  private readonly history: [number, number][] = [];

  init(view: SimView): void {
    this.view = view;
  }

  plan(): { epochsPerScan: number; scansPerRound: number } {
    return { epochsPerScan: this.interval, scansPerRound: MemoptSim.N };
  }

  endRound(ctx: RoundContext): Moves {
    const { tiers, capacity } = this.view;
    const N = ctx.scansPerRound;
    const counts = ctx.counts;
    // Bucket pages by count: hot from N down, cold from 0 up, ties in page order.
    const hotBuckets: number[][] = Array.from({ length: N + 1 }, () => []);
    const coldBuckets: number[][] = Array.from({ length: N + 1 }, () => []);
    let young = 0;
    for (let p = 0; p < tiers.length; p++) {
      const t = tiers[p];
      const c = counts[p]!;
      young += c;
      if (t === TIER_SLOW && c * 2 > N) hotBuckets[c]!.push(p);
      else if (t === TIER_DRAM && c * 2 <= N) coldBuckets[c]!.push(p);
    }
    const hot: number[] = [];
    for (let c = N; c >= 0; c--) for (const p of hotBuckets[c]!) hot.push(p);
    const cold: number[] = [];
    for (let c = 0; c <= N; c++) for (const p of coldBuckets[c]!) cold.push(p);
    const free = capacity - this.view.dramUsed();
    const budget = MemoptSim.BUDGET_PAGES;
    const promoteOnly = Math.min(Math.max(0, free), hot.length, budget);
    const promote = hot.slice(0, promoteOnly);
    const demote: number[] = [];
    const pairs = Math.floor((budget - promoteOnly) / 2);
    for (let i = 0; i < pairs && promoteOnly + i < hot.length && i < cold.length; i++) {
      const h = hot[promoteOnly + i]!;
      const c = cold[i]!;
      if (counts[h]! - counts[c]! < 2) break;
      promote.push(h);
      demote.push(c);
    }
    this.tune(ctx.epochsPerScan, young / N, capacity / 2);
    return { promote, demote };
  }

  /** Interval fitting: solve young(interval) = target on a least-squares line through recent points. */
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
    this.interval = Math.min(MemoptSim.MAX_INTERVAL, Math.max(1, Math.round(next)));
  }
}

/**
 * tpp: Meta's TPP as upstream Linux runs it (numa_balancing=2 + demotion in reclaim).
 *  - hint faults: every epoch is one scan, and a slow-tier page the scan sees faults;
 *  - promotion: a faulting slow page is promoted if it is on the active LRU — it faulted before
 *    while in the slow tier within the last ACTIVE_WINDOW epochs (TPP's active-LRU check, which
 *    filters one-off touches) — in fault order (the most accessed page first: the engine gives tpp
 *    the round's true access counts for this, which no tracker could), under a promotion rate limit of 1/10 of the
 *    migration bandwidth over the epoch's simulated time (the kernel documentation's rule of thumb
 *    for numa_balancing_promote_rate_limit_MBps: "less than 1/10 of the PMEM node write
 *    bandwidth"; the 65536 MB/s default would be no limit at all);
 *  - demotion: kswapd-style reclaim from the LRU tail (least recently seen DRAM pages) makes room
 *    for the promotions that fit the rate limit and keeps free DRAM at the demotion watermark (2% of
 *    DRAM, TPP's demote_scale_factor); a promotion that finds no free page wakes that reclaim, so
 *    the reclaimed page takes effect with the promotion from the next epoch.
 */
export class TppSim implements SimPolicy {
  readonly name = 'tpp';
  static readonly RATE_LIMIT_SHARE = 0.1;
  static readonly HEADROOM = 0.02;
  static readonly ACTIVE_WINDOW = 16;
  private view!: SimView;
  // The DRAM LRU as a doubly linked list over page ids; head = most recently seen.
  private prev!: Int32Array;
  private next!: Int32Array;
  private inLru!: Uint8Array;
  private head = -1;
  private tail = -1;
  private slowSeen!: Int32Array;

  constructor(private readonly activeCheck = true) {}

  init(view: SimView): void {
    this.view = view;
    const n = view.tiers.length;
    this.prev = new Int32Array(n).fill(-1);
    this.next = new Int32Array(n).fill(-1);
    this.inLru = new Uint8Array(n);
    this.slowSeen = new Int32Array(n).fill(-0x40000000);
  }

  plan(): { epochsPerScan: number; scansPerRound: number } {
    return { epochsPerScan: 1, scansPerRound: 1 };
  }

  private unlink(p: number): void {
    const a = this.prev[p]!;
    const b = this.next[p]!;
    if (a >= 0) this.next[a] = b;
    else this.head = b;
    if (b >= 0) this.prev[b] = a;
    else this.tail = a;
    this.prev[p] = -1;
    this.next[p] = -1;
    this.inLru[p] = 0;
  }

  private pushHead(p: number): void {
    if (this.inLru[p]) this.unlink(p);
    this.prev[p] = -1;
    this.next[p] = this.head;
    if (this.head >= 0) this.prev[this.head] = p;
    this.head = p;
    if (this.tail < 0) this.tail = p;
    this.inLru[p] = 1;
  }

  endRound(ctx: RoundContext): Moves {
    const { tiers, capacity } = this.view;
    const e = ctx.epoch;
    const candidates: number[] = [];
    for (const p of ctx.seen) {
      if (tiers[p] === TIER_DRAM) this.pushHead(p);
      else if (tiers[p] === TIER_SLOW) {
        if (!this.activeCheck || e - this.slowSeen[p]! <= TppSim.ACTIVE_WINDOW) candidates.push(p);
        this.slowSeen[p] = e;
      }
    }
    // Hint faults come in access order: a page accessed k times in the epoch faults, on average,
    // 1/(k+1) into it. Ordering by accesses gives tpp the faults the kernel would see first.
    candidates.sort((a, b) => ctx.accesses[b]! - ctx.accesses[a]! || a - b);
    const free = capacity - this.view.dramUsed();
    const limit = Math.floor((TppSim.RATE_LIMIT_SHARE * this.view.cfg.migrationGBps * ctx.elapsedNs) / SIM_PAGE_BYTES);
    const promoteN = Math.min(candidates.length, limit, capacity);
    const promote = candidates.slice(0, promoteN);
    // kswapd: reclaim (demote) from the LRU tail until the promotions fit and free DRAM is back at
    // the watermark.
    const watermark = Math.ceil(TppSim.HEADROOM * capacity);
    let need = Math.min(watermark, capacity - promoteN) - (free - promoteN);
    const demote: number[] = [];
    while (need > 0 && this.tail >= 0) {
      const p = this.tail;
      this.unlink(p);
      demote.push(p);
      this.slowSeen[p] = -0x40000000;
      need--;
    }
    for (const p of promote) {
      this.pushHead(p);
      this.slowSeen[p] = -0x40000000;
    }
    return { promote, demote };
  }
}

/**
 * oracle: each epoch DRAM holds that epoch's most accessed pages (ties: lower page id), chosen
 * with knowledge of the epoch; migration is free. A lower bound on cost, not a real policy.
 */
export class OracleSim implements SimPolicy {
  readonly name = 'oracle';
  readonly migrationFree = true;
  private view!: SimView;
  private want!: Uint8Array;

  init(view: SimView): void {
    this.view = view;
    this.want = new Uint8Array(view.tiers.length);
  }

  plan(): { epochsPerScan: number; scansPerRound: number } {
    return { epochsPerScan: 1, scansPerRound: 1 };
  }

  endRound(): null {
    return null;
  }

  beforeEpoch(batch: EpochBatch): Moves | null {
    const { tiers, capacity } = this.view;
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
    const promote = top.filter((p) => tiers[p] !== TIER_DRAM);
    const free = capacity - this.view.dramUsed();
    const demote: number[] = [];
    let need = promote.length - free;
    for (let p = 0; p < tiers.length && need > 0; p++) {
      if (tiers[p] === TIER_DRAM && !want[p]) {
        demote.push(p);
        need--;
      }
    }
    for (const p of top) want[p] = 0;
    return promote.length || demote.length ? { promote, demote } : null;
  }
}

