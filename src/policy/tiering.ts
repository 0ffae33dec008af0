/**
 * vmtier's decision core: one `decide` call per round for all VMs that share a DRAM pool.
 *
 * Per page it keeps a heat (EWMA of the fraction of scans that saw the page), how many rounds in a
 * row the page has been cold, and its last move (round, direction) with a cool-down. Per round:
 *  1. one pass over every page updates that state and collects hot slow-tier pages and DRAM pages
 *     whose coldness is confirmed (cold = count <= floor(coldMaxFraction*N) for coldConfirmRounds
 *     rounds); counts between the two thresholds are neither (hysteresis);
 *  2. DRAM is split between VMs (floors, weights, demand, ceilings: share.ts);
 *  3. a VM above its share gives back confirmed-cold pages (and, above its ceiling or when another
 *     VM waits, its least-hot non-hot pages); hot pages fill the VM's free share; the rest are
 *     swapped 1:1 against confirmed-cold pages when clearly hotter. The migration budget is split
 *     between promotion and demotion in proportion to what the DRAM pressure requires;
 *  4. a page moved back within pingPongWindowRounds is frozen for coolDownRounds;
 *  5. the scan plan is tuned: the seed's rule (a round's hot pages under half of the DRAM share),
 *     shorter rounds when the hot set shifts, longer intervals when it is small and stable.
 *
 * Pure and deterministic: no I/O, clocks or randomness. O(pages) per round: candidates are ordered
 * by a counting sort on a one-byte heat key, ties by page number.
 */
import { VmtierError } from '../errors.js';
import type { TierPolicy } from './schema.js';
import { splitDram, type ShareRequest } from './share.js';
import {
  TIER_DRAM,
  TIER_NONE,
  TIER_SLOW,
  type Decision,
  type RoundInput,
  type ScanPlan,
  type VmDecision,
  type VmRoundInput,
} from './types.js';

export interface TieringOptions {
  /** Smallest interval multiplier the caller can run (the simulator cannot scan faster than an epoch: 1). */
  minIntervalMultiplier?: number;
  maxIntervalMultiplier?: number;
  /** Fewest scans per round used while the workload shifts. */
  minScansPerRound?: number;
  /** Weight of the newest round in a page's heat. */
  heatAlpha?: number;
  /** A hot page displaces a confirmed-cold one only if its heat is higher by this much (0..1). */
  swapMargin?: number;
  /** Per-round decay of the long-run seen/scanned counters the access-rate estimate comes from. */
  rateDecay?: number;
  /** A rate swap needs the slow page's estimated accesses per scan to exceed the DRAM page's by this. */
  rateMargin?: number;
  /** The same for a short-memory estimate, which follows a shifting workload sooner (0 disables it). */
  fastRateDecay?: number;
  fastRateMargin?: number;
}

const HEAT_KEYS = 256;
/** A page seen in at least this fraction of scans counts toward its VM's DRAM demand. */
const DEMAND_SEEN = 1 / 4;
/** Hot pages whose heat was below this before the round are "new": many of them mean a shift. */
const NEW_HOT_HEAT = 0.25;
const NEVER = -0x40000000;
/** A rate estimate needs this many rounds' worth of decayed scans before it may move a page. */
const RATE_EVIDENCE_ROUNDS = 4;
/** Rate sort key: 1/32 access per scan resolution, up to 8 accesses per scan. */
const RATE_KEY_SCALE = 32;
/** A change of the seen fraction between the short and the long memory that counts as a trend. */
const RATE_TREND = 0.1;
/** Width of the rate confidence interval, in standard errors. */
const RATE_Z = 0.5;

/** Per-VM, per-page state. */
class VmState {
  pages = 0;
  heat = new Float32Array(0);
  coldRounds = new Uint16Array(0);
  hotStreak = new Uint8Array(0);
  notHotRounds = new Uint16Array(0);
  lastMoveRound = new Int32Array(0);
  lastMoveDir = new Int8Array(0);
  coolUntil = new Int32Array(0);
  /** Decayed number of scans that saw the page (long and short memory): the rate estimates' evidence. */
  seenScans = new Float32Array(0);
  fastSeenScans = new Float32Array(0);
  /** Decayed number of scans taken; one per VM, as every page is scanned by every scan. */
  takenScans = 0;
  fastTakenScans = 0;
  plan: ScanPlan | null = null;
  stableRounds = 0;
  catchUpRounds = 0;

