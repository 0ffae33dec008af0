/**
 * The simulator's exact model (README "Policy and simulator"), written so that anyone can recompute
 * a result from a trace and the --emit-moves file:
 *  - epoch e starts by applying the moves decided at the end of the previous round (and, for the
 *    oracle only, moves chosen with knowledge of epoch e); demotions then promotions; DRAM capacity
 *    is checked after every epoch's moves;
 *  - then the epoch's rows in trace order: a row with accesses > 0 on a page that has no tier yet
 *    places it (first touch: DRAM while DRAM has room, else slow); every access costs its page's
 *    tier latency;
 *  - the tracker: a scan covering epochs [a, b) sees a page iff it had accesses > 0 in one of them;
 *    a round is N scans; at its end the policy gets per-page counts (0..N) and returns moves that
 *    take effect from the next epoch;
 *  - each migrated page costs 4096 B ÷ migration bandwidth (free for the oracle); a promote of a
 *    page with no tier yet (the oracle only) is a placement, not a migration.
 */
import { VmtierError } from '../errors.js';
import type { EpochBatch, TraceMeta } from './trace.js';

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
}

export const DEFAULT_SIM_CONFIG: SimConfig = { dramRatio: 0.25, dramLatencyNs: 100, slowLatencyNs: 300, migrationGBps: 3.3 };

export interface Moves {
  promote: ArrayLike<number>;
  demote: ArrayLike<number>;
}

/** What a policy may look at (read only). */
export interface SimView {
  meta: TraceMeta;
  /** DRAM capacity in pages: ⌊dramRatio × pages⌋. */
  capacity: number;
  tiers: Uint8Array;
  cfg: SimConfig;
  dramUsed(): number;
}

export interface RoundContext {
  /** The last epoch of the round (moves apply from epoch + 1). */
  epoch: number;
  /** Per page: scans of this round that saw it. */
  counts: Uint8Array;
  /** Pages with counts > 0, in order of first access this round. */
  seen: Int32Array;
  /** Per page: true accesses this round (only for pages in `seen`). The tracker cannot see these;
   *  only tpp uses them, to order its hint faults (a page accessed more faults sooner). */
  accesses: Float64Array;
  /** The plan the round was gathered with. */
  epochsPerScan: number;
  scansPerRound: number;
  /** Simulated time of the round (its access and migration cost), ns. */
  elapsedNs: number;
}

export interface SimPolicy {
  readonly name: string;
  /** The oracle: migrations cost nothing and may place untouched pages. */
  readonly migrationFree?: boolean;
  init(view: SimView): void;
  /** The scan plan for the round that starts now. */
  plan(): { epochsPerScan: number; scansPerRound: number };
  endRound(ctx: RoundContext): Moves | null;
  /** The oracle only: chooses DRAM for epoch `batch.epoch` knowing its accesses. */
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
}

/** One --emit-moves line: the moves in effect from `epoch` on, in dense ids. */
export interface MoveRecord {
  epoch: number;
  promote: number[];
  demote: number[];
}

export class SimRun {
  readonly tiers: Uint8Array;
  readonly capacity: number;
  private dram = 0;
  private costNs = 0;
  private accesses = 0;
  private dramAccesses = 0;
  private migrated = 0;
  private promotions = 0;
  private demotions = 0;
  private pingPongs = 0;
  private readonly lastMoveEpoch: Int32Array;
  private readonly lastMoveDir: Int8Array;
  private readonly counts: Uint8Array;
  private readonly seenInScan: Uint8Array;
  private readonly roundAccesses: Float64Array;
  private scanSeen: number[] = [];
  private roundSeen: number[] = [];
  private pending: Moves | null = null;
  private epochsPerScan = 1;
  private scansPerRound = 1;
  private scanEpochsLeft = 0;
  private scansLeft = 0;
  private nextEpoch = 0;
  private roundStartNs = 0;
  private readonly migrationNsPerPage: number;

