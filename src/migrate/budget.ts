/**
 * Migration budgets: token buckets in bytes per second, one per VM (the policy's
 * migration.maxMBps) and one for the whole host, so that several VMs moving at once never exceed
 * what the host allows. A round takes a lease (the smaller of both buckets, reserved in both at
 * once), moves, and settles the lease with the bytes it attempted; the unused rest goes back. DRAM pressure shapes the grant: promotion pauses while DRAM
 * free is under the watermark (it would only push something else out), and demotion is served
 * first whenever DRAM is short. The host's use (leases in flight, the last hour per minute, VMs
 * that got less than they asked) is kept for the engine status and the dashboard's Host page.
 * The clock is injected for tests.
 */
const MB = 1 << 20;
const MINUTE_MS = 60_000;
/** The host's use is kept per minute for the last hour: 60 slots, reused in turn. */
const HOUR_SLOTS = 60;

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

/** Why a VM's latest lease got less than it asked: its own bucket, the host's, or DRAM room for promotion. */
export type BudgetLimit = 'vm' | 'host' | 'dram';

/** What the host-wide budget is doing: plain data for the engine status and the dashboard. */
export interface HostBudgetStatus {
  /** The host bucket's rate (--host-mbps), bytes per second. */
  rateBytesPerSec: number;
  /** Bytes the bucket holds when full (rate x burst): the most one lease can get. */
  capacityBytes: number;
  /** Bytes in the host bucket now (leases reserve from it; settling returns the unused rest). */
  availableBytes: number;
  dramFreeWatermarkBytes: number;
  /** Leases taken and not yet settled (moves in progress), and the bytes they hold. */
  outstanding: { leases: number; reservedBytes: number };
  /** The last 60 minutes, per lease: asked, reserved when leased, paid when settled (attempted moves). */
  lastHour: { leases: number; wantedBytes: number; reservedBytes: number; settledBytes: number; shortLeases: number };
  /** VMs whose latest lease got less than they asked (they move the rest in later rounds), by uuid. */
  waiting: Array<{ vm: string; t: number; wantedBytes: number; reservedBytes: number; limitedBy: BudgetLimit }>;
}

interface MinuteSlot {
  minute: number;
  leases: number;
  wantedBytes: number;
  reservedBytes: number;
  settledBytes: number;
  shortLeases: number;
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
  private outstandingLeases = 0;
  private outstandingBytes = 0;
  private readonly hour: MinuteSlot[] = [];
  /** Per VM, its latest lease when that got less than asked (cleared by one that got everything). */
  private readonly short = new Map<string, HostBudgetStatus['waiting'][number]>();

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
    const wanted = Math.max(0, want.demoteBytes) + Math.max(0, want.promoteBytes);
    if (reserved < wanted) {
      // Short of what it asked: DRAM room when the buckets had enough, else the emptier bucket.
      const limitedBy: BudgetLimit = granted >= wanted ? 'dram' : this.host.available(t) <= vmBucket.available(t) ? 'host' : 'vm';
      this.short.set(vmId, { vm: vmId, t, wantedBytes: wanted, reservedBytes: reserved, limitedBy });
    } else {
      this.short.delete(vmId);
    }
    const slot = this.slot(t);
    slot.leases++;
    slot.wantedBytes += wanted;
    slot.reservedBytes += reserved;
    if (reserved < wanted) slot.shortLeases++;
    vmBucket.take(reserved, t);
    this.host.take(reserved, t);
    this.promotingBytes += promoteBytes;
    this.outstandingLeases++;
    this.outstandingBytes += reserved;
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
        this.outstandingLeases--;
        this.outstandingBytes -= reserved;
        // A move that overran its lease is paid in full (buckets may go negative and refill).
        const refund = reserved - Math.max(0, attemptedBytes);
        const now = this.now();
        this.slot(now).settledBytes += Math.max(0, attemptedBytes);
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
    this.short.delete(vmId);
  }

  /** The host bucket, leases in flight and the last hour's leases (O(60): kept per minute, not per lease). */
  hostStatus(): HostBudgetStatus {
    const t = this.now();
    const minute = Math.floor(t / MINUTE_MS);
    const lastHour = { leases: 0, wantedBytes: 0, reservedBytes: 0, settledBytes: 0, shortLeases: 0 };
    // The slots are filled by minute of the hour, so slots before the first one used are holes.
    for (const s of this.hour) {
      if (!s || s.minute <= minute - HOUR_SLOTS || s.minute > minute) continue;
      lastHour.leases += s.leases;
      lastHour.wantedBytes += s.wantedBytes;
      lastHour.reservedBytes += s.reservedBytes;
      lastHour.settledBytes += s.settledBytes;
      lastHour.shortLeases += s.shortLeases;
    }
    return {
      rateBytesPerSec: this.host.rate,
      capacityBytes: this.host.capacity,
      availableBytes: this.host.available(t),
      dramFreeWatermarkBytes: this.watermarkBytes,
      outstanding: { leases: this.outstandingLeases, reservedBytes: this.outstandingBytes },
      lastHour,
      waiting: [...this.short.values()].sort((a, b) => a.vm.localeCompare(b.vm)).map((w) => ({ ...w })),
    };
  }

  private slot(t: number): MinuteSlot {
    const minute = Math.floor(t / MINUTE_MS);
    const i = ((minute % HOUR_SLOTS) + HOUR_SLOTS) % HOUR_SLOTS;
    let s = this.hour[i];
    if (!s || s.minute !== minute) this.hour[i] = s = { minute, leases: 0, wantedBytes: 0, reservedBytes: 0, settledBytes: 0, shortLeases: 0 };
    return s;
  }
}
