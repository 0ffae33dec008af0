/**
 * vmtier's decision core: one `decide` call per round for all VMs that share a DRAM pool.
 *
 * State is kept per unit the kernel maps, not per 4 KiB of footprint: a region is a 2 MiB mapping,
 * or 512 consecutive 4 KiB pages kept as one unit while their counts agree (untouched, cold or
 * uniformly hot memory). A region whose pages are seen by different numbers of scans (scattered
 * heat) is split: its pages get 4 KiB detail, from a pool bounded by DETAIL_FLOOR_REGIONS and
 * DETAIL_SHARE of the VM's regions; it folds back into one unit once all its pages are idle. Per
 * unit: a one-byte heat (EWMA of the fraction of scans that saw it), how many rounds in a row it
 * has been cold / hot / not hot, its last move (age, direction) with a cool-down, and two decayed
 * seen counters and a 32-round seen history (19 bytes; 4 more per region). Per round:
 *  1. one pass over the pages updates the units and collects hot slow-tier units and DRAM units
 *     whose coldness is confirmed (cold = count <= floor(coldMaxFraction*N) for coldConfirmRounds
 *     rounds); counts between the two thresholds are neither (hysteresis);
 *  2. DRAM is split between VMs (floors, weights, demand, ceilings: share.ts);
 *  3. a VM above its share gives back confirmed-cold units (and, above its ceiling or when another
 *     VM waits, its least-hot non-hot units); hot units fill the VM's free share; the rest are
 *     swapped 1:1 against confirmed-cold units when clearly hotter. The migration budget is split
 *     between promotion and demotion in proportion to what the DRAM pressure requires; swaps are
 *     cut back while recent moves show no skill (what was promoted is seen no more than what was
 *     demoted: a cyclic or streaming pattern);
 *  4. a unit moved back within pingPongWindowRounds is frozen for coolDownRounds;
 *  5. the scan plan is tuned: the seed's rule (a round's hot pages under half of the DRAM share),
 *     shorter rounds when the hot set shifts, longer intervals when it is small and stable.
 * Decisions name pages: a unit's move is all its pages in the tier it leaves (a coarse region of
 * 4 KiB pages may move part of them when room or budget is short).
 *
 * Pure and deterministic: no I/O, clocks or randomness. O(pages) per round over the input counts,
 * O(units) state: candidates are ordered by a counting sort on a one-byte key, ties by unit.
 */
import { VmtierError } from '../errors.js';
import type { TierPolicy } from './schema.js';
import { splitDram, type ShareRequest } from './share.js';
import { heatThresholds } from './heat.js';
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
  /** Regions a VM may track page by page whatever its size (experiments and tests). */
  detailFloorRegions?: number;
  /** Beyond the floor, the share of a VM's regions that may be tracked page by page. */
  detailShare?: number;
  /** Swaps run at full budget only while promoted units are seen this much more than demoted ones. */
  skillMin?: number;
  /** The first round's interval multiplier when the scan plan is auto-tuned. */
  startIntervalMultiplier?: number;
  /** Most free DRAM a growing VM keeps by demoting confirmed-cold units, as a share of its DRAM share (0 disables). */
  headroomShare?: number;
  /** While swaps are cut, the longest gap between probe rounds (1 = probe every round). */
  probeMaxGap?: number;
}

const HEAT_KEYS = 256;
/** Heat is kept as a byte: 0..HEAT_MAX is a seen fraction of 0..1. */
const HEAT_MAX = 255;
/** A page seen in at least this fraction of scans counts toward its VM's DRAM demand. */
const DEMAND_SEEN = 1 / 4;
/** Hot pages whose heat was below this before the round are "new": many of them mean a shift. */
const NEW_HOT_HEAT = 0.25;
/** Saturating 16-bit round counters: "never" / "long ago". */
const U16_MAX = 0xffff;
/** A rate estimate needs this many rounds' worth of decayed scans before it may move a page. */
const RATE_EVIDENCE_ROUNDS = 4;
/** Rate sort key: 1/32 access per scan resolution, up to 8 accesses per scan. */
const RATE_KEY_SCALE = 32;
/** A change of the seen fraction between the short and the long memory that counts as a trend. */
const RATE_TREND = 0.1;
/** Width of the rate confidence interval, in standard errors. */
const RATE_Z = 0.5;
/** Decayed seen-scan counters are 16-bit fixed point with this many steps per scan (≤ 50 × 32 scans). */
const SEEN_SCALE = 32;
/** A region: what one 2 MiB mapping covers. 4 KiB pages are grouped into regions of this size. */
export const REGION_BYTES = 2 * 1024 * 1024;
/**
 * Regions with 4 KiB detail: at least this many per VM (a small VM is tracked page by page), and
 * beyond that at most this share of its regions, so detail grows with the scattered active part
 * and the bytes per GiB of guest RAM stay bounded (README "Policy and simulator").
 */
const DETAIL_FLOOR_REGIONS = 16;
const DETAIL_SHARE = 1 / 64;
/**
 * Move skill: for this many rounds after a move, a promoted unit's and a demoted unit's seen
 * fractions are compared. Swaps (a promotion paid for by a demotion) continue at full budget only
 * while promoted units are seen more than demoted ones by SKILL_MIN; otherwise they are cut to
 * SKILL_PROBE of the VM's DRAM per round, enough to keep measuring. A cyclic or streaming pattern, where what was
 * hot last round is not what comes next, makes moves worse than leaving pages where they are.
 */
const SKILL_WINDOW = 4;
const SKILL_DECAY = 0.9;
const SKILL_MIN = 0.1;
const SKILL_PROBE = 1 / 64;
/** Units of evidence (decayed moved units) before the skill can gate anything. */
const SKILL_EVIDENCE = 8;
/** First rounds at 1/8 of the policy's interval (the shortest the daemon's trackers run routinely). */
const START_INTERVAL_MULTIPLIER = 1 / 8;
/**
 * Headroom: a VM that keeps touching new pages keeps free DRAM for them by demoting confirmed-cold
 * units, least hot first. A new page takes its first touch where free memory is: with no free DRAM
 * it starts in the slow tier and waits rounds for a promotion (recorded traces: 13–16 % of all
 * accesses fall in a page's first epoch). The headroom is what the VM's new pages took over the
 * last HEADROOM_ROUNDS rounds (decayed), at most HEADROOM_SHARE of its DRAM share; a VM whose
 * footprint does not grow keeps none, as a demotion would buy nothing there. Only new pages seen in
 * more than the cold share of their first round's scans count as growth: a program's fresh
 * allocations are written at once, while pages touched now and then for the first time (a
 * background of rare accesses, a streaming pass) would earn their DRAM less than the confirmed-cold
 * page demoted for them, plus its move (generated traces: scan and phase lost 0.2–0.3 % to it).
 */
