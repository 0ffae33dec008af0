/**
 * One decision for the host per round. Each VM loop scans on its own clock; when its counts are
 * in, it submits them here and waits. The tiered VMs whose rounds are due are gathered (at most
 * `gatherMs` after the first of them arrives) and decided in one src/policy decide() call over
 * one DRAM pool — the call the simulator makes for all its VMs — so shares, contention and the
 * order "every VM's demotions, then promotions" are the policy's, not re-derived per VM. A VM
 * in observe mode (it moves nothing) is decided alone at once, within the share it would have.
 *
 * Gathering aligns the loops: after a joint decision their next rounds start together. The wait
 * is half a round of the VM that came first (at least 100 ms, at most `maxGatherMs`): whichever
 * of two loops is ahead, one waits for the other at most once by less than half a round, and
 * from then on they arrive together. A VM whose round is not due (a longer round length) is not
 * waited for; a late one delays the others by at most the wait and is decided in the next batch;
 * one that stopped submitting (failing, policy off) is not waited for after three of its rounds.
 *
 * The policy runs in one thread (policy-thread.ts); a thread that dies is replaced, and every VM
 * then starts from fresh policy state (the new thread has none). A batch that fails (one VM's
 * input is invalid) is decided again VM by VM, so one bad VM does not fail the others.
 */
import { Worker } from 'node:worker_threads';
import { VmtierError, type ErrorCode } from '../errors.js';
import { TieringPolicy, splitDram, type Decision, type RoundInput, type TierPolicy, type VmDecision, type VmRoundInput } from '../policy/index.js';
import type { PolicyThreadReply, PolicyThreadRequest } from './policy-thread.js';
import type { PolicyThreadHeap } from './thread-heap.js';

export interface DecisionRequest {
  vm: VmRoundInput;
  /** The VM's policy state starts fresh (new layout, new mode, new VM thread). */
  fresh: boolean;
  /** DRAM the VM holds now (this round's accounting). */
  dramBytes: number;
  /** Its DRAM demand as the policy last measured it (first round: its hot and warm pages). */
  demandBytes: number;
}

export interface HostDecision {
  decision: VmDecision;
  /** VMs decided in the same decide() call (1: alone). */
  batchVms: number;
  /** The DRAM pool that call split between them. */
  dramCapacityBytes: number;
}

/** A VM as the DRAM pool sees it: what it holds, what it demands, its policy's floor, ceiling and weight. */
export interface PoolVm {
  vmId: string;
  policy: TierPolicy;
  dramBytes: number;
  demandBytes: number;
}

/** The host's DRAM as the engine sees it when a batch is decided. */
export interface HostPool {
  /**
   * DRAM the VMs of `batch` may hold together, and whether the host is short of DRAM. `batch`
   * gives their current DRAM and demand; the pool knows the other tiered VMs' last ones.
   */
  capacity(batch: readonly PoolVm[]): { dramCapacityBytes: number; dramShort: boolean };
}

/**
 * A batch's DRAM pool: the top tier's DRAM held by the tiered VMs plus what is free above the
 * watermark (below it the shortfall comes out of the pool: VMs then give back, confirmed-cold
 * pages first, until the host is above it again), less the shares splitDram gives the tiered
 * VMs `outside` the batch (floors, ceilings, weights, last demand). With every tiered VM in the
 * batch that is the whole pool, which the policy splits itself. A VM in observe mode, decided
 * alone, gets the share it would have beside the tiered ones.
 */
export function batchCapacity(o: { topFreeBytes: number; watermarkBytes: number; outside: readonly PoolVm[]; batch: readonly PoolVm[] }): { dramCapacityBytes: number; dramShort: boolean } {
  const all = [...o.outside, ...o.batch];
  const pool = Math.max(0, all.reduce((s, m) => s + m.dramBytes, 0) + o.topFreeBytes - o.watermarkBytes);
  const shares = splitDram(
    pool,
    all.map((m) => ({ floorBytes: m.policy.dram.minBytes, ceilingBytes: m.policy.dram.maxBytes ?? Infinity, weight: m.policy.dram.weight, demandBytes: m.demandBytes })),
  );
  let others = 0;
  for (let i = 0; i < o.outside.length; i++) others += shares[i]!;
  const alone = o.batch.length === 1 && o.batch[0]!.policy.mode !== 'tier';
  return { dramCapacityBytes: alone ? shares[o.outside.length]! : Math.max(0, pool - others), dramShort: o.topFreeBytes < o.watermarkBytes };
}