  resize(pages: number): void {
    if (pages === this.pages) return;
    const grow = <T extends Float32Array | Uint16Array | Uint8Array | Int32Array | Int8Array>(a: T, make: (n: number) => T, fillValue = 0): T => {
      const b = make(pages);
      if (fillValue !== 0) b.fill(fillValue);
      b.set(a.subarray(0, Math.min(a.length, pages)));
      return b;
    };
    this.heat = grow(this.heat, (n) => new Float32Array(n));
    this.coldRounds = grow(this.coldRounds, (n) => new Uint16Array(n));
    this.hotStreak = grow(this.hotStreak, (n) => new Uint8Array(n));
    this.notHotRounds = grow(this.notHotRounds, (n) => new Uint16Array(n));
    this.lastMoveRound = grow(this.lastMoveRound, (n) => new Int32Array(n), NEVER);
    this.lastMoveDir = grow(this.lastMoveDir, (n) => new Int8Array(n));
    this.coolUntil = grow(this.coolUntil, (n) => new Int32Array(n), NEVER);
    this.seenScans = grow(this.seenScans, (n) => new Float32Array(n));
    this.fastSeenScans = grow(this.fastSeenScans, (n) => new Float32Array(n));
    this.pages = pages;
  }
}

/** What the first pass learned about one VM. */
interface VmScan {
  input: VmRoundInput;
  st: VmState;
  sizeOf: (p: number) => number;
  hotT: number;
  hotPages: number;
  hotBytes: number;
  newHot: number;
  shift: boolean;
  hotSlow: Int32Array;
  hotSlowBytes: number;
  cold: Int32Array;
  /** DRAM pages not hot for coldConfirmRounds rounds but not cold either, least hot first. */
  warm: Int32Array;
  dramBytes: number;
  demandBytes: number;
  budgetBytes: number;
}

export class TieringPolicy {
  private readonly vms = new Map<string, VmState>();
  private round = 0;
  private readonly opt: Required<TieringOptions>;

  constructor(options: TieringOptions = {}) {
    this.opt = {
      minIntervalMultiplier: options.minIntervalMultiplier ?? 1 / 100,
      maxIntervalMultiplier: options.maxIntervalMultiplier ?? 8,
      minScansPerRound: options.minScansPerRound ?? 2,
      heatAlpha: options.heatAlpha ?? 0.5,
      swapMargin: options.swapMargin ?? 0.25,
      rateDecay: options.rateDecay ?? 0.98,
      rateMargin: options.rateMargin ?? 0.5,
      fastRateDecay: options.fastRateDecay ?? 0.8,
      fastRateMargin: options.fastRateMargin ?? 0.5,
    };
  }

  /** The plan to gather the first round of a VM with (before any decision). */
  initialPlan(policy: TierPolicy): ScanPlan {
    return { intervalMultiplier: Math.max(1, this.opt.minIntervalMultiplier), scansPerRound: policy.scan.scansPerRound };
  }

  /** Drops a VM's state (VM destroyed). */
  forget(vmId: string): void {
    this.vms.delete(vmId);
  }