  constructor(
    readonly meta: TraceMeta,
    readonly policy: SimPolicy,
    readonly cfg: SimConfig,
    private readonly onMoves?: (rec: MoveRecord) => void,
  ) {
    if (!(cfg.dramRatio >= 0 && cfg.dramRatio <= 1)) throw new VmtierError('INVALID_INPUT', `dram ratio must be within [0, 1], got ${cfg.dramRatio}`);
    if (!(cfg.migrationGBps > 0)) throw new VmtierError('INVALID_INPUT', `migration bandwidth must be > 0 GB/s, got ${cfg.migrationGBps}`);
    if (!(cfg.dramLatencyNs > 0) || !(cfg.slowLatencyNs >= 0)) throw new VmtierError('INVALID_INPUT', 'latencies must be positive');
    const n = meta.pages;
    this.capacity = Math.floor(cfg.dramRatio * n + 1e-9);
    this.tiers = new Uint8Array(n).fill(TIER_NONE);
    this.lastMoveEpoch = new Int32Array(n).fill(-0x40000000);
    this.lastMoveDir = new Int8Array(n);
    this.counts = new Uint8Array(n);
    this.seenInScan = new Uint8Array(n);
    this.roundAccesses = new Float64Array(n);
    this.migrationNsPerPage = policy.migrationFree ? 0 : SIM_PAGE_BYTES / cfg.migrationGBps;
    policy.init({ meta, capacity: this.capacity, tiers: this.tiers, cfg, dramUsed: () => this.dram });
    this.startRound();
  }

  private startRound(): void {
    const p = this.policy.plan();
    this.epochsPerScan = Math.max(1, Math.round(p.epochsPerScan));
    this.scansPerRound = Math.min(255, Math.max(1, Math.round(p.scansPerRound)));
    this.scanEpochsLeft = this.epochsPerScan;
    this.scansLeft = this.scansPerRound;
    this.roundStartNs = this.costNs;
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
    for (let i = 0; i < batch.length; i++) {
      const a = batch.accesses[i]!;
      if (a <= 0) continue;
      const p = batch.pages[i]!;
      let t = tiers[p]!;
      if (t === TIER_NONE) {
        t = this.dram < this.capacity ? TIER_DRAM : TIER_SLOW;
        tiers[p] = t;
        if (t === TIER_DRAM) this.dram++;
      }
      this.accesses += a;
      if (t === TIER_DRAM) {
        this.dramAccesses += a;
        this.costNs += a * dramLat;
      } else this.costNs += a * slowLat;
      this.roundAccesses[p] += a;
      if (this.seenInScan[p] === 0) {
        this.seenInScan[p] = 1;
        this.scanSeen.push(p);
      }
    }

    if (--this.scanEpochsLeft > 0) return;
    for (const p of this.scanSeen) {
      this.seenInScan[p] = 0;
      if (this.counts[p]++ === 0) this.roundSeen.push(p);
    }
    this.scanSeen = [];
    this.scanEpochsLeft = this.epochsPerScan;
    if (--this.scansLeft > 0) return;
    const m = this.policy.endRound({
      epoch: e,
      counts: this.counts,
      seen: Int32Array.from(this.roundSeen),
      epochsPerScan: this.epochsPerScan,
      scansPerRound: this.scansPerRound,
      elapsedNs: this.costNs - this.roundStartNs,
      accesses: this.roundAccesses,
    });
    for (const p of this.roundSeen) {
      this.counts[p] = 0;
      this.roundAccesses[p] = 0;
    }
    this.roundSeen = [];
    this.pending = m && (m.promote.length > 0 || m.demote.length > 0) ? m : null;
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
    this.costNs += this.migrationNsPerPage;
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
      migratedBytes: this.migrated * SIM_PAGE_BYTES,
      promotions: this.promotions,
      demotions: this.demotions,
      pingPongs: this.pingPongs,
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
