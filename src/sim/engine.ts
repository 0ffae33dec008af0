/**
 * The simulator's exact model (README "Policy and simulator"), written so that anyone can recompute
 * a result from a trace and the --emit-moves file:
 *  - epoch e starts by applying the moves decided at the end of the previous round (and, for the
 *    oracle only, moves chosen with knowledge of epoch e); demotions then promotions; DRAM capacity
 *    is checked after every epoch's moves;
 *  - then the epoch's rows in trace order: a row with accesses > 0 on a page that has no tier yet
 *    places it (first touch: DRAM while DRAM has room, else slow); every access costs its page's
 *    tier latency;
 *  - one clock: every epoch lasts `epochMs` of wall time; scan intervals, budgets and rate limits
 *    are wall-clock quantities that policies convert with it;
 *  - the tracker: a scan covering epochs [a, b) sees a page iff it had accesses > 0 in one of them;
 *    a scan shorter than an epoch (k scans per epoch, each covering f = 1/k of it) sees a page with
 *    c accesses in the epoch with probability 1 − (1 − f)^c, drawn from a seeded generator; a round
 *    is N scans ending at an epoch boundary; at its end the policy gets per-page counts and returns
 *    moves that take effect from the next epoch. The policy never sees access counts;
 *  - each migrated unit costs unitBytes ÷ migration bandwidth (free for the oracle); a promote of a
 *    unit with no tier yet (the oracle only) is a placement, not a migration;
 *  - tracking cost (CPU, reported beside the slowdown, not added to it): per present unit per
 *    accessed-bit scan plus per young unit found (bench:scan's kmod figures), or what a policy
 *    charges itself (tpp: per hint fault and per unmapped page).
 */
import { VmtierError } from '../errors.js';
import type { EpochBatch, TraceMeta } from './trace.js';
import { Rng } from './gen.js';

export const SIM_PAGE_BYTES = 4096;
export const TIER_DRAM = 0;
export const TIER_SLOW = 1;
export const TIER_NONE = 255;
/** A move that reverses the page's previous move within this many epochs is a ping-pong. */
export const PING_PONG_WINDOW_EPOCHS = 32;

export interface SimConfig {
  dramRatio: number;
  dramLatencyNs: number;
  slowLatencyNs: number;
  /** GB/s = bytes per ns. */
  migrationGBps: number;
  /** Wall-clock duration of one epoch (the one clock every interval, budget and rate limit uses). */
  epochMs?: number;
  /** Bytes per unit (a trace page): 4096, or 2 MiB for traces grouped into huge-page units. */
  unitBytes?: number;
  /** Seed of the sub-epoch scan sampling (and of tpp's modelled fault times). */
  seed?: number;
  /** Accessed-bit tracking CPU per present unit per scan, and per young unit found, ns. */
  scanNsPerUnit?: number;
  scanNsPerYoungUnit?: number;
}

export const DEFAULT_SIM_CONFIG: SimConfig = { dramRatio: 0.25, dramLatencyNs: 100, slowLatencyNs: 300, migrationGBps: 3.3, epochMs: 1000, unitBytes: SIM_PAGE_BYTES, seed: 1 };

/**
 * Tracking cost per scan, from bench:scan (README "Accessed-bit tracking", lab, 4 KiB pages, kmod
 * read+clear pass plus decode): 5.23 ms/GiB with every A bit clear, 76.4 ms/GiB with every bit set,
 * i.e. about 20 ns per scanned 4 KiB page and 270 ns more per young one. 2 MiB units: 3.25 ms/GiB
 * clear and 29.9 ms/GiB set → 6.3 µs per unit and 52 µs more per young unit.
 */
export function scanCost(unitBytes: number): { perUnit: number; perYoung: number } {
  if (unitBytes >= 2 * 1048576) return { perUnit: 6300, perYoung: 52000 };
  return { perUnit: 20, perYoung: 270 };
}


export interface Moves {
  promote: ArrayLike<number>;
  demote: ArrayLike<number>;
}