  decide(input: RoundInput): Decision {
    const round = ++this.round;
    const scans: VmScan[] = input.vms.map((vm) => this.scanVm(vm, round));
    let dramUsed = 0;
    for (const s of scans) dramUsed += s.dramBytes;

    const reqs: ShareRequest[] = scans.map((s) => ({
      floorBytes: s.input.policy.dram.minBytes,
      ceilingBytes: s.input.policy.dram.maxBytes ?? Infinity,
      weight: s.input.policy.dram.weight,
      demandBytes: s.demandBytes,
    }));
    const shares = splitDram(input.dramCapacityBytes, reqs);

    // Pressure from outside a VM: some VM has hot pages waiting that the free pool cannot take.
    let hotWaiting = 0;
    for (const s of scans) hotWaiting += s.hotSlowBytes;
    const contended = input.dramShort === true || hotWaiting > input.dramCapacityBytes - dramUsed;

    const out: VmDecision[] = [];
    const plans: { promote: number[]; demote: number[]; pingPongs: number; bp: number; bd: number }[] = [];
    // Pass 1: every VM's demotions, so that promotions anywhere can use the DRAM they free.
    let globalFree = input.dramCapacityBytes - dramUsed;
    for (let i = 0; i < scans.length; i++) {
      const s = scans[i]!;
      const share = shares[i]!;
      const tiering = s.input.policy.mode === 'tier';
      const promoteWant = s.hotSlowBytes;
      const free = share - s.dramBytes;
      const demoteCold = s.input.policy.dram.demote === 'cold';
      let coldBytes = 0;
      if (demoteCold) for (const p of s.cold) coldBytes += s.sizeOf(p);
      const demoteNeed = Math.max(Math.max(0, promoteWant - Math.max(0, free)) + Math.max(0, -free), coldBytes);
      const split = promoteWant + demoteNeed > 0 ? demoteNeed / (promoteWant + demoteNeed) : 0.5;
      const plan = { promote: [] as number[], demote: [] as number[], pingPongs: 0, bd: s.budgetBytes * split, bp: s.budgetBytes * (1 - split) };
      plans.push(plan);
      if (!tiering) continue;
      // Above its share a VM gives DRAM back only when someone needs it (hot pages waiting that
      // free DRAM cannot take) or when it is above its ceiling: idle DRAM is not worth a migration.
      const ceilingNow = s.input.policy.dram.maxBytes ?? Infinity;
      let excess = contended || s.dramBytes > ceilingNow ? s.dramBytes - share : 0;
      let ci = 0;
      // demote 'cold': every confirmed-cold page goes (within the budget), needed or not, so that
      // DRAM is free before anyone asks for it.
      while ((excess > 0 || demoteCold) && ci < s.cold.length) {
        const p = s.cold[ci]!;
        const b = s.sizeOf(p);
        if (b > plan.bd) break;
        ci++;
        plan.demote.push(p);
        plan.bd -= b;
        excess -= b;
        globalFree += b;
      }
      s.cold = s.cold.subarray(ci);
      const ceiling = s.input.policy.dram.maxBytes ?? Infinity;
      if (excess > 0 && (contended || s.dramBytes > ceiling)) {
        // Forced: the least-hot DRAM pages that were not hot this round, cold-confirmed or not.
        const mustFree = s.dramBytes > ceiling ? Math.max(excess, s.dramBytes - ceiling) : excess;
        const victims = this.forcedVictims(s, round, new Set(plan.demote));
        let freed = 0;
        for (let k = 0; k < victims.length && freed < mustFree; k++) {
          const p = victims[k]!;
          const b = s.sizeOf(p);
          // A ceiling is a hard limit: it overrides the migration budget.
          if (b > plan.bd && s.dramBytes - freed <= ceiling) break;
          plan.demote.push(p);
          plan.bd -= b;
          freed += b;
          globalFree += b;
        }
      }
    }
    // Pass 2: promotions into free share, then swaps against confirmed-cold pages.
    for (let i = 0; i < scans.length; i++) {
      const s = scans[i]!;
      const plan = plans[i]!;
      if (s.input.policy.mode !== 'tier') continue;
      const heat = s.st.heat;
      let demotedBytes = 0;
      for (const p of plan.demote) demotedBytes += s.sizeOf(p);
      let room = Math.min(shares[i]! - (s.dramBytes - demotedBytes), globalFree);
      const ceiling = s.input.policy.dram.maxBytes ?? Infinity;
      room = Math.min(room, ceiling - (s.dramBytes - demotedBytes));
      let hi = 0;
      for (; hi < s.hotSlow.length; hi++) {
        const p = s.hotSlow[hi]!;
        const b = s.sizeOf(p);
        if (b > room || b > plan.bp) break;
        plan.promote.push(p);
        room -= b;
        globalFree -= b;
        plan.bp -= b;
      }
      // Pages pass 1 already demoted (forced demotions may have taken cold or warm ones).
      const taken = new Set(plan.demote);
      let ci = 0;
      for (; hi < s.hotSlow.length && ci < s.cold.length; hi++) {
        const h = s.hotSlow[hi]!;
        const c = s.cold[ci]!;
        if (taken.has(c)) {
          ci++;
          hi--;
          continue;
        }
        if (heat[h]! < heat[c]! + this.opt.swapMargin) break;
        const bh = s.sizeOf(h);
        const bc = s.sizeOf(c);
        if (bh > plan.bp || bc > plan.bd) break;
        // Mixed page sizes: the cold page must free at least what the hot one takes.
        if (bh > bc + room) {
          ci++;
          hi--;
          continue;
        }
        ci++;
        plan.demote.push(c);
        plan.promote.push(h);
        plan.bp -= bh;
        plan.bd -= bc;
        room += bc - bh;
      }
      // Displacement: with no confirmed-cold page left, a hot page may still take the place of a
      // page that has not been hot for coldConfirmRounds rounds, if the heat gap is twice the
      // swap margin (a DRAM share smaller than the hot set would otherwise freeze on warm pages).
      let wi = 0;
      for (; hi < s.hotSlow.length && wi < s.warm.length; hi++) {
        const h = s.hotSlow[hi]!;
        const c = s.warm[wi]!;
        if (taken.has(c)) {
          wi++;
          hi--;
          continue;
        }
        if (heat[h]! < heat[c]! + 2 * this.opt.swapMargin) break;
        const bh = s.sizeOf(h);
        const bc = s.sizeOf(c);
        if (bh > plan.bp || bc > plan.bd || bh > bc + room) break;
        wi++;
        plan.demote.push(c);
        plan.promote.push(h);
        plan.bp -= bh;
        plan.bd -= bc;
        room += bc - bh;
      }
      // The long memory acts only where the short one agrees (fast ? ... : null = no check).
      this.rateSwaps(s, plan, round, s.st.seenScans, s.st.takenScans, this.opt.rateMargin, this.opt.fastRateDecay > 0 ? { seen: s.st.fastSeenScans, taken: s.st.fastTakenScans } : null);
      if (this.opt.fastRateDecay > 0) this.rateSwaps(s, plan, round, s.st.fastSeenScans, s.st.fastTakenScans, this.opt.fastRateMargin, null);
    }
    for (let i = 0; i < scans.length; i++) {
      const s = scans[i]!;
      const plan = plans[i]!;
      const st = s.st;
      let pingPongs = 0;
      const mark = (p: number, dir: number): void => {
        const t = s.input.policy.thresholds;
        if (st.lastMoveDir[p] === -dir && round - st.lastMoveRound[p]! <= t.pingPongWindowRounds) {
          pingPongs++;
          st.coolUntil[p] = round + t.coolDownRounds;
        }
        st.lastMoveDir[p] = dir;
        st.lastMoveRound[p] = round;
      };
      for (const p of plan.promote) mark(p, 1);
      for (const p of plan.demote) mark(p, -1);
      let cooling = 0;
      for (let p = 0; p < st.pages; p++) if (st.coolUntil[p]! > round) cooling++;
      const { plan: next, reason } = this.nextPlan(s, shares[i]!);
      st.plan = next;
      out.push({
        vmId: s.input.vmId,
        promote: Int32Array.from(plan.promote),
        demote: Int32Array.from(plan.demote),
        plan: next,
        stats: {
          hotPages: s.hotPages,
          hotSlowPages: s.hotSlow.length,
          coldConfirmedPages: s.cold.length,
          dramBytes: s.dramBytes,
          shareBytes: shares[i]!,
          demandBytes: s.demandBytes,
          pingPongs,
          coolingPages: cooling,
          planReason: reason,
        },
      });
    }
    return { round, vms: out };
  }