const HEADROOM_SHARE = 1 / 16;
const HEADROOM_ROUNDS = 2;
const GROWTH_ALPHA = 0.5;
/**
 * Recurrence: an iterative program (a solver's sweep over its matrix, a training epoch) touches
 * the same pages again one iteration later, each in a burst shorter than the iteration. No count
 * ranks such pages — each is seen in a fifth of the rounds — but one round's seen set predicts the
 * set one period later. The overlap of this round's seen pages with those seen L rounds ago is kept
 * per lag (decayed); a lag whose overlap stands above its neighbours' by RECUR_PEAK and reaches
 * RECUR_MIN is the period, after RECUR_PERIODS periods of history. While one is found, the VM's
 * DRAM holds the units seen one period before the next round, then the most recently seen.
 */
const HIST_BITS = 32;
const RECUR_MIN_LAG = 3;
const RECUR_DECAY = 0.95;
const RECUR_MIN = 0.4;
const RECUR_PEAK = 0.15;
const RECUR_PERIODS = 2;
/** Units last seen more than this many rounds ago are not kept in DRAM for their recency. */
const RECUR_RECENT = 3;
/** lastPresent of a slot whose previous presence is not known: no growth counted for it. */
const PRESENT_UNKNOWN = 0xffff;

/**
 * Per-VM state, per unit. A unit is a region (a 2 MiB mapping, or 512 consecutive 4 KiB pages
 * treated as one while their heat agrees) or, for a region whose heat is scattered, one of its
 * 4 KiB pages ("detail"). Slots 0..regions-1 hold the regions, the detail blocks follow, one block
 * of REGION pages per split region, at most detailCapacity of them. 19 bytes per slot, 4 per region.
 */
class VmState {
  pages = 0;
  regions = 0;
  layoutKey = '';
  /** Pages per full region (4 KiB layout) — detail blocks hold this many slots. */
  blockPages = 1;
  /** Per region: its detail block, or -1 (coarse). */
  detailOf = new Int32Array(0);
  /** Per detail block: the region that owns it, or -1 (free). */
  blockOwner = new Int32Array(0);
  detailCapacity = 0;
  slots = 0;
  heat = new Uint8Array(0);
  coldRounds = new Uint16Array(0);
  hotStreak = new Uint8Array(0);
  notHotRounds = new Uint16Array(0);
  moveAge = new Uint16Array(0);
  moveDir = new Int8Array(0);
  coolLeft = new Uint16Array(0);
  /** Pages present at the unit's last round (PRESENT_UNKNOWN: not known yet, e.g. a slot just split or laid out). */
  lastPresent = new Uint16Array(0);
  /** Decayed number of scans that saw the unit (long and short memory), ×SEEN_SCALE. */
  seenScans = new Uint16Array(0);
  fastSeenScans = new Uint16Array(0);
  /** Per unit: bit k set = seen in the round k rounds ago (bit 0: this round); finds a recurring pattern. */
  seenHist = new Uint32Array(0);
  /** Decayed, per lag L: present pages seen both this round and L rounds ago; and pages seen this round. */
  lagHits = new Float64Array(HIST_BITS);
  lagBase = 0;
  /** Rounds of history behind lagHits (reset when the round length changes). */
  histRounds = 0;
  histRoundSeconds = 0;
  /** The recurrence period in rounds the last round found (0: none). */
  period = 0;
  /** Decayed number of scans taken; one per VM, as every page is scanned by every scan. */
  takenScans = 0;
  fastTakenScans = 0;
  plan: ScanPlan | null = null;
  /** Decayed bytes per round of new pages seen warm in their first round (sizes the headroom). */
  growthBytes = 0;
  stableRounds = 0;
  catchUpRounds = 0;
  /** Decayed sums of seen fractions of recently promoted / demoted units, and their numbers. */
  promotedSeen = 0;
  promotedUnits = 0;
  demotedSeen = 0;
  demotedUnits = 0;
  /** Rounds in a row with swaps cut (the move skill low): probes back off with it. */
  gatedRounds = 0;

  /** Bytes of state kept between rounds (typed arrays). */
  bytes(): number {
    let b = this.detailOf.byteLength + this.blockOwner.byteLength;
    for (const a of [this.heat, this.coldRounds, this.hotStreak, this.notHotRounds, this.moveAge, this.moveDir, this.coolLeft, this.lastPresent, this.seenScans, this.fastSeenScans, this.seenHist]) b += a.byteLength;
    return b;
  }

  /** (Re)builds the layout; state survives when only the page count is unchanged in shape. */
  layout(pages: number, regions: number, blockPages: number, key: string, detailCapacity: number): void {
    if (key === this.layoutKey) return;
    this.pages = pages;
    this.regions = regions;
    this.blockPages = blockPages;
    this.layoutKey = key;
    this.detailCapacity = detailCapacity;
    this.detailOf = new Int32Array(regions).fill(-1);
    this.blockOwner = new Int32Array(0);
    this.allocSlots(regions);
    this.moveAge.fill(U16_MAX);
    this.lastPresent.fill(PRESENT_UNKNOWN);
    this.seenHist.fill(0);
    this.resetRecurrence(0);
  }

  /** Forgets the recurrence history (a new layout, or rounds of another length: lags in rounds no longer mean the same time). */
  resetRecurrence(roundSeconds: number): void {
    this.lagHits.fill(0);
    this.lagBase = 0;
    this.histRounds = 0;
    this.histRoundSeconds = roundSeconds;
    this.period = 0;
  }

  /** Grows the slot arrays to hold `n` slots, keeping what they hold. */
  allocSlots(n: number): void {
    if (n <= this.slots && this.heat.length >= n) {
      this.slots = n;
      return;
    }
    const cap = Math.max(n, this.heat.length);
    const grow = <T extends Uint32Array | Uint16Array | Uint8Array | Int8Array>(a: T, make: (k: number) => T): T => {
      if (a.length >= cap) return a;
      const b = make(cap);
      b.set(a.subarray(0, Math.min(a.length, cap)));
      return b;
    };
    const old = this.moveAge.length;
    this.heat = grow(this.heat, (k) => new Uint8Array(k));
    this.coldRounds = grow(this.coldRounds, (k) => new Uint16Array(k));
    this.hotStreak = grow(this.hotStreak, (k) => new Uint8Array(k));
    this.notHotRounds = grow(this.notHotRounds, (k) => new Uint16Array(k));
    this.moveAge = grow(this.moveAge, (k) => new Uint16Array(k));
    if (this.moveAge.length > old) this.moveAge.fill(U16_MAX, old);
    this.moveDir = grow(this.moveDir, (k) => new Int8Array(k));
    this.coolLeft = grow(this.coolLeft, (k) => new Uint16Array(k));
    const oldPresent = this.lastPresent.length;
    this.lastPresent = grow(this.lastPresent, (k) => new Uint16Array(k));
    if (this.lastPresent.length > oldPresent) this.lastPresent.fill(PRESENT_UNKNOWN, oldPresent);
    this.seenScans = grow(this.seenScans, (k) => new Uint16Array(k));
    this.fastSeenScans = grow(this.fastSeenScans, (k) => new Uint16Array(k));
    this.seenHist = grow(this.seenHist, (k) => new Uint32Array(k));
    this.slots = n;
  }