/** What a policy may look at: no array it could write, no access count. */
export interface SimView {
  meta: TraceMeta;
  /** DRAM capacity in units: ⌊dramRatio × units⌋. */
  capacity: number;
  cfg: Required<SimConfig>;
  tierOf(p: number): number;
  dramUsed(): number;
  /** Units that have a tier (touched at least once). */
  presentUnits(): number;
  /** A policy that tracks by itself (tpp's hint faults) charges its CPU here, ns. */
  chargeTracking(ns: number): void;
}

/**
 * One epoch as a fault-driven tracker sees it: the units accessed in it (in order of first
 * access), each with the modelled time of its first access (ms from the epoch start: the first of
 * c uniform arrivals), never the count itself.
 */
export interface EpochTouches {
  epoch: number;
  pages: Int32Array;
  firstAccessMs: Float64Array;
  length: number;
}

export interface RoundContext {
  /** The last epoch of the round (moves apply from epoch + 1). */
  epoch: number;
  /** Per unit: scans of this round that saw it (a copy). */
  counts: Uint8Array;
  /** Units with counts > 0, in order of first sighting this round. */
  seen: Int32Array;
  /** Per unit tier at the end of the round (a copy). */
  tiers: Uint8Array;
  /** The plan the round was gathered with: epochs per scan (< 1: several scans per epoch) and the scans taken. */
  epochsPerScan: number;
  scansPerRound: number;
  /** Wall-clock duration of the round, ms. */
  wallMs: number;
}

export interface SimPolicy {
  readonly name: string;
  /** The oracle: migrations cost nothing and may place untouched pages. */
  readonly migrationFree?: boolean;
  /** Accessed-bit scans cost tracking CPU (false for static and for fault-driven tpp). */
  readonly scans?: boolean;
  init(view: SimView): void;
  /** The scan plan for the round that starts now (epochsPerScan < 1: 1/epochsPerScan scans per epoch). */
  plan(): { epochsPerScan: number; scansPerRound: number };
  endRound(ctx: RoundContext): Moves | null;
  /** Fault-driven trackers (tpp): each epoch's touches; moves returned take effect from the next epoch. */
  afterEpoch?(touches: EpochTouches): Moves | null;
  /** References only (oracle, clairvoyant): chooses DRAM for epoch `batch.epoch` knowing its accesses. */
  beforeEpoch?(batch: EpochBatch): Moves | null;
}

export interface SimResult {
  policy: string;
  epochs: number;
  pages: number;
  accesses: number;
  slowdown: number;
  dramHitRatio: number;
  migratedBytes: number;
  promotions: number;
  demotions: number;
  pingPongs: number;
  /** Tracking CPU as a share of one CPU over the trace's wall time. */
  trackingCpu: number;
}

/** One --emit-moves line: the moves in effect from `epoch` on, in dense ids. */
export interface MoveRecord {
  epoch: number;
  promote: number[];
  demote: number[];
}

export class SimRun {
  readonly capacity: number;
  readonly cfg: Required<SimConfig>;
  private readonly tiers: Uint8Array;
  private dram = 0;
  private present = 0;
  private costNs = 0;
  private accesses = 0;
  private dramAccesses = 0;
  private migrated = 0;
  private promotions = 0;
  private demotions = 0;
  private pingPongs = 0;
  private trackingNs = 0;
  private readonly lastMoveEpoch: Int32Array;
  private readonly lastMoveDir: Int8Array;
  private readonly counts: Uint8Array;
  private readonly seenInScan: Uint8Array;
  private readonly epochAcc: Float64Array;
  private scanSeen: number[] = [];
  private roundSeen: number[] = [];
  private pending: Moves | null = null;
  private epochsPerScan = 1;
  private scansPerEpoch = 1;
  private scansPerRound = 1;
  private scanEpochsLeft = 0;
  private scansLeft = 0;
  private scansTaken = 0;
  private roundEpochs = 0;
  private nextEpoch = 0;
  private readonly migrationNsPerUnit: number;
  private readonly rng: Rng;
  private readonly touchRng: Rng;
  private readonly touches: EpochTouches;