  private scanVm(vm: VmRoundInput, round: number): VmScan {
    const pages = vm.counts.length;
    if (vm.tiers.length !== pages) {
      throw new VmtierError('INVALID_INPUT', `vm ${vm.vmId}: counts has ${pages} pages but tiers has ${vm.tiers.length}`);
    }
    const pb = vm.pageBytes ?? 4096;
    if (typeof pb !== 'number' && pb.length !== pages) {
      throw new VmtierError('INVALID_INPUT', `vm ${vm.vmId}: pageBytes has ${pb.length} entries for ${pages} pages`);
    }
    const sizeOf = typeof pb === 'number' ? () => pb : (p: number) => pb[p]!;
    let st = this.vms.get(vm.vmId);
    if (!st) {
      st = new VmState();
      this.vms.set(vm.vmId, st);
    }
    st.resize(pages);
    const N = Math.max(1, vm.plan.scansPerRound);
    const th = vm.policy.thresholds;
    const hotT = Math.max(1, Math.ceil(th.hotMinFraction * N - 1e-9));
    const coldT = Math.min(hotT - 1, Math.floor(th.coldMaxFraction * N + 1e-9));
    const alpha = this.opt.heatAlpha;
    const { heat, coldRounds, coolUntil, hotStreak, notHotRounds } = st;
    // Consecutive hot rounds before a promotion (filters one-round bursts); waived in a shift.
    const hotConfirm = th.hotConfirmRounds;
    const counts = vm.counts;
    const tiers = vm.tiers;
    const hotKeys = new Uint8Array(pages);
    const coldKeys = new Uint8Array(pages);
    const hotIdx: number[] = [];
    // Hot slow pages still short of hotConfirmRounds: promoted only when the round is a shift.
    const pendIdx: number[] = [];
    let pendBytes = 0;
    const coldIdx: number[] = [];
    const warmIdx: number[] = [];
    let hotPages = 0, hotBytes = 0, newHot = 0, hotSlowBytes = 0, dramBytes = 0, demandBytes = 0;
    const { seenScans, fastSeenScans } = st;
    const decay = this.opt.rateDecay;
    const fastDecay = this.opt.fastRateDecay;
    st.takenScans = st.takenScans * decay + N;
    st.fastTakenScans = st.fastTakenScans * fastDecay + N;
    for (let p = 0; p < pages; p++) {
      const c = Math.min(counts[p]!, N);
      const h0 = heat[p]!;
      const h = h0 + alpha * (c / N - h0);
      heat[p] = h;
      seenScans[p] = seenScans[p]! * decay + c;
      fastSeenScans[p] = fastSeenScans[p]! * fastDecay + c;
      const t = tiers[p]!;
      if (t === TIER_NONE) {
        coldRounds[p] = 0;
        hotStreak[p] = 0;
        continue;
      }
      const b = typeof pb === 'number' ? pb : pb[p]!;
      const hot = c >= hotT;
      // Hysteresis: a cold round adds to the confirmation, a hot round resets it, a round in
      // between does neither (a page with light background traffic still gets confirmed).
      if (c <= coldT) coldRounds[p] = Math.min(65535, coldRounds[p]! + 1);
      else if (hot) coldRounds[p] = 0;
      hotStreak[p] = hot ? Math.min(255, hotStreak[p]! + 1) : 0;
      notHotRounds[p] = hot ? 0 : Math.min(65535, notHotRounds[p]! + 1);
      if (hot) {
        hotPages++;
        hotBytes += b;
        if (h0 < NEW_HOT_HEAT) newHot++;
      }
      // Demand: seen in a quarter of the scans over the long or the short memory. The decayed
      // fractions move slowly, so shares between VMs do not swing with one round's noise.
      if (seenScans[p]! >= DEMAND_SEEN * st.takenScans || fastSeenScans[p]! >= DEMAND_SEEN * st.fastTakenScans) demandBytes += b;
      // A page in cool-down moves only on twice the usual evidence.
      const cooling = coolUntil[p]! > round;
      if (t === TIER_DRAM) {
        dramBytes += b;
        if (coldRounds[p]! >= (cooling ? 2 : 1) * th.coldConfirmRounds) {
          coldIdx.push(p);
          coldKeys[p] = Math.min(HEAT_KEYS - 1, Math.floor(h * HEAT_KEYS));
        } else if (!cooling && notHotRounds[p]! >= th.coldConfirmRounds) {
          warmIdx.push(p);
          coldKeys[p] = Math.min(HEAT_KEYS - 1, Math.floor(h * HEAT_KEYS));
        }
      } else if (t === TIER_SLOW) {
        if (hot) {
          hotKeys[p] = Math.min(HEAT_KEYS - 1, Math.floor(h * HEAT_KEYS));
          if (hotStreak[p]! >= (cooling ? 2 : 1) * hotConfirm) {
            hotIdx.push(p);
            hotSlowBytes += b;
          } else if (!cooling) {
            pendIdx.push(p);
            pendBytes += b;
          }
        }
      } else {
        throw new VmtierError('INVALID_INPUT', `vm ${vm.vmId}: page ${p} has unknown tier ${t}`);
      }
    }
    // A shift: a quarter of this round's hot pages were not warm before. Noise makes a few pages
    // hot at a time; a workload moving its hot set makes many at once, and waiting one more round
    // to confirm them would only delay the move.
    const shift = hotPages >= 8 && newHot * 4 > hotPages;
    if (shift) {
      for (const p of pendIdx) hotIdx.push(p);
      hotSlowBytes += pendBytes;
    }
    const roundSeconds = (vm.policy.scan.intervalMs / 1000) * vm.plan.intervalMultiplier * N;
    const budgetBytes = vm.policy.migration.maxBytesPerRound ?? vm.policy.migration.maxMBps * 1048576 * roundSeconds;
    return {
      input: vm,
      st,
      sizeOf,
      hotT,
      hotPages,
      hotBytes,
      newHot,
      shift,
      hotSlow: countingSort(hotIdx, hotKeys, true),
      hotSlowBytes,
      cold: countingSort(coldIdx, coldKeys, false),
      warm: countingSort(warmIdx, coldKeys, false),
      dramBytes,
      demandBytes,
      budgetBytes,
    };
  }

