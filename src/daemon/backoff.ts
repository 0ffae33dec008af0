/**
 * Per-VM exponential backoff: a VM whose rounds or moves keep failing waits base, 2×base, 4×base …
 * (capped) before trying again, so one broken VM costs the host little and never spins. The clock is
 * injected so tests can drive it.
 */
export interface BackoffOptions {
  baseMs?: number;
  maxMs?: number;
  now?: () => number;
}

export class Backoff {
  readonly baseMs: number;
  readonly maxMs: number;
  private readonly now: () => number;
  private streak = 0;
  private until = 0;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 1000;
    this.maxMs = opts.maxMs ?? 60_000;
    this.now = opts.now ?? Date.now;
  }

  /** Consecutive failures since the last success. */
  get failures(): number {
    return this.streak;
  }

  /** Time (clock ms) before which the guarded action should not run again; 0 when not backing off. */
  get blockedUntil(): number {
    return this.streak === 0 ? 0 : this.until;
  }

  /** Records a failure; returns the delay now in force. */
  failure(): number {
    this.streak++;
    // 2^(streak-1) overflows nothing here: the cap is reached long before.
    const delay = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.streak - 1, 30));
    this.until = this.now() + delay;
    return delay;
  }

  success(): void {
    this.streak = 0;
    this.until = 0;
  }

  /** true when the guarded action may run now. */
  ready(): boolean {
    return this.streak === 0 || this.now() >= this.until;
  }

  /** ms left to wait (0 when ready). */
  remainingMs(): number {
    return this.ready() ? 0 : this.until - this.now();
  }
}
