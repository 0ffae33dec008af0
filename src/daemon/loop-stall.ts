/**
 * Event-loop stalls that are vmtier's own, told apart from the OS keeping the process off a CPU.
 *
 * A wall-clock delay monitor (monitorEventLoopDelay, prom-client's eventloop_lag) cannot tell
 * "our code held the loop for 150 ms" from "the host ran something else for 150 ms": on a loaded
 * 2-core host the second dominates. This sampler runs a short timer on the main thread and, for
 * every gap between two consecutive callbacks, reads the main thread's scheduler accounting from
 * /proc/<pid>/task/<tid>/schedstat (ns on CPU, ns runnable but waiting for a CPU):
 *  - cpuMs:  the main thread ran (our JS, native calls on the main thread, or GC) — a stall of ours;
 *  - waitMs: the thread was runnable but the OS ran something else — preemption, not ours;
 *  - the rest of the gap the thread slept: idle in epoll (≤ one interval), stopped (SIGSTOP), or
 *    blocked in a synchronous system call. `heldMs` = wall − wait bounds "ours" from above,
 *    including such system calls; it is reported next to cpuMs, which is the bound asserted.
 * Linux only. The main thread's tid equals the process id. With CONFIG_PARAVIRT_TIME_ACCOUNTING,
 * hypervisor steal is not counted as on-CPU time. sum_exec_runtime of the running thread lags by
 * at most a scheduler tick (4 ms at HZ=250).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { Counter, Gauge, type Registry } from 'prom-client';

export interface LoopGap {
  /** Wall time at the end of the gap (ms, performance.now() clock). */
  at: number;
  wallMs: number;
  cpuMs: number;
  waitMs: number;
}

export interface LoopStallSummary {
  gaps: number;
  /** Longest gap on the wall clock (what a plain event-loop delay monitor would report). */
  wallMaxMs: number;
  /** Most on-CPU time of the main thread within one gap: the loop held by our own work. */
  cpuMaxMs: number;
  /** Most wall − run-queue wait within one gap: our work plus sleeping (syscalls, SIGSTOP, idle). */
  heldMaxMs: number;
  /** Most run-queue wait within one gap: the OS preempting the main thread. */
  waitMaxMs: number;
  /** Gaps whose on-CPU time reached the stall threshold. */
  stalls: number;
  /** The gaps with the most on-CPU time, longest first. */
  worst: LoopGap[];
  /** The gaps with the most wall − wait time (held), longest first. */
  worstHeld: LoopGap[];
}

export interface LoopStallOptions {
  /** Timer period (default 10 ms). */
  intervalMs?: number;
  /** On-CPU time within one gap that counts as a stall (default 100 ms). */
  stallMs?: number;
  /** How many worst gaps to keep (default 5). */
  keepWorst?: number;
  /** Window of the rolling maximum exported as a metric (default 30 s; the gauge covers 1–2 windows). */
  windowMs?: number;
}

/** The calling process's main thread: schedstat of tid = pid. */
function schedstatPath(): string {
  return `/proc/${process.pid}/task/${process.pid}/schedstat`;
}

export class LoopStallSampler {
  readonly intervalMs: number;
  readonly stallMs: number;
  readonly windowMs: number;
  private readonly keepWorst: number;
  private fd = -1;
  private readonly buf = Buffer.alloc(128);
  private timer: NodeJS.Timeout | null = null;
  private last: { t: number; cpuNs: number; waitNs: number } | null = null;
  private s: LoopStallSummary = LoopStallSampler.empty();
  /** Rolling maximum of cpuMs for the metric: the previous and the current window. */
  private win = { start: 0, prevMaxMs: 0, curMaxMs: 0 };
  /** Called for every gap at or above the stall threshold (the metrics count them). */
  onStall: ((gap: LoopGap) => void) | null = null;

  constructor(opts: LoopStallOptions = {}) {
    this.intervalMs = opts.intervalMs ?? 10;
    this.stallMs = opts.stallMs ?? 100;
    this.keepWorst = opts.keepWorst ?? 5;
    this.windowMs = opts.windowMs ?? 30_000;
  }

  private static empty(): LoopStallSummary {
    return { gaps: 0, wallMaxMs: 0, cpuMaxMs: 0, heldMaxMs: 0, waitMaxMs: 0, stalls: 0, worst: [], worstHeld: [] };
  }

  /** false where there is no per-thread schedstat (not Linux, no CONFIG_SCHED_INFO). */
  static supported(): boolean {
    try {
      closeSync(openSync(schedstatPath(), 'r'));
      return true;
    } catch {
      return false;
    }
  }

  get running(): boolean {
    return this.timer !== null;
  }