  /**
   * Rate swaps: the active slow pages with the highest estimated access rate replace the DRAM
   * pages with the lowest, while the gap exceeds `margin` accesses per scan. A page accessed at a
   * Poisson rate λ per scan is seen with probability 1 − e^−λ, so the decayed seen fraction gives
   * λ back; this ranks pages that every round sees as hot (a working set larger than DRAM), where
   * heat and counts saturate. Pages moved within the ping-pong window or cooling down are left
   * alone, and nothing moves on fewer than RATE_EVIDENCE_ROUNDS rounds of scans.
   */
  private rateSwaps(
    s: VmScan,
    plan: { promote: number[]; demote: number[]; bp: number; bd: number },
    round: number,
    seen: Float32Array,
    taken: number,
    margin: number,
    recent: { seen: Float32Array; taken: number } | null,
  ): void {
    const { st, input } = s;
    const { counts, tiers } = input;
    if (taken < RATE_EVIDENCE_ROUNDS * Math.max(1, input.plan.scansPerRound)) return;
    const window = input.policy.thresholds.pingPongWindowRounds;
    const rate = new Float32Array(st.pages);
    const moved = new Uint8Array(st.pages);
    for (const p of plan.promote) moved[p] = 1;
    for (const p of plan.demote) moved[p] = 1;
    const keys = new Uint8Array(st.pages);
    const up: number[] = [];
    const down: number[] = [];
    for (let p = 0; p < st.pages; p++) {
      if (moved[p] || st.coolUntil[p]! > round || round - st.lastMoveRound[p]! <= window) continue;
      const t = tiers[p];
      // A long memory lags a shift: a slow page whose recent seen fraction fell below its long-run
      // one is fading (an old hot set), a DRAM page whose recent fraction rose is a new hot page.
      const trend = recent ? recent.seen[p]! / recent.taken - seen[p]! / taken : 0;
      if (t === TIER_SLOW && counts[p]! > 0) {
        if (trend < -RATE_TREND) continue;
        up.push(p);
      } else if (t === TIER_DRAM) {
        if (trend > RATE_TREND) continue;
        down.push(p);
      } else continue;
      // Slow pages are ranked by the lower end of their rate's confidence interval, DRAM pages by
      // the upper end: a swap needs the difference to stand out of the noise, not just the means.
      rate[p] = rateBound(seen[p]!, taken, t === TIER_SLOW ? -RATE_Z : RATE_Z);
      keys[p] = Math.min(HEAT_KEYS - 1, Math.floor(rate[p]! * RATE_KEY_SCALE));
    }
    if (up.length === 0 || down.length === 0) return;
    const hot = countingSort(up, keys, true);
    const cold = countingSort(down, keys, false);
    for (let i = 0; i < hot.length && i < cold.length; i++) {
      const h = hot[i]!;
      const c = cold[i]!;
      if (rate[h]! < rate[c]! + margin) break;
      const bh = s.sizeOf(h);
      const bc = s.sizeOf(c);
      // Mixed page sizes: only like-for-like swaps keep DRAM use unchanged.
      if (bh !== bc) continue;
      if (bh > plan.bp || bc > plan.bd) break;
      plan.promote.push(h);
      plan.demote.push(c);
      plan.bp -= bh;
      plan.bd -= bc;
    }
  }

