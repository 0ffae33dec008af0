/**
 * The causal bound: the lowest slowdown any policy that cannot see the future can expect on a
 * generated trace.
 *
 * A generated trace draws each page's accesses in epoch e as Poisson(λ[p][e]) with rates that do
 * not depend on earlier draws. A policy's placement for epoch e is fixed before e's draws, so its
 * expected cost in e is Σ λ·latency(tier), which no placement beats more than "the DRAM share's
 * highest-rate pages in DRAM". Summing that over epochs, with free migration and the rates known
 * exactly, bounds every causal policy from below (in expectation). The `oracle` policy sees each
 * epoch's actual draws, so on low-rate pages it also profits from noise that nobody can predict:
 * the gap between the two is what the oracle gets from seeing the future, not from placing well.
 */
import { VmtierError } from '../errors.js';
import type { SimConfig } from './engine.js';

export class CausalBound {
  private costNs = 0;
  private accesses = 0;
  private scratch = new Float64Array(0);

  constructor(
    /** DRAM capacity in pages (⌊dramRatio × pages⌋, as the simulator computes it). */
    private readonly capacity: number,
    private readonly cfg: Pick<SimConfig, 'dramLatencyNs' | 'slowLatencyNs'>,
  ) {
    if (!(capacity >= 0)) throw new VmtierError('INVALID_INPUT', `capacity must be >= 0 pages, got ${capacity}`);
  }

  /** Adds one epoch: every VM's per-page rates (all VMs share DRAM). */
  epoch(rates: readonly Float64Array[]): void {
    let n = 0;
    for (const r of rates) n += r.length;
    if (this.scratch.length !== n) this.scratch = new Float64Array(n);
    const all = this.scratch;
    let k = 0;
    let sum = 0;
    for (const r of rates) {
      for (let i = 0; i < r.length; i++) {
        all[k++] = r[i]!;
        sum += r[i]!;
      }
    }
    // Ascending sort: the top `capacity` rates are the last ones.
    all.sort();
    let top = 0;
    for (let i = Math.max(0, n - this.capacity); i < n; i++) top += all[i]!;
    this.costNs += top * this.cfg.dramLatencyNs + (sum - top) * this.cfg.slowLatencyNs;
    this.accesses += sum;
  }

  /** Expected slowdown of the best causal placement (cost ÷ accesses × DRAM latency). */
  slowdown(): number {
    if (this.accesses <= 0) throw new VmtierError('INVALID_TRACE', 'no accesses to bound');
    return this.costNs / (this.accesses * this.cfg.dramLatencyNs);
  }
}