  start(): void {
    if (this.timer) return;
    this.fd = openSync(schedstatPath(), 'r');
    this.last = this.sample();
    this.win = { start: this.last.t, prevMaxMs: 0, curMaxMs: 0 };
    const tick = () => {
      this.record(this.sample());
      this.timer = setTimeout(tick, this.intervalMs);
      // The sampler alone never keeps a process alive.
      this.timer.unref();
    };
    this.timer = setTimeout(tick, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    this.last = null;
  }

  /** Figures since start() or the last reset(). */
  summary(): LoopStallSummary {
    return { ...this.s, worst: this.s.worst.map((g) => ({ ...g })), worstHeld: this.s.worstHeld.map((g) => ({ ...g })) };
  }

  reset(): void {
    this.s = LoopStallSampler.empty();
  }

  /** Longest on-CPU gap over the last one to two metric windows (ms). */
  recentCpuMaxMs(now = performance.now()): number {
    this.roll(now);
    return Math.max(this.win.prevMaxMs, this.win.curMaxMs);
  }

  private roll(now: number): void {
    if (now - this.win.start < this.windowMs) return;
    // A window with no sample at all (timer starved) leaves a 0 behind, which is right: no gap ended there.
    this.win.prevMaxMs = now - this.win.start < 2 * this.windowMs ? this.win.curMaxMs : 0;
    this.win.curMaxMs = 0;
    this.win.start = now;
  }

  private sample(): { t: number; cpuNs: number; waitNs: number } {
    // pread at offset 0 regenerates the seq_file: one open fd serves every sample (≈3 µs a read).
    const n = readSync(this.fd, this.buf, 0, this.buf.length, 0);
    const text = this.buf.toString('latin1', 0, n);
    const sp1 = text.indexOf(' ');
    const sp2 = text.indexOf(' ', sp1 + 1);
    return { t: performance.now(), cpuNs: Number(text.slice(0, sp1)), waitNs: Number(text.slice(sp1 + 1, sp2)) };
  }

  private keep(list: LoopGap[], gap: LoopGap, by: (g: LoopGap) => number): void {
    if (list.length >= this.keepWorst && by(gap) <= by(list[list.length - 1]!)) return;
    list.push(gap);
    list.sort((a, b) => by(b) - by(a));
    if (list.length > this.keepWorst) list.pop();
  }

  private record(now: { t: number; cpuNs: number; waitNs: number }): void {
    const prev = this.last!;
    this.last = now;
    const gap: LoopGap = { at: now.t, wallMs: now.t - prev.t, cpuMs: (now.cpuNs - prev.cpuNs) / 1e6, waitMs: (now.waitNs - prev.waitNs) / 1e6 };
    const s = this.s;
    s.gaps++;
    s.wallMaxMs = Math.max(s.wallMaxMs, gap.wallMs);
    s.cpuMaxMs = Math.max(s.cpuMaxMs, gap.cpuMs);
    s.waitMaxMs = Math.max(s.waitMaxMs, gap.waitMs);
    s.heldMaxMs = Math.max(s.heldMaxMs, gap.wallMs - gap.waitMs);
    if (gap.cpuMs >= this.stallMs) {
      s.stalls++;
      this.onStall?.(gap);
    }
    this.keep(s.worst, gap, (g) => g.cpuMs);
    this.keep(s.worstHeld, gap, (g) => g.wallMs - g.waitMs);
    this.roll(now.t);
    this.win.curMaxMs = Math.max(this.win.curMaxMs, gap.cpuMs);
  }
}

/**
 * Exports a sampler on a registry: the longest on-CPU gap of the recent window, and a count of
 * stalls. A metric already registered (an engine restarted in the same process) is rebound to
 * the newest sampler.
 */
export function exportLoopStallMetrics(registry: Registry, sampler: LoopStallSampler): void {
  const gaugeName = 'vmtier_event_loop_blocked_max_seconds';
  const counterName = 'vmtier_event_loop_stalls_total';
  registry.removeSingleMetric(gaugeName);
  new Gauge({
    name: gaugeName,
    help: `longest on-CPU time of the main thread between two event-loop turns over the last ${sampler.windowMs / 1000}-${(2 * sampler.windowMs) / 1000} s (time the OS ran other work excluded)`,
    registers: [registry],
    collect() {
      this.set(sampler.recentCpuMaxMs() / 1000);
    },
  });
  const stalls =
    (registry.getSingleMetric(counterName) as Counter | undefined) ??
    new Counter({ name: counterName, help: `event-loop gaps with ${sampler.stallMs} ms or more on-CPU time of the main thread`, registers: [registry] });
  sampler.onStall = () => stalls.inc();
}