  /** DRAM pages not hot this round and not cooling, least hot first (only when a demotion is forced). */
  private forcedVictims(s: VmScan, round: number, already: Set<number>): Int32Array {
    const { heat, coolUntil } = s.st;
    const keys = new Uint8Array(s.st.pages);
    const idx: number[] = [];
    const counts = s.input.counts;
    const tiers = s.input.tiers;
    for (let p = 0; p < s.st.pages; p++) {
      if (tiers[p] !== TIER_DRAM || counts[p]! >= s.hotT || already.has(p) || coolUntil[p]! > round) continue;
      idx.push(p);
      keys[p] = Math.min(HEAT_KEYS - 1, Math.floor(heat[p]! * HEAT_KEYS));
    }
    return countingSort(idx, keys, false);
  }

  private nextPlan(s: VmScan, shareBytes: number): { plan: ScanPlan; reason: string } {
    const policy = s.input.policy;
    const baseN = policy.scan.scansPerRound;
    const cur = s.input.plan;
    const st = s.st;
    if (!policy.scan.autoTune) return { plan: { intervalMultiplier: 1, scansPerRound: baseN }, reason: 'fixed' };
    const o = this.opt;
    const clampIm = (m: number): number => Math.min(o.maxIntervalMultiplier, Math.max(o.minIntervalMultiplier, m));
    const halfShare = shareBytes / 2;
    // A shift: rounds get shorter so the rest of the new hot set is found sooner.
    // Short rounds last a few rounds after a shift while a quarter of the hot pages still wait in
    // the slow tier, so that the old hot set's coldness is confirmed sooner too. (Not forever: with
    // a DRAM share smaller than the hot set, hot pages always wait.)
    const th = policy.thresholds;
    if (s.shift) st.catchUpRounds = th.coldConfirmRounds + th.hotConfirmRounds;
    else if (st.catchUpRounds > 0) st.catchUpRounds--;
    if (s.shift || (st.catchUpRounds > 0 && s.hotPages >= 8 && s.hotSlow.length * 4 > s.hotPages)) {
      st.stableRounds = 0;
      return {
        plan: { intervalMultiplier: clampIm(Math.min(1, cur.intervalMultiplier / 2)), scansPerRound: Math.min(o.minScansPerRound, baseN) },
        reason: 'shift',
      };
    }
    // The seed's rule: more hot bytes than half the DRAM share means a scan window is too long to
    // tell hot from warm.
    if (s.hotBytes > halfShare) {
      st.stableRounds = 0;
      return { plan: { intervalMultiplier: clampIm(cur.intervalMultiplier / 2), scansPerRound: baseN }, reason: 'too-hot' };
    }
    st.stableRounds++;
    if (st.stableRounds >= 4 && s.hotBytes * 4 < halfShare && s.hotSlow.length === 0) {
      st.stableRounds = 0;
      return { plan: { intervalMultiplier: clampIm(cur.intervalMultiplier * 2), scansPerRound: baseN }, reason: 'stable' };
    }
    return { plan: { intervalMultiplier: clampIm(cur.intervalMultiplier), scansPerRound: baseN }, reason: 'hold' };
  }
}