  /** A free detail block for region r (its slots start from the region's own state), or -1. */
  split(r: number): number {
    let b = -1;
    for (let k = 0; k < this.blockOwner.length; k++) if (this.blockOwner[k] === -1) { b = k; break; }
    if (b < 0) {
      if (this.blockOwner.length >= this.detailCapacity) return -1;
      const grown = Math.min(this.detailCapacity, Math.max(1, this.blockOwner.length * 2));
      const owners = new Int32Array(grown).fill(-1);
      owners.set(this.blockOwner);
      b = this.blockOwner.length;
      this.blockOwner = owners;
      this.allocSlots(this.regions + grown * this.blockPages);
    }
    this.blockOwner[b] = r;
    this.detailOf[r] = b;
    const base = this.regions + b * this.blockPages;
    for (let i = 0; i < this.blockPages; i++) {
      const s = base + i;
      this.heat[s] = this.heat[r]!;
      this.coldRounds[s] = this.coldRounds[r]!;
      this.hotStreak[s] = this.hotStreak[r]!;
      this.notHotRounds[s] = this.notHotRounds[r]!;
      this.moveAge[s] = this.moveAge[r]!;
      this.moveDir[s] = this.moveDir[r]!;
      this.coolLeft[s] = this.coolLeft[r]!;
      // Which of the region's pages were present is not known per page: no growth is counted
      // for them in the round they are split.
      this.lastPresent[s] = PRESENT_UNKNOWN;
      this.seenScans[s] = this.seenScans[r]!;
      this.fastSeenScans[s] = this.fastSeenScans[r]!;
      this.seenHist[s] = this.seenHist[r]!;
    }
    return b;
  }

  /** Folds region r's detail back into its region slot (its pages agree again) and frees the block. */
  merge(r: number, n: number): void {
    const b = this.detailOf[r]!;
    const base = this.regions + b * this.blockPages;
    let heat = 0, cold = U16_MAX, notHot = U16_MAX, age = U16_MAX, dir = 0, cool = 0, seen = 0, fast = 0, present = 0, hist = 0;
    for (let i = 0; i < n; i++) {
      const s = base + i;
      if (this.lastPresent[s] !== PRESENT_UNKNOWN) present += this.lastPresent[s]!;
      heat = Math.max(heat, this.heat[s]!);
      cold = Math.min(cold, this.coldRounds[s]!);
      notHot = Math.min(notHot, this.notHotRounds[s]!);
      if (this.moveAge[s]! < age) {
        age = this.moveAge[s]!;
        dir = this.moveDir[s]!;
      }
      cool = Math.max(cool, this.coolLeft[s]!);
      seen = Math.max(seen, this.seenScans[s]!);
      fast = Math.max(fast, this.fastSeenScans[s]!);
      hist |= this.seenHist[s]!;
    }
    this.heat[r] = heat;
    this.coldRounds[r] = cold === U16_MAX ? 0 : cold;
    this.hotStreak[r] = 0;
    this.notHotRounds[r] = notHot === U16_MAX ? 0 : notHot;
    this.moveAge[r] = age;
    this.moveDir[r] = dir;
    this.coolLeft[r] = cool;
    this.lastPresent[r] = present;
    this.seenScans[r] = seen;
    this.fastSeenScans[r] = fast;
    this.seenHist[r] = hist >>> 0;
    this.blockOwner[b] = -1;
    this.detailOf[r] = -1;
  }
}

/** Per round: where each slot's pages are and what they hold (transient, per unit). */
interface Units {
  /** Per region: first page (regions + 1 entries). */
  regionStart: Int32Array;
  /** Per slot: this round's count (scans that saw it; a coarse region's mean over its present pages). */
  count: Uint8Array;
  /** Per slot: bytes in DRAM and in the slow tier. */
  dramB: Float64Array;
  slowB: Float64Array;
  /** Per slot: pages present (DRAM or slow). */
  present: Uint32Array;
}

/** What the first pass learned about one VM. */
interface VmScan {
  input: VmRoundInput;
  st: VmState;
  u: Units;
  hotT: number;
  hotPages: number;
  hotBytes: number;
  newHot: number;
  shift: boolean;
  /** Slots (units) with slow pages that are hot, hottest first. */
  hotSlow: Int32Array;
  hotSlowBytes: number;
  hotSlowPages: number;
  /** Slots with DRAM pages whose coldness is confirmed, least hot first. */
  cold: Int32Array;
  /** DRAM slots not hot for coldConfirmRounds rounds but not cold either, least hot first. */
  warm: Int32Array;
  dramBytes: number;
  demandBytes: number;
  budgetBytes: number;
  /** Swaps (promotion paid by a demotion) may move at most this share of the VM's DRAM per round: 1 = only the budget limits them (move skill). */
  swapShare: number;
  /** Recent moves show no skill (what was demoted comes back as much as what was promoted). */
  skillLow: boolean;
  /** The VM's recurrence period in rounds (0: none). */
  period: number;
}

/** A round's moves per VM, in units; `partial` caps the bytes moved of a coarse region (its pages agree, so any of them will do). */
type Plan = { promote: number[]; demote: number[]; pingPongs: number; bp: number; bd: number; swapBp: number; partial: Map<number, number> };

export class TieringPolicy {
  private readonly vms = new Map<string, VmState>();
  private round = 0;
  /** Split regions found idle by this round's scan: merged once the round's decisions are out. */
  private pendingMerge: [VmState, number, number][] = [];
  private readonly opt: Required<TieringOptions>;

  constructor(options: TieringOptions = {}) {
    this.opt = {
      minIntervalMultiplier: options.minIntervalMultiplier ?? 1 / 100,
      maxIntervalMultiplier: options.maxIntervalMultiplier ?? 8,
      minScansPerRound: options.minScansPerRound ?? 2,
      heatAlpha: options.heatAlpha ?? 0.5,
      swapMargin: options.swapMargin ?? 0.25,
      rateDecay: options.rateDecay ?? 0.98,
      rateMargin: options.rateMargin ?? 0.05,
      fastRateDecay: options.fastRateDecay ?? 0.8,
      fastRateMargin: options.fastRateMargin ?? 0.25,
      detailFloorRegions: options.detailFloorRegions ?? DETAIL_FLOOR_REGIONS,
      detailShare: options.detailShare ?? DETAIL_SHARE,
      skillMin: options.skillMin ?? SKILL_MIN,
      startIntervalMultiplier: options.startIntervalMultiplier ?? START_INTERVAL_MULTIPLIER,
      headroomShare: options.headroomShare ?? HEADROOM_SHARE,
      probeMaxGap: options.probeMaxGap ?? 8,
    };
  }

  /** The plan to gather the first round of a VM with (before any decision). */
  initialPlan(policy: TierPolicy): ScanPlan {
    // Nothing is known about a new VM: with auto-tuning its first rounds are short (they learn the
    // hot set before the first move), and 'stable' lengthens them once the hot set settles.
    const im = policy.scan.autoTune ? this.opt.startIntervalMultiplier : 1;
    return { intervalMultiplier: Math.min(this.opt.maxIntervalMultiplier, Math.max(this.opt.minIntervalMultiplier, im)), scansPerRound: policy.scan.scansPerRound };
  }

