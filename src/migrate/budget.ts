/**
 * Migration budgets: token buckets in bytes per second, one per VM (the policy's
 * migration.maxMBps) and one for the whole host, so that several VMs moving at once never exceed
 * what the host allows. A round takes a lease (the smaller of both buckets, reserved in both at
 * once), moves, and settles the lease with the bytes it attempted; the unused rest goes back. DRAM pressure shapes the grant: promotion pauses while DRAM
 * free is under the watermark (it would only push something else out), and demotion is served
 * first whenever DRAM is short. The clock is injected for tests.
 */
const MB = 1 << 20;

export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    private rateBytesPerSec: number,
    private readonly burstSeconds: number,
    now: number,
  ) {
    this.tokens = this.capacity;
    this.last = now;
  }

  get capacity(): number {
    return this.rateBytesPerSec * this.burstSeconds;
  }

  get rate(): number {
    return this.rateBytesPerSec;
  }

  /** Changes the rate (a policy update); tokens above the new capacity are dropped. */
  setRate(rateBytesPerSec: number, now: number): void {
    this.refill(now);
    this.rateBytesPerSec = rateBytesPerSec;
    this.tokens = Math.min(this.tokens, this.capacity);
  }

  available(now: number): number {
    this.refill(now);
    return Math.max(0, this.tokens);
  }

  /** Takes `bytes` (may go negative: a move that overran its grant is paid back by waiting). */
  take(bytes: number, now: number): void {
    this.refill(now);
    this.tokens -= bytes;
  }

  /** Returns unused reserved bytes (never above capacity: the bucket refilled meanwhile). */
  give(bytes: number, now: number): void {
    this.refill(now);
    this.tokens = Math.min(this.capacity, this.tokens + bytes);
  }

  private refill(now: number): void {
    const dt = Math.max(0, now - this.last) / 1000;
    this.last = Math.max(this.last, now);
    this.tokens = Math.min(this.capacity, this.tokens + dt * this.rateBytesPerSec);
  }
}

export interface BudgetOptions {
  /** Host-wide migration rate limit; default 1024 MB/s. */
  hostMBps?: number;
  /** A bucket holds this many seconds of its rate (the largest single grant); default 2. */
  burstSeconds?: number;
  /** Promotion pauses while free DRAM is below this; default 256 MiB. */
  dramFreeWatermarkBytes?: number;
  now?: () => number;
}

export interface LeaseRequest {
  /** Bytes the policy wants to demote / promote this round. */
  demoteBytes: number;
  promoteBytes: number;
  /** Free bytes on the top tier now (as last read; promotions leased but not yet settled are subtracted). */
  dramFreeBytes: number;
}

/**
 * Bytes a VM may move now, reserved in its own and the host's bucket until settled. Every lease
 * must be settled (in a finally) with the bytes really attempted: the unused rest goes back.
 */
export interface MoveLease {
  readonly demoteBytes: number;
  readonly promoteBytes: number;
  /** Promotion held back by the DRAM watermark. */
  readonly promotionPaused: boolean;
  /** DRAM is short (free below watermark): demotion went first. */
  readonly dramShort: boolean;
  /** What the buckets allowed when leased (demote + promote <= this). */
  readonly grantedBytes: number;
  /** Pays for the bytes attempted (moved or not: the kernel did the work) and returns the rest. Idempotent. */
  settle(attemptedBytes: number): void;
}

export class MigrationBudget {
  readonly hostMBps: number;
  readonly watermarkBytes: number;
  private readonly burstSeconds: number;
  private readonly now: () => number;
  private readonly host: TokenBucket;
  private readonly vms = new Map<string, TokenBucket>();
  /** Promotion bytes leased and not yet settled: DRAM that other VMs' promotions must not count as free. */
  private promotingBytes = 0;

  constructor(opts: BudgetOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.hostMBps = opts.hostMBps ?? 1024;
    this.burstSeconds = opts.burstSeconds ?? 2;
    this.watermarkBytes = opts.dramFreeWatermarkBytes ?? 256 * MB;
    this.host = new TokenBucket(this.hostMBps * MB, this.burstSeconds, this.now());
  }

  private bucket(vmId: string, vmMBps: number): TokenBucket {
    const t = this.now();
    let b = this.vms.get(vmId);
    if (!b) {
      b = new TokenBucket(vmMBps * MB, this.burstSeconds, t);
      this.vms.set(vmId, b);
    } else if (b.rate !== vmMBps * MB) {
      b.setRate(vmMBps * MB, t);
    }
    return b;
  }

  /** Bytes this VM may move now: the smaller of its own and the host's bucket. */
  available(vmId: string, vmMBps: number): number {
    const t = this.now();
    return Math.min(this.bucket(vmId, vmMBps).available(t), this.host.available(t));
  }

  /**
   * Leases what the buckets allow, split between demotion and promotion, and reserves it at once
   * in both buckets, so VMs planning at the same time share the host's bytes instead of each
   * being granted all of them. Demotion is served first (it frees DRAM that promotion needs);
   * promotion never takes DRAM below the watermark, counting other VMs' unsettled promotions.
   */
  lease(vmId: string, vmMBps: number, want: LeaseRequest): MoveLease {
    const granted = this.available(vmId, vmMBps);
    const dramShort = want.dramFreeBytes < this.watermarkBytes;
    const demoteBytes = Math.max(0, Math.min(want.demoteBytes, granted));
    // Demoted bytes become free DRAM once moved: promotion may use them.
    const roomForPromotion = Math.max(0, want.dramFreeBytes - this.promotingBytes + demoteBytes - this.watermarkBytes);
    const promotionPaused = want.promoteBytes > 0 && roomForPromotion <= 0;
    const promoteBytes = Math.max(0, Math.min(want.promoteBytes, granted - demoteBytes, roomForPromotion));
    const reserved = demoteBytes + promoteBytes;
    const vmBucket = this.bucket(vmId, vmMBps);
    const t = this.now();
    vmBucket.take(reserved, t);
    this.host.take(reserved, t);
    this.promotingBytes += promoteBytes;
    let settled = false;
    return {
      demoteBytes,
      promoteBytes,
      promotionPaused,
      dramShort,
      grantedBytes: granted,
      settle: (attemptedBytes: number) => {
        if (settled) return;
        settled = true;
        this.promotingBytes -= promoteBytes;
        // A move that overran its lease is paid in full (buckets may go negative and refill).
        const refund = reserved - Math.max(0, attemptedBytes);
        const now = this.now();
        if (refund >= 0) {
          vmBucket.give(refund, now);
          this.host.give(refund, now);
        } else {
          vmBucket.take(-refund, now);
          this.host.take(-refund, now);
        }
      },
    };
  }

  forget(vmId: string): void {
    this.vms.delete(vmId);
  }
}