/**
 * The Poisson rate per scan whose seen probability 1 − e^−λ is the end of the Wilson score interval
 * (z standard errors; negative z = lower end) around `seen` of `taken` scans.
 */
function rateBound(seen: number, taken: number, z: number): number {
  const n = Math.max(1, taken);
  const p = Math.min(1, Math.max(0, seen / n));
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (Math.abs(z) / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  const q = Math.min(1 - 1 / (4 * n), Math.max(0, z < 0 ? centre - half : centre + half));
  return -Math.log(1 - q);
}

/** Stable counting sort of page indexes by a one-byte key (descending or ascending). */
function countingSort(idx: number[], keys: Uint8Array, descending: boolean): Int32Array {
  const bucket = new Uint32Array(HEAT_KEYS + 1);
  for (const p of idx) bucket[(descending ? HEAT_KEYS - 1 - keys[p]! : keys[p]!) + 1]!++;
  for (let k = 1; k <= HEAT_KEYS; k++) bucket[k]! += bucket[k - 1]!;
  const out = new Int32Array(idx.length);
  for (const p of idx) out[bucket[descending ? HEAT_KEYS - 1 - keys[p]! : keys[p]!]!++] = p;
  return out;
}

export { TIER_DRAM, TIER_SLOW, TIER_NONE };