/** Runs decide() with the given VMs' policy state forgotten first. */
export type PolicyRunner = (forget: string[], input: RoundInput) => Promise<Decision>;

export interface HostDeciderOptions {
  pool: HostPool;
  /** Longest wait for the other due VMs after the first of a batch arrives; default 2000 ms. */
  maxGatherMs?: number;
  /** Default: the policy thread. Tests may run the same TieringPolicy in process (inProcessRunner). */
  runner?: PolicyRunner;
  now?: () => number;
  /** Called after each decision of the policy thread with its heap and the policy's state. */
  onThreadHeap?: (h: PolicyThreadHeap | null) => void;
}

export interface HostDecisionStatus {
  /** decide() calls over tiered VMs since start. */
  decisions: number;
  /** VMs in the newest such call. */
  lastBatchVms: number;
  /** Most VMs decided in one call. */
  maxBatchVms: number;
  /** Tiered rounds decided together with at least one other VM / alone. */
  jointRounds: number;
  soloRounds: number;
  /** Batches that failed as a whole and were decided VM by VM. */
  retriedAlone: number;
}

/** The status before any decision (and of an engine that is not running). */
export function noDecisions(): HostDecisionStatus {
  return { decisions: 0, lastBatchVms: 0, maxBatchVms: 0, jointRounds: 0, soloRounds: 0, retriedAlone: 0 };
}

interface Pending {
  req: DecisionRequest;
  resolve: (d: HostDecision) => void;
  reject: (e: Error) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

interface Seen {
  /** When its newest decision was handed back (null: its round is in the decider now). */
  doneAt: number | null;
  /**
   * From a decision handed back to its next submission: the loop's own part of a round (moves,
   * record, the next scan), without the time it waited here. null after its first round.
   */
  workMs: number | null;
}

export class HostDecider {
  private readonly o: Required<Omit<HostDeciderOptions, 'runner' | 'onThreadHeap'>>;
  private readonly runner: PolicyRunner;
  private readonly thread: PolicyThread | null;
  private readonly seen = new Map<string, Seen>();
  /** Policy state to drop before the next decision (VM ended, fresh, or decision discarded). */
  private readonly toForget = new Set<string>();
  private waiting: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;
  private busy: Promise<void> | null = null;
  private flushing = false;
  private closed = false;
  readonly stats: HostDecisionStatus = noDecisions();

  constructor(o: HostDeciderOptions) {
    this.o = { pool: o.pool, maxGatherMs: o.maxGatherMs ?? 2000, now: o.now ?? Date.now };
    this.thread = o.runner ? null : new PolicyThread(o.onThreadHeap);
    this.runner = o.runner ?? ((forget, input) => this.thread!.decide(forget, input));
  }

  /** The policy thread's heap and the policy's retained state (null before its first answer or with an in-process runner). */
  get threadHeap(): PolicyThreadHeap | null {
    return this.thread?.heap ?? null;
  }

