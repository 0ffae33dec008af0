/**
 * The tiering engine: a supervisor over one VmLoop per running domain. It starts a loop when a
 * domain starts (inventory event, or the periodic listing that also covers missed events and
 * libvirtd reconnects), stops it when the domain goes away, shares the host-wide migration budget
 * and the top tier's DRAM between the loops, and watches the kernel's own tiering (NUMA balancing
 * in tiering mode, demotion) to warn when both would move the same pages.
 *
 * Loops are independent async tasks that meet once per round in the host's decider
 * (host-decider.ts): the tiered VMs whose rounds are due are decided in one policy call over the
 * host's DRAM pool. A slow VM delays another's decision by at most the decider's gathering wait
 * (half a round, ≤ 2 s), and a failing one not at all once it stops submitting; never the API.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { VmtierError, isVmtierError } from '../errors.js';
import { readHostTopology, type HostTopology } from '../host/topology.js';
import type { TierPolicy } from '../policy/index.js';
import { resolveTrackerName, type TrackerOptions } from '../scan/index.js';
import type { Store } from '../store/store.js';
import type { VmInventory } from '../vm/inventory.js';
import type { DomainSummary } from '../vm/types.js';
import { MigrationBudget, type BudgetOptions } from '../migrate/budget.js';
import { HostDecider, batchCapacity, noDecisions, type PoolVm } from './host-decider.js';
import { LoopStallSampler, exportLoopStallMetrics } from './loop-stall.js';
import { EngineMetrics } from './metrics.js';
import type { EngineStatus, EngineView, VmEngineStatus } from './status.js';
import { VmLoop, type TrackerChoice } from './vm-loop.js';

export interface EngineOptions {
  inventory: VmInventory;
  store: Store;
  logger: Logger;
  /** Host topology reader (serve passes its tier overrides); default readHostTopology(). */
  readHost?: () => HostTopology;
  /** Registry to export metrics on (the API's); default a private one. */
  registry?: Registry;
  /**
   * Tracker for every VM regardless of policy (e.g. 'replay' with a trace, or 'kmod'); default:
   * each policy's `tracker` ('auto' = kmod when /dev/vmtier_idle exists, else DAMON).
   */
  tracker?: string;
  trackerOptions?: TrackerOptions;
  /** Only domains for which this returns true are managed (default: all). */
  manage?: (d: { name: string; uuid: string }) => boolean;
  budget?: BudgetOptions;
  /** Destination overrides; default the freest node of the top / slow tier. */
  targetNodes?: { top?: number; slow?: number };
  /** Write each VM's hot-unit map into its domain metadata every this many rounds (when changed); default 5. */
  hotMapEveryRounds?: number;
  /** Full listing period (new domains missed by events, reconnects); default 5 s. */
  resyncMs?: number;
  /** How often an idle (policy off) or backing-off loop rechecks its policy; default 1 s. */
  idleMs?: number;
  /** Host topology cache lifetime; default 1 s. */
  hostCacheMs?: number;
  backoff?: { baseMs?: number; maxMs?: number };
  /** Longest wait of the host decider for the other due VMs (default 2000 ms). */
  maxGatherMs?: number;
  now?: () => number;
}

interface Managed {
  loop: VmLoop;
  /** Last round's DRAM use and demand, for splitting DRAM between tiered VMs. */
  dramBytes: number;
  demandBytes: number;
  policy: TierPolicy | null;
}

export class Engine implements EngineView {
  readonly metrics: EngineMetrics;
  /** The main thread's own event-loop stalls (vmtier_event_loop_blocked_max_seconds); null where unsupported. */
  readonly loopStalls: LoopStallSampler | null;
  private readonly o: EngineOptions;
  private readonly log: Logger;
  private readonly budget: MigrationBudget;
  private readonly readHost: () => HostTopology;
  private readonly now: () => number;
  private readonly loops = new Map<string, Managed>();
  private running = false;
  private unsubscribe: (() => void) | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;
  private hostCache: { t: number; host: HostTopology } | null = null;
  private lastWarnings = '';
  private syncing: Promise<void> | null = null;
  private decider: HostDecider | null = null;