  constructor(
    readonly meta: TraceMeta,
    readonly policy: SimPolicy,
    cfgIn: SimConfig,
    private readonly onMoves?: (rec: MoveRecord) => void,
  ) {
    const unitBytes = cfgIn.unitBytes ?? SIM_PAGE_BYTES;
    const sc = scanCost(unitBytes);
    const cfg: Required<SimConfig> = {
      epochMs: 1000,
      seed: 1,
      scanNsPerUnit: sc.perUnit,
      scanNsPerYoungUnit: sc.perYoung,
      ...Object.fromEntries(Object.entries(cfgIn).filter(([, v]) => v !== undefined)),
      unitBytes,
    } as Required<SimConfig>;
    this.cfg = cfg;
    if (!(cfg.dramRatio >= 0 && cfg.dramRatio <= 1)) throw new VmtierError('INVALID_INPUT', `dram ratio must be within [0, 1], got ${cfg.dramRatio}`);
    if (!(cfg.migrationGBps > 0)) throw new VmtierError('INVALID_INPUT', `migration bandwidth must be > 0 GB/s, got ${cfg.migrationGBps}`);
    if (!(cfg.dramLatencyNs > 0) || !(cfg.slowLatencyNs >= 0)) throw new VmtierError('INVALID_INPUT', 'latencies must be positive');
    if (!(cfg.epochMs > 0)) throw new VmtierError('INVALID_INPUT', `epoch duration must be > 0 ms, got ${cfg.epochMs}`);
    if (!(cfg.unitBytes >= 4096)) throw new VmtierError('INVALID_INPUT', `unit size must be >= 4096 bytes, got ${cfg.unitBytes}`);
    const n = meta.pages;
    this.capacity = Math.floor(cfg.dramRatio * n + 1e-9);
    this.tiers = new Uint8Array(n).fill(TIER_NONE);
    this.lastMoveEpoch = new Int32Array(n).fill(-0x40000000);
    this.lastMoveDir = new Int8Array(n);
    this.counts = new Uint8Array(n);
    this.seenInScan = new Uint8Array(n);
    this.epochAcc = new Float64Array(n);
    this.migrationNsPerUnit = policy.migrationFree ? 0 : cfg.unitBytes / cfg.migrationGBps;
    this.rng = new Rng(cfg.seed); // scan sampling
    this.touchRng = new Rng(cfg.seed ^ 0x5bd1e995);
    this.touches = { epoch: 0, pages: new Int32Array(1024), firstAccessMs: new Float64Array(1024), length: 0 };
    const tiers = this.tiers;
    policy.init({
      meta,
      capacity: this.capacity,
      cfg,
      tierOf: (p) => tiers[p]!,
      dramUsed: () => this.dram,
      presentUnits: () => this.present,
      chargeTracking: (ns) => void (this.trackingNs += ns),
    });
    this.startRound();
  }

  private startRound(): void {
    const p = this.policy.plan();
    const eps = Number.isFinite(p.epochsPerScan) && p.epochsPerScan > 0 ? p.epochsPerScan : 1;
    if (eps >= 1 - 1e-9) {
      this.epochsPerScan = Math.max(1, Math.round(eps));
      this.scansPerEpoch = 1;
    } else {
      // Scans shorter than an epoch: k per epoch, each covering 1/k of it.
      this.epochsPerScan = 1;
      this.scansPerEpoch = Math.min(64, Math.max(1, Math.round(1 / eps)));
    }
    this.scansPerRound = Math.min(255, Math.max(1, Math.round(p.scansPerRound)));
    this.scanEpochsLeft = this.epochsPerScan;
    this.scansLeft = this.scansPerRound;
    this.scansTaken = 0;
    this.roundEpochs = 0;
  }