  submit(req: DecisionRequest, signal: AbortSignal): Promise<HostDecision> {
    if (this.closed) return Promise.reject(new VmtierError('UNSUPPORTED', 'the host decider is closed'));
    const id = req.vm.vmId;
    if (req.fresh) this.toForget.add(id);
    if (req.vm.policy.mode !== 'tier') return this.decideAlone(req, signal);
    const now = this.o.now();
    const s = this.seen.get(id);
    this.seen.set(id, { doneAt: null, workMs: s?.doneAt != null ? now - s.doneAt : null });
    return new Promise<HostDecision>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason as Error);
      const p: Pending = {
        req,
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiting.indexOf(p);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal.reason as Error);
        },
      };
      signal.addEventListener('abort', p.onAbort, { once: true });
      this.waiting = this.waiting.filter((w) => w.req.vm.vmId !== id || (w.reject(new VmtierError('INVALID_INPUT', `vm ${id}: a newer round replaced this one`)), false));
      this.waiting.push(p);
      this.schedule();
    });
  }

  /** A VM ended: its policy state goes, and no batch waits for it. */
  forget(vmId: string): void {
    this.seen.delete(vmId);
    this.toForget.add(vmId);
    this.schedule();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const p of this.waiting.splice(0)) p.reject(new VmtierError('UNSUPPORTED', 'the host decider is closed'));
    await this.thread?.close();
  }

  /**
   * Tiered VMs whose next round is due now: expected back within their wait (their own part of a
   * round since their last decision, less the wait). One that is a whole round late (failing,
   * policy off, stopped) is not waited for; one seen only once is due until `maxGatherMs` after
   * its decision.
   */
  private due(now: number): string[] {
    const out: string[] = [];
    for (const [id, s] of this.seen) {
      if (s.doneAt === null) continue;
      const work = s.workMs ?? 0;
      const late = s.workMs === null ? now > s.doneAt + this.o.maxGatherMs : now > s.doneAt + 2 * work + this.windowMs(s);
      if (!late && now >= s.doneAt + work - this.windowMs(s)) out.push(id);
    }
    return out;
  }

  /** How long a batch that this VM opens waits for the others: half its round, 100 ms to maxGatherMs. */
  private windowMs(s: Seen | undefined): number {
    return Math.min(this.o.maxGatherMs, Math.max(100, (s?.workMs ?? 0) / 2));
  }

  private schedule(): void {
    if (this.busy || this.waiting.length === 0 || this.flushing) return;
    // On the next turn: submissions of the same turn (loops that finished their scans together) join.
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      if (this.busy || this.waiting.length === 0) return;
      const have = new Set(this.waiting.map((w) => w.req.vm.vmId));
      if (this.due(this.o.now()).every((id) => have.has(id))) {
        if (this.timer) clearTimeout(this.timer);
        this.timer = null;
        this.flush();
      } else if (!this.timer) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.flush();
        }, this.windowMs(this.seen.get(this.waiting[0]!.req.vm.vmId)));
      }
    });
  }

  private flush(): void {
    if (this.busy || this.waiting.length === 0) return;
    const batch = this.waiting.splice(0);
    for (const p of batch) p.signal.removeEventListener('abort', p.onAbort);
    this.busy = this.decideBatch(batch).finally(() => {
      this.busy = null;
      this.schedule();
    });
  }

  private async decideBatch(batch: Pending[]): Promise<void> {
    const { dramCapacityBytes, dramShort } = this.o.pool.capacity(batch.map((p) => ({ vmId: p.req.vm.vmId, policy: p.req.vm.policy, dramBytes: p.req.dramBytes, demandBytes: p.req.demandBytes })));
    const forget = this.takeForget();
    let d: Decision;
    try {
      d = await this.runner(forget, { dramCapacityBytes, dramShort, vms: batch.map((p) => p.req.vm) });
    } catch (e) {
      if (batch.length === 1) {
        this.toForget.add(batch[0]!.req.vm.vmId);
        this.markDone(batch);
        batch[0]!.reject(e as Error);
        return;
      }
      // One VM's input failed the call, perhaps after others' state advanced: each starts
      // fresh and is decided alone, so only the bad one fails.
      this.stats.retriedAlone++;
      for (const p of batch) {
        this.toForget.add(p.req.vm.vmId);
        this.markDone([p]);
        try {
          p.resolve(await this.decideAlone(p.req, p.signal));
        } catch (err) {
          p.reject(err as Error);
        }
      }
      return;
    }
    this.markDone(batch);
    this.stats.decisions++;
    this.stats.lastBatchVms = batch.length;
    this.stats.maxBatchVms = Math.max(this.stats.maxBatchVms, batch.length);
    if (batch.length > 1) this.stats.jointRounds += batch.length;
    else this.stats.soloRounds++;
    for (const p of batch) {
      const v = d.vms.find((x) => x.vmId === p.req.vm.vmId);
      // Its loop stopped meanwhile: the decision is dropped, and so is the state it advanced.
      if (p.signal.aborted) {
        this.toForget.add(p.req.vm.vmId);
        p.reject(p.signal.reason as Error);
      } else if (!v) p.reject(new VmtierError('INVALID_INPUT', `vm ${p.req.vm.vmId}: no decision returned`));
      else p.resolve({ decision: v, batchVms: batch.length, dramCapacityBytes });
    }
  }

  /** Their decisions are handed back now: their next rounds are timed from here. */
  private markDone(batch: readonly Pending[]): void {
    const t = this.o.now();
    for (const p of batch) {
      const s = this.seen.get(p.req.vm.vmId);
      if (s) s.doneAt = t;
    }
  }

  /** One VM alone (observe mode, or a batch's retry), within the share the pool gives it. */
  private async decideAlone(req: DecisionRequest, signal: AbortSignal): Promise<HostDecision> {
    const { dramCapacityBytes, dramShort } = this.o.pool.capacity([{ vmId: req.vm.vmId, policy: req.vm.policy, dramBytes: req.dramBytes, demandBytes: req.demandBytes }]);
    const d = await this.runner(this.takeForget(), { dramCapacityBytes, dramShort, vms: [req.vm] });
    signal.throwIfAborted();
    return { decision: d.vms[0]!, batchVms: 1, dramCapacityBytes };
  }

  private takeForget(): string[] {
    const f = [...this.toForget];
    this.toForget.clear();
    return f;
  }
}