  constructor(opts: EngineOptions) {
    this.o = opts;
    this.log = opts.logger.child({ component: 'engine' });
    this.now = opts.now ?? Date.now;
    this.budget = new MigrationBudget({ now: this.now, ...opts.budget });
    this.readHost = opts.readHost ?? (() => readHostTopology());
    this.metrics = new EngineMetrics(opts.registry);
    this.loopStalls = LoopStallSampler.supported() ? new LoopStallSampler() : null;
    if (this.loopStalls) exportLoopStallMetrics(this.metrics.registry, this.loopStalls);
  }

  /** Starts managing every running domain; returns after the first listing (or its failure). */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.decider = new HostDecider({ pool: { capacity: this.capacity }, now: this.now, onThreadHeap: (h) => this.metrics.policyThread(h), ...(this.o.maxGatherMs !== undefined ? { maxGatherMs: this.o.maxGatherMs } : {}) });
    this.loopStalls?.start();
    const host = this.host();
    this.log.info(
      {
        tracker: this.o.tracker ?? 'per policy',
        nodes: host.nodes.map((n) => `${n.node}:${n.tier.class}`),
        kernel: host.kernel,
        hostMBps: this.budget.hostMBps,
        dramFreeWatermarkMB: this.budget.watermarkBytes / 2 ** 20,
      },
      'engine started',
    );
    this.unsubscribe = this.o.inventory.subscribe((e) => {
      if (!this.running) return;
      if (e.type === 'started') this.ensure({ uuid: e.uuid, name: e.name });
      else if (e.type === 'stopped' || e.type === 'undefined') void this.end(e.uuid, 'domain stopped');
      else if (e.type === 'changed') this.loops.get(e.uuid)?.loop.invalidateLayout();
      else if (e.type === 'metadata') this.loops.get(e.uuid.toLowerCase())?.loop.metadataChanged(e.nsUri);
      else if (e.type === 'migrating') this.loops.get(e.uuid.toLowerCase())?.loop.migrationStarted(e.iteration);
      else if (e.type === 'reconnected') {
        // Metadata changes made while disconnected sent no event to us.
        for (const m of this.loops.values()) m.loop.metadataChanged(null);
        void this.sync();
      }
    });
    await this.sync();
    this.resyncTimer = setInterval(() => void this.sync(), this.o.resyncMs ?? 5000);
    this.resyncTimer.unref();
  }

  /** Stops every loop (mid-scan or mid-move) and waits for them. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unsubscribe?.();
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    await Promise.all([...this.loops.values()].map((m) => m.loop.stop(new Error('engine stopping'))));
    this.loops.clear();
    await this.decider?.close();
    this.decider = null;
    this.loopStalls?.stop();
    this.log.info('engine stopped');
  }

  status(): EngineStatus {
    let host: HostTopology | null = null;
    try {
      host = this.host();
    } catch {
      host = null;
    }
    return {
      running: this.running,
      trackerOverride: this.o.tracker ?? null,
      kernel: host?.kernel ?? null,
      warnings: host?.warnings ?? [],
      budget: this.budget.hostStatus(),
      decisions: { ...(this.decider?.stats ?? noDecisions()), policyStateBytes: this.decider?.threadHeap?.stateBytes ?? null },
      vms: [...this.loops.values()].map((m) => m.loop.snapshot()).sort((a, b) => a.name.localeCompare(b.name)),
    };
  }

  vm(uuid: string): VmEngineStatus | null {
    return this.loops.get(uuid.toLowerCase())?.loop.snapshot() ?? null;
  }

  /** The host's topology, cached briefly (sysfs reads); logs kernel coexistence warnings when they change. */
  private host(): HostTopology {
    const t = this.now();
    if (!this.hostCache || t - this.hostCache.t >= (this.o.hostCacheMs ?? 1000)) {
      const host = this.readHost();
      this.hostCache = { t, host };
      const w = host.warnings.join('\n');
      if (w !== this.lastWarnings) {
        this.lastWarnings = w;
        for (const msg of host.warnings) this.log.warn({ kernel: host.kernel }, `kernel tiering coexistence: ${msg}`);
      }
    }
    return this.hostCache.host;
  }

  private sync(): Promise<void> {
    this.syncing ??= (async () => {
      try {
        const list = await this.o.inventory.list();
        if (!this.running) return;
        const live = new Set(list.filter((d) => d.state === 'running' || d.state === 'paused' || d.state === 'blocked').map((d) => d.uuid));
        for (const d of list) if (live.has(d.uuid)) this.ensure(d);
        for (const uuid of [...this.loops.keys()]) if (!live.has(uuid)) void this.end(uuid, 'domain no longer running');
      } catch (e) {
        if (isVmtierError(e, 'LIBVIRT_UNAVAILABLE')) this.log.debug({ err: e }, 'listing: libvirtd unreachable');
        else this.log.warn({ err: e }, 'listing domains failed');
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  private trackerFor = (policy: TierPolicy): TrackerChoice => {
    const requested = this.o.tracker ?? policy.tracker;
    let name = requested;
    try {
      if (requested === 'auto' || requested === 'kmod' || requested === 'damon') name = resolveTrackerName(requested, this.o.trackerOptions);
    } catch {
      name = requested;
    }
    return { name, options: this.o.trackerOptions ?? {} };
  };

  /** The DRAM pool of a batch the host decider is about to decide (batchCapacity), with the batch's DRAM and demand kept for the next one. */
  private capacity = (batch: readonly PoolVm[]): { dramCapacityBytes: number; dramShort: boolean } => {
    for (const b of batch) {
      const me = this.loops.get(b.vmId);
      if (me) {
        me.dramBytes = b.dramBytes;
        me.demandBytes = b.demandBytes;
        me.policy = b.policy;
      }
    }
    const host = this.host();
    const inBatch = new Set(batch.map((b) => b.vmId));
    const outside: PoolVm[] = [];
    for (const [vmId, m] of this.loops) if (m.policy?.mode === 'tier' && !inBatch.has(vmId)) outside.push({ vmId, dramBytes: m.dramBytes, demandBytes: m.demandBytes, policy: m.policy });
    const topFreeBytes = host.nodes.filter((n) => n.tier.class === 'top').reduce((s, n) => s + n.memFreeBytes, 0);
    return batchCapacity({ topFreeBytes, watermarkBytes: this.budget.watermarkBytes, outside, batch });
  };

  private ensure(d: Pick<DomainSummary, 'uuid' | 'name'>): void {
    const uuid = d.uuid.toLowerCase();
    if (this.loops.has(uuid) || !this.running) return;
    if (this.o.manage && !this.o.manage(d)) return;
    const loop = new VmLoop({
      uuid,
      name: d.name,
      inventory: this.o.inventory,
      store: this.o.store,
      logger: this.o.logger.child({ component: 'vm-loop' }),
      metrics: this.metrics,
      budget: this.budget,
      host: () => this.host(),
      trackerFor: this.trackerFor,
      decider: (req, signal) => (this.decider ?? closedDecider()).submit(req, signal),
      targetNodes: this.o.targetNodes,
      idleMs: this.o.idleMs ?? 1000,
      hotMapEveryRounds: Math.max(1, this.o.hotMapEveryRounds ?? 5),
      backoff: { baseMs: this.o.backoff?.baseMs ?? 1000, maxMs: this.o.backoff?.maxMs ?? 60_000 },
      now: this.now,
      onEnd: () => {
        if (this.loops.get(uuid)?.loop === loop) this.loops.delete(uuid);
        this.budget.forget(uuid);
        this.decider?.forget(uuid);
        this.metrics.forget(uuid, d.name);
      },
    });
    this.loops.set(uuid, { loop, dramBytes: 0, demandBytes: 0, policy: null });
    this.log.info({ vm: uuid, name: d.name }, 'managing VM');
    void loop.start();
  }

  private async end(uuid: string, why: string): Promise<void> {
    const m = this.loops.get(uuid);
    if (!m) return;
    await m.loop.stop(new VmtierError('VM_GONE', why));
  }
}

function closedDecider(): never {
  throw new VmtierError('UNSUPPORTED', 'the engine is not running');
}