  step(batch: EpochBatch): void {
    const e = batch.epoch;
    if (e !== this.nextEpoch) throw new VmtierError('INVALID_TRACE', `epoch ${e} out of sequence (expected ${this.nextEpoch})`);
    this.nextEpoch++;
    const promote: number[] = [];
    const demote: number[] = [];
    if (this.pending) this.apply(e, this.pending, promote, demote);
    this.pending = null;
    if (this.policy.beforeEpoch) {
      const m = this.policy.beforeEpoch(batch);
      if (m) this.apply(e, m, promote, demote);
    }
    if ((promote.length > 0 || demote.length > 0) && this.onMoves) this.onMoves({ epoch: e, promote, demote });

    const tiers = this.tiers;
    const dramLat = this.cfg.dramLatencyNs;
    const slowLat = this.cfg.slowLatencyNs;
    const epochAcc = this.epochAcc;
    const touched: number[] = [];
    for (let i = 0; i < batch.length; i++) {
      const a = batch.accesses[i]!;
      if (a <= 0) continue;
      const p = batch.pages[i]!;
      let t = tiers[p]!;
      if (t === TIER_NONE) {
        t = this.dram < this.capacity ? TIER_DRAM : TIER_SLOW;
        tiers[p] = t;
        this.present++;
        if (t === TIER_DRAM) this.dram++;
      }
      this.accesses += a;
      if (t === TIER_DRAM) {
        this.dramAccesses += a;
        this.costNs += a * dramLat;
      } else this.costNs += a * slowLat;
      if (epochAcc[p] === 0) touched.push(p);
      epochAcc[p] += a;
    }
    if (this.policy.afterEpoch) {
      const tv = this.touches;
      if (tv.pages.length < touched.length) {
        tv.pages = new Int32Array(touched.length * 2);
        tv.firstAccessMs = new Float64Array(touched.length * 2);
      }
      tv.epoch = e;
      tv.length = touched.length;
      const ms = this.cfg.epochMs;
      for (let i = 0; i < touched.length; i++) {
        const p = touched[i]!;
        tv.pages[i] = p;
        // The first of c accesses spread uniformly over the epoch.
        tv.firstAccessMs[i] = ms * (1 - Math.pow(1 - this.touchRng.next(), 1 / epochAcc[p]!));
      }
      const m = this.policy.afterEpoch(tv);
      if (m && (m.promote.length > 0 || m.demote.length > 0)) this.pending = m;
    }
    this.scanEpoch(touched);
    for (const p of touched) epochAcc[p] = 0;
  }

  /** The accessed-bit tracker's view of one epoch. */
  private scanEpoch(touched: number[]): void {
    this.roundEpochs++;
    const k = this.scansPerEpoch;
    const charge = this.policy.scans !== false;
    if (k === 1) {
      for (const p of touched) {
        if (this.seenInScan[p] === 0) {
          this.seenInScan[p] = 1;
          this.scanSeen.push(p);
        }
      }
      if (--this.scanEpochsLeft > 0) return;
      if (charge) this.trackingNs += this.present * this.cfg.scanNsPerUnit + this.scanSeen.length * this.cfg.scanNsPerYoungUnit;
      for (const p of this.scanSeen) {
        this.seenInScan[p] = 0;
        if (this.counts[p] === 0) this.roundSeen.push(p);
        if (this.counts[p]! < 255) this.counts[p]!++;
      }
      this.scanSeen = [];
      this.scanEpochsLeft = this.epochsPerScan;
      this.scansTaken++;
      this.scansLeft--;
    } else {
      // k scans inside this epoch, each seeing a page with c accesses with probability 1 − (1 − 1/k)^c.
      let young = 0;
      for (const p of touched) {
        const q = 1 - Math.pow(1 - 1 / k, this.epochAcc[p]!);
        let seen = 0;
        for (let j = 0; j < k; j++) if (this.rng.next() < q) seen++;
        if (seen === 0) continue;
        young += seen;
        if (this.counts[p] === 0) this.roundSeen.push(p);
        this.counts[p] = Math.min(255, this.counts[p]! + seen);
      }
      if (charge) this.trackingNs += k * this.present * this.cfg.scanNsPerUnit + young * this.cfg.scanNsPerYoungUnit;
      this.scansTaken += k;
      this.scansLeft -= k;
    }
    if (this.scansLeft > 0) return;
    const m = this.policy.endRound({
      epoch: this.nextEpoch - 1,
      counts: Uint8Array.from(this.counts),
      seen: Int32Array.from(this.roundSeen),
      tiers: Uint8Array.from(this.tiers),
      epochsPerScan: k === 1 ? this.epochsPerScan : 1 / k,
      scansPerRound: Math.min(255, this.scansTaken),
      wallMs: this.roundEpochs * this.cfg.epochMs,
    });
    for (const p of this.roundSeen) this.counts[p] = 0;
    this.roundSeen = [];
    if (m && (m.promote.length > 0 || m.demote.length > 0)) {
      // A fault-driven policy's own moves for this epoch go first (they were decided first).
      this.pending = this.pending ? { promote: [...Array.from(this.pending.promote), ...Array.from(m.promote)], demote: [...Array.from(this.pending.demote), ...Array.from(m.demote)] } : m;
    }
    this.startRound();
  }