/** The policy thread's main-thread side: requests answered in order; a dead thread is replaced (state starts fresh). */
class PolicyThread {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (d: Decision) => void; reject: (e: Error) => void }>();
  heap: PolicyThreadHeap | null = null;

  constructor(private readonly onHeap?: (h: PolicyThreadHeap | null) => void) {}

  private get(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL('./policy-thread.js', import.meta.url));
    w.on('message', (r: PolicyThreadReply) => {
      if (this.worker === w) {
        this.heap = { ...r.heap, stateBytes: r.stateBytes };
        this.onHeap?.(this.heap);
      }
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      // Idle, the thread does not keep the process alive; a decision in flight does.
      if (this.pending.size === 0) w.unref();
      if (r.ok) p.resolve(r.result as Decision);
      else p.reject(new VmtierError((r.error.code as ErrorCode | undefined) ?? 'INVALID_INPUT', r.error.message, r.error.details));
    });
    const fail = (why: string) => {
      if (this.worker !== w) return;
      this.worker = null;
      this.heap = null;
      this.onHeap?.(null);
      for (const [, p] of this.pending) p.reject(new VmtierError('UNSUPPORTED', `policy thread ${why}`));
      this.pending.clear();
    };
    w.on('error', (e) => fail(`failed: ${e.message}`));
    w.on('exit', (code) => fail(`exited (${code})`));
    w.unref();
    this.worker = w;
    return w;
  }

  decide(forget: string[], input: RoundInput): Promise<Decision> {
    const w = this.get();
    const id = this.nextId++;
    return new Promise<Decision>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.ref();
      w.postMessage({ op: 'decide', id, forget, input } satisfies PolicyThreadRequest);
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    for (const [, p] of this.pending) p.reject(new VmtierError('UNSUPPORTED', 'policy thread closed'));
    this.pending.clear();
    await w?.terminate();
  }
}

/** The same TieringPolicy in this thread (tests): not the daemon's path, which is the policy thread. */
export function inProcessRunner(): PolicyRunner {
  const core = new TieringPolicy();
  return async (forget, input) => {
    for (const v of forget) core.forget(v);
    return core.decide(input);
  };
}