  /** Drops a VM's state (VM destroyed). */
  forget(vmId: string): void {
    this.vms.delete(vmId);
  }

  /** Bytes of per-unit state the policy keeps between rounds for one VM (or all VMs). */
  stateBytes(vmId?: string): number {
    if (vmId !== undefined) return this.vms.get(vmId)?.bytes() ?? 0;
    let b = 0;
    for (const st of this.vms.values()) b += st.bytes();
    return b;
  }

  /** Regions of one VM currently tracked page by page (their heat is scattered). */
  splitRegions(vmId: string): number {
    const st = this.vms.get(vmId);
    if (!st) return 0;
    let n = 0;
    for (const r of st.blockOwner) if (r >= 0) n++;
    return n;
  }

  decide(input: RoundInput): Decision {
    const round = ++this.round;
    const scans: VmScan[] = input.vms.map((vm) => this.scanVm(vm));
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
    const plans: Plan[] = [];
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
      if (demoteCold) for (const p of s.cold) coldBytes += s.u.dramB[p]!;
      const demoteNeed = Math.max(Math.max(0, promoteWant - Math.max(0, free)) + Math.max(0, -free), coldBytes);
      const split = promoteWant + demoteNeed > 0 ? demoteNeed / (promoteWant + demoteNeed) : 0.5;
      const bp = s.budgetBytes * (1 - split);
      const plan: Plan = { promote: [], demote: [], pingPongs: 0, bd: s.budgetBytes * split, bp, swapBp: s.swapShare < 1 ? s.swapShare * s.dramBytes : Infinity, partial: new Map() };
      plans.push(plan);
      if (!tiering) continue;
      if (s.period > 0) {
        globalFree += this.recurrentMoves(s, plan, Math.min(share, s.input.policy.dram.maxBytes ?? Infinity), globalFree);
        continue;
      }
      // Above its share a VM gives DRAM back only when someone needs it (hot pages waiting that
      // free DRAM cannot take) or when it is above its ceiling: idle DRAM is not worth a migration.
      const ceilingNow = s.input.policy.dram.maxBytes ?? Infinity;
      let excess = contended || s.dramBytes > ceilingNow ? s.dramBytes - share : 0;
      let ci = 0;
      /** Demotes the next confirmed-cold units, in order, until `limit` bytes (or the budget) are taken. */
      const demoteColdUpTo = (limit: number): number => {
        let taken = 0;
        while (limit - taken > 0 && ci < s.cold.length) {
          const p = s.cold[ci]!;
          const b = this.fit(s, plan, p, s.u.dramB[p]!, plan.bd, limit - taken);
          if (b === 0) break;
          ci++;
          plan.demote.push(p);
          plan.bd -= b;
          taken += b;
          globalFree += b;
        }
        return taken;
      };
      // demote 'cold': every confirmed-cold unit goes (within the budget), needed or not, so that
      // DRAM is free before anyone asks for it.
      excess -= demoteColdUpTo(demoteCold ? Infinity : excess);
      // Headroom: a full share makes room for the VM's next new pages (first touch lands in DRAM)
      // and for eager promotions, from its confirmed-cold units, least hot first.
      // Not while moves show no skill: what was demoted is coming back (a cyclic pattern).
      const headroom = s.skillLow ? 0 : this.headroomBytes(s, share);
      if (headroom > 0) {
        let demoted = 0;
        for (const p of plan.demote) demoted += s.u.dramB[p]!;
        demoteColdUpTo(headroom - (share - (s.dramBytes - demoted)));
      }
      s.cold = s.cold.subarray(ci);
      const ceiling = s.input.policy.dram.maxBytes ?? Infinity;
      if (excess > 0 && (contended || s.dramBytes > ceiling)) {
        // Forced: the least-hot DRAM units that were not hot this round, cold-confirmed or not.
        const mustFree = s.dramBytes > ceiling ? Math.max(excess, s.dramBytes - ceiling) : excess;
        const victims = this.forcedVictims(s, new Set(plan.demote));
        let freed = 0;
        for (let k = 0; k < victims.length && freed < mustFree; k++) {
          const p = victims[k]!;
          // A ceiling is a hard limit: it overrides the migration budget.
          const overCeiling = s.dramBytes - freed > ceiling;
          const b = this.fit(s, plan, p, s.u.dramB[p]!, overCeiling ? Infinity : plan.bd, mustFree - freed);
          if (b === 0) break;
          plan.demote.push(p);
          plan.bd -= b;
          freed += b;
          globalFree += b;
        }
      }
    }
    // Pass 2: promotions into free share, then swaps against confirmed-cold units.
    for (let i = 0; i < scans.length; i++) {
      const s = scans[i]!;
      const plan = plans[i]!;
      if (s.input.policy.mode !== 'tier' || s.period > 0) continue;
      const heat = s.st.heat;
      const { dramB, slowB } = s.u;
      let demotedBytes = 0;
      for (const p of plan.demote) demotedBytes += dramB[p]!;
      let room = Math.min(shares[i]! - (s.dramBytes - demotedBytes), globalFree);
      const ceiling = s.input.policy.dram.maxBytes ?? Infinity;
      room = Math.min(room, ceiling - (s.dramBytes - demotedBytes));
      let hi = 0;
      for (; hi < s.hotSlow.length; hi++) {
        const p = s.hotSlow[hi]!;
        const b = this.fit(s, plan, p, slowB[p]!, Math.min(room, plan.bp));
        if (b === 0) break;
        plan.promote.push(p);
        room -= b;
        globalFree -= b;
        plan.bp -= b;
      }
      plan.swapBp = Math.min(plan.swapBp, plan.bp);
      // Units pass 1 already demoted (forced demotions may have taken cold or warm ones).
      const taken = new Set(plan.demote);
      const swapMargin = this.opt.swapMargin * HEAT_MAX;
      let ci = 0;
      for (; hi < s.hotSlow.length && ci < s.cold.length; hi++) {
        const h = s.hotSlow[hi]!;
        const c = s.cold[ci]!;
        if (taken.has(c) || c === h) {
          ci++;
          hi--;
          continue;
        }
        if (heat[h]! < heat[c]! + swapMargin) break;
        const bh = slowB[h]!;
        const bc = dramB[c]!;
        if (bh > plan.swapBp || bc > plan.bd) break;
        // Mixed unit sizes: the cold unit must free at least what the hot one takes.
        if (bh > bc + room) {
          ci++;
          hi--;
          continue;
        }
        ci++;
        plan.demote.push(c);
        plan.promote.push(h);
        plan.bp -= bh;
        plan.swapBp -= bh;
        plan.bd -= bc;
        room += bc - bh;
      }
      // Displacement: with no confirmed-cold unit left, a hot unit may still take the place of a
      // unit that has not been hot for coldConfirmRounds rounds, if the heat gap is twice the
      // swap margin (a DRAM share smaller than the hot set would otherwise freeze on warm pages).
      let wi = 0;
      for (; hi < s.hotSlow.length && wi < s.warm.length; hi++) {
        const h = s.hotSlow[hi]!;
        const c = s.warm[wi]!;
        if (taken.has(c) || c === h) {
          wi++;
          hi--;
          continue;
        }
        if (heat[h]! < heat[c]! + 2 * swapMargin) break;
        const bh = slowB[h]!;
        const bc = dramB[c]!;
        if (bh > plan.swapBp || bc > plan.bd || bh > bc + room) break;
        wi++;
        plan.demote.push(c);
        plan.promote.push(h);
        plan.bp -= bh;
        plan.swapBp -= bh;
        plan.bd -= bc;
        room += bc - bh;
      }
      // The long memory acts only where the short one agrees (fast ? ... : null = no check).
      this.rateSwaps(s, plan, s.st.seenScans, s.st.takenScans, this.opt.rateMargin, this.opt.fastRateDecay > 0 ? { seen: s.st.fastSeenScans, taken: s.st.fastTakenScans } : null);
      if (this.opt.fastRateDecay > 0) this.rateSwaps(s, plan, s.st.fastSeenScans, s.st.fastTakenScans, this.opt.fastRateMargin, null);
    }
    for (let i = 0; i < scans.length; i++) {
      const s = scans[i]!;
      const plan = plans[i]!;
      const st = s.st;
      let pingPongs = 0;
      const t = s.input.policy.thresholds;
      const mark = (p: number, dir: number): void => {
        if (st.moveDir[p] === -dir && st.moveAge[p]! <= t.pingPongWindowRounds) {
          pingPongs++;
          st.coolLeft[p] = Math.min(U16_MAX, t.coolDownRounds);
        }
        st.moveDir[p] = dir;
        st.moveAge[p] = 0;
      };
      for (const p of plan.promote) mark(p, 1);
      for (const p of plan.demote) mark(p, -1);
      let cooling = 0;
      for (let p = 0; p < st.slots; p++) if (st.coolLeft[p]! > 0 && this.slotLive(st, p)) cooling++;
      const { plan: next, reason } = this.nextPlan(s, shares[i]!);
      st.plan = next;
      out.push({
        vmId: s.input.vmId,
        promote: this.expand(s, plan.promote, TIER_SLOW, plan.partial),
        demote: this.expand(s, plan.demote, TIER_DRAM, plan.partial),
        plan: next,
        stats: {
          hotPages: s.hotPages,
          hotSlowPages: s.hotSlowPages,
          coldConfirmedPages: this.pagesIn(s, s.cold, TIER_DRAM),
          dramBytes: s.dramBytes,
          shareBytes: shares[i]!,
          demandBytes: s.demandBytes,
          pingPongs,
          coolingPages: cooling,
          planReason: reason,
          recurrencePeriodRounds: s.period,
        },
      });
    }
    // Idle split regions become one unit again, unless this round moved one of their pages.
    for (const [st, r, n] of this.pendingMerge) {
      if (st.detailOf[r]! < 0) continue;
      const base = st.regions + st.detailOf[r]! * st.blockPages;
      let moved = false;
      for (let i = 0; i < n; i++) if (st.moveAge[base + i] === 0) moved = true;
      if (!moved) st.merge(r, n);
    }
    this.pendingMerge = [];
    return { round, vms: out };
  }

  /**
   * A recurring VM's moves: DRAM (up to `target` bytes) holds the units seen one period before the
   * next round, then those seen most recently; the rest gives way, least recently seen first.
   * Returns the change in free DRAM (freed minus taken; promotions take at most `globalFree` plus
   * what the VM frees).
   */
  private recurrentMoves(s: VmScan, plan: Plan, target: number, globalFree: number): number {
    const { st, u } = s;
    const L = s.period;
    const keys = new Uint8Array(st.slots);
    const idx: number[] = [];
    for (let p = 0; p < st.slots; p++) {
      if (u.present[p] === 0 || !this.slotLive(st, p)) continue;
      const h = st.seenHist[p]!;
      let k = 0;
      if ((h >>> (L - 1)) & 1) k = 255;
      else if (((h >>> (L - 2)) | (h >>> L)) & 1) k = 254;
      else {
        const recent = h & ((1 << RECUR_RECENT) - 1);
        if (recent !== 0) k = 250 - (31 - Math.clz32(recent & -recent));
      }
      keys[p] = k;
      idx.push(p);
    }
    const order = countingSort(idx, keys, true);
    // The wanted set: by key, while it fits the target.
    const wanted = new Uint8Array(st.slots);
    let acc = 0;
    for (const p of order) {
      if (keys[p] === 0) break;
      const b = u.dramB[p]! + u.slowB[p]!;
      if (acc + b > target) break;
      acc += b;
      wanted[p] = 1;
    }
    // Victims: DRAM units not wanted, lowest key first.
    const victims: number[] = [];
    for (let i = order.length - 1; i >= 0; i--) {
      const p = order[i]!;
      if (!wanted[p] && u.dramB[p]! > 0) victims.push(p);
    }
    let dram = s.dramBytes;
    let vi = 0;
    let freed = 0;
    let taken = 0;
    /** Demotes the next victim if the budget allows; false when none is left or it does not fit. */
    const demoteNext = (): boolean => {
      if (vi >= victims.length) return false;
      const p = victims[vi]!;
      const b = u.dramB[p]!;
      if (b > plan.bd) return false;
      vi++;
      plan.demote.push(p);
      plan.bd -= b;
      dram -= b;
      freed += b;
      return true;
    };
    while (dram > target && demoteNext());
    for (const p of order) {
      if (!wanted[p]) break;
      const b = u.slowB[p]!;
      if (b === 0) continue;
      if (b > plan.bp) break;
      while (dram + b > target || taken + b > globalFree + freed) if (!demoteNext()) break;
      if (dram + b > target || taken + b > globalFree + freed) break;
      plan.promote.push(p);
      plan.bp -= b;
      dram += b;
      taken += b;
    }
    return freed - taken;
  }

  /** Free DRAM a VM keeps for first touches (its recent footprint growth, capped), 0 below one unit. */
  private headroomBytes(s: VmScan, share: number): number {
    const h = Math.min(this.opt.headroomShare * share, HEADROOM_ROUNDS * s.st.growthBytes);
    const pb = s.input.pageBytes ?? 4096;
    const unit = typeof pb === 'number' ? pb : REGION_BYTES;
    return h >= unit ? h : 0;
  }

  /** Whether slot p is in use: a coarse region's slot, or a page slot of a split region. */
  private slotLive(st: VmState, p: number): boolean {
    if (p < st.regions) return st.detailOf[p]! < 0;
    return st.blockOwner[Math.floor((p - st.regions) / st.blockPages)]! >= 0;
  }

  /** First page and page count of slot p. */
  private slotPages(s: VmScan, p: number): [number, number] {
    const st = s.st;
    if (p < st.regions) return [s.u.regionStart[p]!, s.u.regionStart[p + 1]! - s.u.regionStart[p]!];
    const b = Math.floor((p - st.regions) / st.blockPages);
    return [s.u.regionStart[st.blockOwner[b]!]! + (p - st.regions - b * st.blockPages), 1];
  }

  /** The pages in `tier` of the given slots, in slot order. */
  private expand(s: VmScan, slots: number[], tier: number, partial: Map<number, number>): Int32Array {
    const tiers = s.input.tiers;
    const pb = s.input.pageBytes ?? 4096;
    const out: number[] = [];
    for (const p of slots) {
      const [a, n] = this.slotPages(s, p);
      let left = partial.get(p) ?? Infinity;
      for (let q = a; q < a + n; q++) {
        if (tiers[q] !== tier) continue;
        const b = typeof pb === 'number' ? pb : pb[q]!;
        if (b > left) break;
        left -= b;
        out.push(q);
      }
    }
    return Int32Array.from(out);
  }

  /**
   * Bytes of unit p to move (its `bytes` in the tier it leaves) within `avail`: all of it, or for a
   * coarse region of small pages as many whole pages as fit (recorded in plan.partial); 0 = none.
   */
  private fit(s: VmScan, plan: Plan, p: number, bytes: number, avail: number, want = Infinity): number {
    const coarse = p < s.st.regions && s.st.blockPages > 1 && s.u.present[p]! > 1;
    if (!coarse) return bytes <= avail ? bytes : 0;
    if (bytes <= avail && bytes <= want) return bytes;
    // Pages of a coarse region in one tier: assume equal sizes (they agree; a region is 4 KiB pages).
    const pb = s.input.pageBytes ?? 4096;
    const pageB = typeof pb === 'number' ? pb : bytes / Math.max(1, s.u.present[p]!);
    const b = Math.min(Math.floor(avail / pageB), Math.ceil(want / pageB)) * pageB;
    if (b <= 0) return 0;
    plan.partial.set(p, b);
    return Math.min(b, bytes);
  }

  private pagesIn(s: VmScan, slots: Int32Array, tier: number): number {
    const tiers = s.input.tiers;
    let n = 0;
    for (const p of slots) {
      const [a, k] = this.slotPages(s, p);
      for (let q = a; q < a + k; q++) if (tiers[q] === tier) n++;
    }
    return n;
  }

  private scanVm(vm: VmRoundInput): VmScan {
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
    // Regions: a page of REGION_BYTES or more is one; smaller pages are grouped up to REGION_BYTES.
    const starts: number[] = [];
    let blockPages = 1;
    if (typeof pb === 'number') {
      blockPages = Math.max(1, Math.floor(REGION_BYTES / Math.max(1, pb)));
      for (let p = 0; p < pages; p += blockPages) starts.push(p);
    } else {
      let acc = REGION_BYTES;
      let small = 0;
      for (let p = 0; p < pages; p++) {
        const b = pb[p]!;
        if (b >= REGION_BYTES || acc + b > REGION_BYTES) {
          starts.push(p);
          acc = 0;
          small = 0;
        }
        acc += b;
        small++;
        blockPages = Math.max(blockPages, small);
        if (b >= REGION_BYTES) acc = REGION_BYTES;
      }
    }
    starts.push(pages);
    const regions = starts.length - 1;
    const regionStart = Int32Array.from(starts);
    const detailCapacity = blockPages > 1 ? Math.max(this.opt.detailFloorRegions, Math.ceil(regions * this.opt.detailShare)) : 0;
    st.layout(pages, regions, blockPages, `${pages}/${regions}/${blockPages}/${typeof pb === 'number' ? pb : 'v'}`, detailCapacity);
    const N = Math.max(1, vm.plan.scansPerRound);
    const th = vm.policy.thresholds;
    const { hotMin: hotT, coldMax: coldT } = heatThresholds(th, N);
    const alpha = this.opt.heatAlpha;
    // Consecutive hot rounds before a promotion (filters one-round bursts); waived in a shift.
    const hotConfirm = th.hotConfirmRounds;
    const counts = vm.counts;
    const tiers = vm.tiers;
    const maxSlots = regions + detailCapacity * blockPages;
    const u: Units = {
      regionStart,
      count: new Uint8Array(maxSlots),
      dramB: new Float64Array(maxSlots),
      slowB: new Float64Array(maxSlots),
      present: new Uint32Array(maxSlots),
    };
    const hotKeys = new Uint8Array(maxSlots);
    const coldKeys = new Uint8Array(maxSlots);
    const hotIdx: number[] = [];
    // Hot slow units still short of hotConfirmRounds: promoted only when the round is a shift.
    const pendIdx: number[] = [];
    let pendBytes = 0;
    let pendPages = 0;
    const coldIdx: number[] = [];
    const warmIdx: number[] = [];
    let warmNewBytes = 0;
    let hotPages = 0, hotBytes = 0, newHot = 0, hotSlowBytes = 0, hotSlowPages = 0, dramBytes = 0, demandBytes = 0;
    const decay = this.opt.rateDecay;
    const fastDecay = this.opt.fastRateDecay;
    st.takenScans = st.takenScans * decay + N;
    st.fastTakenScans = st.fastTakenScans * fastDecay + N;
    st.promotedSeen *= SKILL_DECAY;
    st.promotedUnits *= SKILL_DECAY;
    st.demotedSeen *= SKILL_DECAY;
    st.demotedUnits *= SKILL_DECAY;
    const demandLong = DEMAND_SEEN * st.takenScans * SEEN_SCALE;
    const demandFast = DEMAND_SEEN * st.fastTakenScans * SEEN_SCALE;
    // Splitting a region may grow the slot arrays: `bind` takes them again after each split.
    let { heat, coldRounds, coolLeft, hotStreak, notHotRounds, moveAge, moveDir, seenScans, fastSeenScans, lastPresent, seenHist } = st;
    const bind = (): void => {
      ({ heat, coldRounds, coolLeft, hotStreak, notHotRounds, moveAge, moveDir, seenScans, fastSeenScans, lastPresent, seenHist } = st!);
    };
    // This round's contribution to the per-lag overlaps, added to their decayed sums below.
    const roundSeconds = (vm.policy.scan.intervalMs / 1000) * vm.plan.intervalMultiplier * N;
    if (Math.abs(roundSeconds - st.histRoundSeconds) > 0.05 * Math.max(roundSeconds, st.histRoundSeconds)) st.resetRecurrence(roundSeconds);
    const lagHits = new Float64Array(HIST_BITS);
    let lagBase = 0;

    /** One unit's round: its count c, its pages present, and its bytes per tier. */
    const unit = (s: number, c: number, present: number, dB: number, sB: number): void => {
      u.count[s] = c;
      u.present[s] = present;
      u.dramB[s] = dB;
      u.slowB[s] = sB;
      const before = lastPresent[s]!;
      lastPresent[s] = present;
      if (before !== PRESENT_UNKNOWN && present > before && c > coldT) warmNewBytes += ((dB + sB) * (present - before)) / present;
      const h0 = heat[s]!;
      const h = Math.round(h0 + alpha * ((c / N) * HEAT_MAX - h0));
      heat[s] = h;
      seenScans[s] = Math.min(U16_MAX, Math.round(seenScans[s]! * decay + c * SEEN_SCALE));
      fastSeenScans[s] = Math.min(U16_MAX, Math.round(fastSeenScans[s]! * fastDecay + c * SEEN_SCALE));
      const hist = ((seenHist[s]! << 1) | (c > 0 ? 1 : 0)) >>> 0;
      seenHist[s] = hist;
      if (c > 0 && present > 0) {
        lagBase += present;
        for (let L = 1, h = hist >>> 1; h !== 0 && L < HIST_BITS; L++, h >>>= 1) if (h & 1) lagHits[L]! += present;
      }
      if (moveAge[s]! < U16_MAX) moveAge[s]!++;
      if (coolLeft[s]! > 0) coolLeft[s]!--;
      if (present === 0) {
        coldRounds[s] = 0;
        hotStreak[s] = 0;
        return;
      }
      // Move skill: how much the units moved in the last few rounds are seen now.
      if (moveAge[s]! <= SKILL_WINDOW) {
        if (moveDir[s] === 1 && dB > 0) {
          st!.promotedSeen += c / N;
          st!.promotedUnits++;
        } else if (moveDir[s] === -1 && sB > 0) {
          st!.demotedSeen += c / N;
          st!.demotedUnits++;
        }
      }
      const b = dB + sB;
      const hot = c >= hotT;
      // Hysteresis: a cold round adds to the confirmation, a hot round resets it, a round in
      // between does neither (a page with light background traffic still gets confirmed).
      if (c <= coldT) coldRounds[s] = Math.min(U16_MAX, coldRounds[s]! + 1);
      else if (hot) coldRounds[s] = 0;
      hotStreak[s] = hot ? Math.min(255, hotStreak[s]! + 1) : 0;
      notHotRounds[s] = hot ? 0 : Math.min(U16_MAX, notHotRounds[s]! + 1);
      if (hot) {
        hotPages += present;
        hotBytes += b;
        if (h0 < NEW_HOT_HEAT * HEAT_MAX) newHot += present;
      }
      // Demand: seen in a quarter of the scans over the long or the short memory. The decayed
      // fractions move slowly, so shares between VMs do not swing with one round's noise.
      if (seenScans[s]! >= demandLong || fastSeenScans[s]! >= demandFast) demandBytes += b;
      // A unit in cool-down moves only on twice the usual evidence.
      const cooling = coolLeft[s]! > 0;
      const key = Math.min(HEAT_KEYS - 1, h);
      if (dB > 0) {
        dramBytes += dB;
        if (coldRounds[s]! >= (cooling ? 2 : 1) * th.coldConfirmRounds) {
          coldIdx.push(s);
          coldKeys[s] = key;
        } else if (!cooling && notHotRounds[s]! >= th.coldConfirmRounds) {
          warmIdx.push(s);
          coldKeys[s] = key;
        }
      }
      if (sB > 0 && hot) {
        hotKeys[s] = key;
        const slowPages = sB === b ? present : Math.round((present * sB) / b);
        if (hotStreak[s]! >= (cooling ? 2 : 1) * hotConfirm) {
          hotIdx.push(s);
          hotSlowBytes += sB;
          hotSlowPages += slowPages;
        } else if (!cooling) {
          pendIdx.push(s);
          pendBytes += sB;
          pendPages += slowPages;
        }
      }
    };

    for (let r = 0; r < regions; r++) {
      const a = regionStart[r]!;
      const z = regionStart[r + 1]!;
      if (st.detailOf[r]! < 0) {
        let present = 0, sumC = 0, dB = 0, sB = 0, minC = 255, maxC = 0;
        for (let p = a; p < z; p++) {
          const t = tiers[p]!;
          if (t === TIER_NONE) continue;
          if (t !== TIER_DRAM && t !== TIER_SLOW) throw new VmtierError('INVALID_INPUT', `vm ${vm.vmId}: page ${p} has unknown tier ${t}`);
          const c = Math.min(counts[p]!, N);
          present++;
          sumC += c;
          if (c < minC) minC = c;
          if (c > maxC) maxC = c;
          if (t === TIER_DRAM) dB += sizeOf(p);
          else sB += sizeOf(p);
        }
        // Scattered heat (its pages seen by different numbers of scans): track its pages one by
        // one if detail is left; otherwise the region stays one unit ranked by its mean count.
        const scattered = present > 0 && minC !== maxC;
        if (!scattered || st.split(r) < 0) {
          unit(r, present > 0 ? Math.round(sumC / present) : 0, present, dB, sB);
          continue;
        }
        bind();
      }
      const base = regions + st.detailOf[r]! * blockPages;
      let idle = true;
      for (let p = a; p < z; p++) {
        const s = base + (p - a);
        const t = tiers[p]!;
        const c = t === TIER_NONE ? 0 : Math.min(counts[p]!, N);
        if (t === TIER_DRAM) unit(s, c, 1, sizeOf(p), 0);
        else if (t === TIER_SLOW) unit(s, c, 1, 0, sizeOf(p));
        else if (t === TIER_NONE) unit(s, 0, 0, 0, 0);
        else throw new VmtierError('INVALID_INPUT', `vm ${vm.vmId}: page ${p} has unknown tier ${t}`);
        if (t !== TIER_NONE && (c > 0 || coldRounds[s]! < th.coldConfirmRounds || coolLeft[s]! > 0 || moveAge[s]! <= th.pingPongWindowRounds)) idle = false;
      }
      // A region all of whose pages stay cold needs no detail: it becomes one unit again (its
      // state is what it decides on next round; this round's decisions still name its pages).
      if (idle) this.pendingMerge.push([st, r, z - a]);
    }
    // A shift: a quarter of this round's hot pages were not warm before. Noise makes a few pages
    // hot at a time; a workload moving its hot set makes many at once, and waiting one more round
    // to confirm them would only delay the move.
    const shift = hotPages >= 8 && newHot * 4 > hotPages;
    // Growth in warm new pages (first touched this round, seen in more than the cold share of
    // its scans) sizes the headroom.
    st.growthBytes += GROWTH_ALPHA * (warmNewBytes - st.growthBytes);
    if (shift) {
      for (const p of pendIdx) hotIdx.push(p);
      hotSlowBytes += pendBytes;
      hotSlowPages += pendPages;
    }
    st.period = this.recurrence(st, lagHits, lagBase);
    const budgetBytes = vm.policy.migration.maxBytesPerRound ?? vm.policy.migration.maxMBps * 1048576 * roundSeconds;
    const proven = st.promotedUnits >= SKILL_EVIDENCE && st.demotedUnits >= SKILL_EVIDENCE;
    const skillLow = proven && st.promotedSeen / st.promotedUnits - st.demotedSeen / st.demotedUnits < this.opt.skillMin;
    const skilled = !skillLow;
    // While gated, probes back off: the k-th gated round probes when k is a power of two or a
    // multiple of probeMaxGap (a cyclic pattern's probes are churn too).
    let probe = SKILL_PROBE;
    if (skillLow) {
      st.gatedRounds = Math.min(U16_MAX, st.gatedRounds + 1);
      const k = st.gatedRounds;
      if ((k & (k - 1)) !== 0 && k % this.opt.probeMaxGap !== 0) probe = 0;
    } else st.gatedRounds = 0;
    return {
      input: vm,
      st,
      u,
      hotT,
      hotPages,
      hotBytes,
      newHot,
      shift,
      hotSlow: countingSort(hotIdx, hotKeys, true),
      hotSlowBytes,
      hotSlowPages,
      cold: countingSort(coldIdx, coldKeys, false),
      warm: countingSort(warmIdx, coldKeys, false),
      dramBytes,
      demandBytes,
      budgetBytes,
      swapShare: skilled ? 1 : probe,
      skillLow,
      // The period's own overlap is its skill: one that stops predicting falls below RECUR_MIN.
      period: st.period,
    };
  }

  /** Adds a round to the decayed per-lag overlaps; the recurrence period in rounds, or 0. */
  private recurrence(st: VmState, hits: Float64Array, base: number): number {
    st.histRounds = Math.min(U16_MAX, st.histRounds + 1);
    st.lagBase = st.lagBase * RECUR_DECAY + base;
    for (let L = 0; L < HIST_BITS; L++) st.lagHits[L] = st.lagHits[L]! * RECUR_DECAY + hits[L]!;
    if (st.lagBase <= 0) return 0;
    const o = (L: number): number => (L >= 1 && L < HIST_BITS ? st.lagHits[L]! / st.lagBase : 0);
    let best = 0;
    let bestO = 0;
    for (let L = RECUR_MIN_LAG; L < HIST_BITS - 2; L++) {
      if (st.histRounds < RECUR_PERIODS * L + 1) break;
      const v = o(L);
      if (v < RECUR_MIN || v <= bestO) continue;
      // A peak: clearly above the overlaps two rounds either side (a persistent working set's
      // overlap falls smoothly with the lag and has none).
      if (v - Math.max(o(L - 2), o(L + 2)) < RECUR_PEAK) continue;
      best = L;
      bestO = v;
    }
    return best;
  }

  /**
   * Rate swaps: the active slow units with the highest estimated access rate replace the DRAM
   * units with the lowest, while the gap exceeds `margin` accesses per scan. A unit accessed at a
   * Poisson rate λ per scan is seen with probability 1 − e^−λ, so the decayed seen fraction gives
   * λ back; this ranks units that every round sees as hot (a working set larger than DRAM), where
   * heat and counts saturate. Units moved within the ping-pong window or cooling down are left
   * alone, and nothing moves on fewer than RATE_EVIDENCE_ROUNDS rounds of scans.
   */
  private rateSwaps(s: VmScan, plan: Plan, seen: Uint16Array, taken: number, margin: number, recent: { seen: Uint16Array; taken: number } | null): void {
    const { st, input, u } = s;
    if (taken < RATE_EVIDENCE_ROUNDS * Math.max(1, input.plan.scansPerRound)) return;
    const window = input.policy.thresholds.pingPongWindowRounds;
    const moved = new Set<number>(plan.promote);
    for (const p of plan.demote) moved.add(p);
    const n = st.slots;
    const rate = new Float32Array(n);
    const keys = new Uint8Array(n);
    const up: number[] = [];
    const down: number[] = [];
    const seenScale = SEEN_SCALE * taken;
    for (let p = 0; p < n; p++) {
      if (u.present[p] === 0 || !this.slotLive(st, p) || moved.has(p) || st.coolLeft[p]! > 0 || st.moveAge[p]! <= window) continue;
      // A long memory lags a shift: a slow unit whose recent seen fraction fell below its long-run
      // one is fading (an old hot set), a DRAM unit whose recent fraction rose is a new hot unit.
      const trend = recent ? recent.seen[p]! / (SEEN_SCALE * recent.taken) - seen[p]! / seenScale : 0;
      const slow = u.slowB[p]! > 0;
      if (slow && u.count[p]! > 0) {
        if (trend < -RATE_TREND) continue;
        up.push(p);
      } else if (u.dramB[p]! > 0 && !slow) {
        if (trend > RATE_TREND) continue;
        down.push(p);
      } else continue;
      // Slow units are ranked by the lower end of their rate's confidence interval, DRAM units by
      // the upper end: a swap needs the difference to stand out of the noise, not just the means.
      rate[p] = rateBound(seen[p]! / SEEN_SCALE, taken, slow ? -RATE_Z : RATE_Z);
      keys[p] = Math.min(HEAT_KEYS - 1, Math.floor(rate[p]! * RATE_KEY_SCALE));
    }
    if (up.length === 0 || down.length === 0) return;
    const hot = countingSort(up, keys, true);
    const cold = countingSort(down, keys, false);
    for (let i = 0; i < hot.length && i < cold.length; i++) {
      const h = hot[i]!;
      const c = cold[i]!;
      if (rate[h]! < rate[c]! + margin) break;
      const bh = u.slowB[h]!;
      const bc = u.dramB[c]!;
      // Mixed unit sizes: a swap may not take more DRAM than it frees.
      if (bh > bc) continue;
      if (bh > plan.swapBp || bc > plan.bd) break;
      plan.promote.push(h);
      plan.demote.push(c);
      plan.bp -= bh;
      plan.swapBp -= bh;
      plan.bd -= bc;
    }
  }

  /** DRAM units not hot this round and not cooling, least hot first (only when a demotion is forced). */
  private forcedVictims(s: VmScan, already: Set<number>): Int32Array {
    const { st, u } = s;
    const keys = new Uint8Array(st.slots);
    const idx: number[] = [];
    for (let p = 0; p < st.slots; p++) {
      if (u.dramB[p] === 0 || u.count[p]! >= s.hotT || already.has(p) || st.coolLeft[p]! > 0 || !this.slotLive(st, p)) continue;
      idx.push(p);
      keys[p] = Math.min(HEAT_KEYS - 1, st.heat[p]!);
    }
    return countingSort(idx, keys, false);
  }

  private nextPlan(s: VmScan, shareBytes: number): { plan: ScanPlan; reason: string } {
    const policy = s.input.policy;
    const baseN = policy.scan.scansPerRound;
    const cur = s.input.plan;
    const st = s.st;
    if (!policy.scan.autoTune) return { plan: { intervalMultiplier: 1, scansPerRound: baseN }, reason: 'fixed' };
    // A recurrence is counted in rounds: a round of another length would make its period meaningless.
    if (s.period > 0) return { plan: { intervalMultiplier: cur.intervalMultiplier, scansPerRound: cur.scansPerRound }, reason: 'recurrent' };
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
    if (s.shift || (st.catchUpRounds > 0 && s.hotPages >= 8 && s.hotSlowPages * 4 > s.hotPages)) {
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