  private apply(e: number, m: Moves, promote: number[], demote: number[]): void {
    const tiers = this.tiers;
    const n = tiers.length;
    for (let i = 0; i < m.demote.length; i++) {
      const p = m.demote[i]!;
      if (!(p >= 0 && p < n) || tiers[p] !== TIER_DRAM) throw new VmtierError('INVALID_INPUT', `policy ${this.policy.name} demoted page ${p} which is not in DRAM (epoch ${e})`);
      tiers[p] = TIER_SLOW;
      this.dram--;
      this.demotions++;
      this.moved(p, -1, e);
      demote.push(p);
    }
    for (let i = 0; i < m.promote.length; i++) {
      const p = m.promote[i]!;
      if (!(p >= 0 && p < n)) throw new VmtierError('INVALID_INPUT', `policy ${this.policy.name} promoted page ${p} out of range`);
      const t = tiers[p];
      if (t === TIER_NONE && this.policy.migrationFree) {
        tiers[p] = TIER_DRAM;
        this.dram++;
        this.present++;
        promote.push(p);
        continue;
      }
      if (t !== TIER_SLOW) throw new VmtierError('INVALID_INPUT', `policy ${this.policy.name} promoted page ${p} which is not in the slow tier (epoch ${e})`);
      tiers[p] = TIER_DRAM;
      this.dram++;
      this.promotions++;
      this.moved(p, 1, e);
      promote.push(p);
    }
    if (this.dram > this.capacity) {
      throw new VmtierError('INVALID_INPUT', `policy ${this.policy.name} exceeded DRAM at epoch ${e}: ${this.dram} > ${this.capacity} pages`);
    }
  }

  private moved(p: number, dir: number, e: number): void {
    if (this.lastMoveDir[p] === -dir && e - this.lastMoveEpoch[p]! <= PING_PONG_WINDOW_EPOCHS) this.pingPongs++;
    this.lastMoveDir[p] = dir;
    this.lastMoveEpoch[p] = e;
    this.migrated++;
    this.costNs += this.migrationNsPerUnit;
  }

  result(): SimResult {
    if (this.accesses === 0) throw new VmtierError('INVALID_TRACE', 'the trace has no accesses');
    return {
      policy: this.policy.name,
      epochs: this.nextEpoch,
      pages: this.meta.pages,
      accesses: this.accesses,
      slowdown: this.costNs / (this.accesses * this.cfg.dramLatencyNs),
      dramHitRatio: this.dramAccesses / this.accesses,
      migratedBytes: this.migrated * this.cfg.unitBytes,
      promotions: this.promotions,
      demotions: this.demotions,
      pingPongs: this.pingPongs,
      trackingCpu: this.trackingNs / (Math.max(1, this.nextEpoch) * this.cfg.epochMs * 1e6),
    };
  }
}

/** Runs a policy over epoch batches (an in-memory array or a streaming reader). */
export async function simulate(
  meta: TraceMeta,
  batches: Iterable<EpochBatch> | AsyncIterable<EpochBatch>,
  policy: SimPolicy,
  cfg: SimConfig,
  opts: { onMoves?: (rec: MoveRecord) => void; onProgress?: (epoch: number, epochs: number) => void } = {},
): Promise<SimResult> {
  const run = new SimRun(meta, policy, cfg, opts.onMoves);
  for await (const b of batches) {
    run.step(b);
    if (opts.onProgress && (b.epoch & 63) === 63) opts.onProgress(b.epoch + 1, meta.epochs);
  }
  return run.result();
}

/** Synchronous variant for in-memory traces (benchmarks). */
export function simulateSync(meta: TraceMeta, batches: readonly EpochBatch[], policy: SimPolicy, cfg: SimConfig, onMoves?: (rec: MoveRecord) => void): SimResult {
  const run = new SimRun(meta, policy, cfg, onMoves);
  for (const b of batches) run.step(b);
  return run.result();
}
