/**
 * One VM's tiering loop: read its policy, (re)map guest nodes to HVA ranges, scan with its tracker,
 * read where every page sits, let src/policy decide, move within the budgets, mark cold DRAM pages
 * MADV_COLD if asked, and record the round (store samples, migration log, metrics, one log line).
 *
 * Every step is asynchronous or chunked (move_pages in batches with a turn of the event loop between
 * them), so a VM with a slow scan or a stuck move never holds up another VM or the API. The loop's
 * AbortSignal reaches the tracker and the mover: a destroyed domain ends its loop mid-scan or
 * mid-move. A tracker that cannot run here (no module, DAMON refused) is reported as unavailable
 * and retried with backoff, while placement is still observed and recorded every round.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { KernelError, VmtierError, isVmtierError } from '../errors.js';
import type { HostTopology } from '../host/topology.js';
import { DEFAULT_POLICY, TIER_DRAM, TIER_NONE, TIER_SLOW, TieringPolicy, type ScanPlan, type TierPolicy } from '../policy/index.js';
import type { TrackerOptions } from '../scan/index.js';
import { PAGE_SIZE, type Tracker } from '../scan/tracker.js';
import { recordHeat } from '../store/heat-history.js';
import type { HotnessSample, Store } from '../store/store.js';
import { MADV_COLD, closeFd, pidfdOpen, processMadvise } from '../sys/syscalls.js';
import type { VmInventory } from '../vm/inventory.js';
import { Backoff } from './backoff.js';
import type { MigrationBudget } from '../migrate/budget.js';
import type { EngineMetrics } from './metrics.js';
import { PageMap } from './page-map.js';
import { createVmTracker } from './thread-tracker.js';
import { Mover } from '../migrate/mover.js';
import { PlacementCache } from '../migrate/placement-cache.js';
import { VmWorker } from './vm-worker.js';
import { storedPolicy, syncPolicy, type EffectivePolicy } from '../vm/policy-source.js';
import { HOTMAP_KEY, HOTMAP_NS, HOT_UNIT_BYTES, POLICY_NS, hotMapElement, parseHotMapElement } from '../vm/vm-metadata.js';
import { HotUnits } from './hot-units.js';
import { chooseTargets } from '../migrate/mover.js';
import { addMoveCounts, emptyMoveCounts, type RoundSummary, type SeedStatus, type TrackerStatus, type VmEngineStatus } from './status.js';

const ESRCH = 3;
/** Pages per move_pages call (in the VM's worker thread). */
const MOVE_BATCH = 1024;
/** Pages of per-page bookkeeping done between event-loop turns. */
const WORK_CHUNK = 1 << 14;
/** process_madvise takes at most IOV_MAX (1024) ranges per call. */
const MADVISE_IOVECS = 512;
/** Host node ids are below the kernel's MAX_NUMNODES (1024 on x86_64). */
const MAX_NODES = 1024;

export interface TrackerChoice {
  /** Name reported in status and metrics ('auto' resolved). */
  name: string;
  /** Options handed to the tracker (they cross into the VM's thread: plain data). */
  options: TrackerOptions;
}

export interface VmLoopDeps {
  uuid: string;
  name: string;
  inventory: VmInventory;
  store: Store;
  logger: Logger;
  metrics: EngineMetrics;
  budget: MigrationBudget;
  /** Host topology, cached by the engine (nodes' free memory changes as pages move). */
  host: () => HostTopology;
  /** The tracker for this policy (engine override, else the policy's own). */
  trackerFor: (policy: TierPolicy) => TrackerChoice;
  /** DRAM this VM may hold this round (the engine splits the top tier between tiered VMs). */
  dramShare: (uuid: string, policy: TierPolicy, dramBytes: number, demandBytes: number) => number;
  /** Destination overrides (serve --promote-node/--demote-node); else the freest node of the tier. */
  targetNodes?: { top?: number; slow?: number };
  /** Write the hot-unit map into the domain's metadata every this many rounds (when it changed). */
  hotMapEveryRounds: number;
  /** Sleep between rounds while the policy is off. */
  idleMs: number;
  /** Backoff of failing rounds and of a tracker that cannot start. */
  backoff: { baseMs: number; maxMs: number };
  now: () => number;
  /** Called once when the loop ends (VM gone, engine stopping). */
  onEnd: (reason: string) => void;
}

function errInfo(e: unknown): { code: string; message: string } {
  if (isVmtierError(e)) return { code: e.code, message: e.message };
  return { code: 'INTERNAL', message: (e as Error)?.message ?? String(e) };
}

function isGone(e: unknown): boolean {
  if (e instanceof KernelError && e.errno === ESRCH) return true;
  return isVmtierError(e, 'VM_GONE') || isVmtierError(e, 'VM_NOT_FOUND');
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A round that overlapped the start of an outgoing migration: its scan saw the migration's reads. */
class MigrationStarted extends Error {}

export class VmLoop {
  readonly uuid: string;
  readonly name: string;
  private readonly d: VmLoopDeps;
  private readonly log: Logger;
  private readonly ctl = new AbortController();
  private readonly roundBackoff: Backoff;
  private readonly trackerBackoff: Backoff;
  private done: Promise<void> | null = null;

  private pageMap: PageMap | null = null;
  private pid = 0;
  private pidfd = -1;
  private tracker: Tracker | null = null;
  private trackerStatus: TrackerStatus | null = null;
  /** Only for initialPlan (pure, cheap); decisions run in the decision worker. */
  private readonly planner = new TieringPolicy();
  /** The next decision must start from fresh policy state (new layout, new mode). */
  private freshPolicy = true;
  /** The last decision's DRAM demand (null until the first decision, and after a fresh start). */
  private demandBytes: number | null = null;
  private policyMode: 'observe' | 'tier' | null = null;
  private plan: ScanPlan | null = null;
  /** Consecutive cold rounds per page, for MADV_COLD (the policy keeps its own, privately). */
  private coldRounds = new Uint16Array(0);
  private layoutStale = true;
  /** Host node per page, refreshed by a rotating window; null until the first round of a layout. */
  private placement: PlacementCache | null = null;
  /** Longest synchronous move_pages section of the current round (it holds the event loop). */
  private longestSyscallMs = 0;
  /**
   * Per-page arrays reused from round to round: allocating megabytes of typed arrays every round
   * makes V8 run full collections for the external memory, which stalls the event loop.
   */
  private bufs: { pages: number; counts: Uint8Array; tiers: Uint8Array } | null = null;
  /** Decisions and move_pages run in this VM's own thread (vm-thread.ts). */
  private readonly worker = new VmWorker();
  /** The metadata's policy must be read again (start, METADATA_CHANGE event, reconnect). */
  private policyDirty = true;
  private effective: EffectivePolicy | null = null;
  /** An outgoing migration is running: no scans, no moves. */
  private migrating: { since: number; iteration: number | null } | null = null;
  /** Bumped when a migration starts, so a round that was mid-scan knows to throw its counts away. */
  private migrationEpoch = 0;
  /** The hot map in the metadata has not been looked at yet (once per loop: after a migration or a restart). */
  private seedPending = true;
  private hotUnits: HotUnits | null = null;
  private lastHotMap: string | null = null;

  private buffers(pages: number): { counts: Uint8Array; tiers: Uint8Array } {
    if (!this.bufs || this.bufs.pages !== pages) {
      this.bufs = { pages, counts: new Uint8Array(pages), tiers: new Uint8Array(pages) };
    }
    return this.bufs;
  }

  private status: VmEngineStatus;

  constructor(deps: VmLoopDeps) {
    this.d = deps;
    this.uuid = deps.uuid;
    this.name = deps.name;
    this.log = deps.logger.child({ vm: deps.uuid, name: deps.name });
    this.roundBackoff = new Backoff({ ...deps.backoff, now: deps.now });
    this.trackerBackoff = new Backoff({ baseMs: Math.max(deps.backoff.baseMs, 5000), maxMs: Math.max(deps.backoff.maxMs, 300_000), now: deps.now });
    this.status = {
      uuid: deps.uuid,
      name: deps.name,
      mode: DEFAULT_POLICY.mode,
      policyVersion: 0,
      policySource: 'default',
      policyError: null,
      state: 'starting',
      migration: { state: 'none', since: null, iteration: null, pauses: 0, resumes: 0, discardedRounds: 0 },
      hotMap: null,
      seed: null,
      tracker: null,
      trackerStarts: 0,
      trackerFailures: 0,
      trackerBackoffMs: null,
      rounds: 0,
      lastRound: null,
      totals: { promote: emptyMoveCounts(), demote: emptyMoveCounts(), madvisedColdBytes: 0 },
      failures: 0,
      lastError: null,
      backoffUntil: null,
    };
  }

  snapshot(): VmEngineStatus {
    return structuredClone(this.status);
  }

  /** The domain's layout may have changed (memory hotplug, restart): remap before the next round. */
  invalidateLayout(): void {
    this.layoutStale = true;
  }

  /** A METADATA_CHANGE event (or a reconnect, which may have lost some): re-read the policy next round. */
  metadataChanged(nsUri: string | null): void {
    if (nsUri === null || nsUri === POLICY_NS) this.policyDirty = true;
  }

  /**
   * The domain started migrating out (libvirt's MIGRATION_ITERATION event; pass 1 is emitted as
   * QEMU starts copying RAM). Pre-copy reads every guest page through QEMU's mapping, which sets
   * the accessed bit of all of them: scans would see the whole VM hot, so they pause, and a scan
   * in flight is thrown away.
   */
  migrationStarted(iteration: number | null): void {
    if (this.migrating) {
      if (iteration !== null) this.migrating.iteration = iteration;
      this.status.migration.iteration = this.migrating.iteration;
      return;
    }
    this.migrating = { since: this.d.now(), iteration };
    this.migrationEpoch++;
    const m = this.status.migration;
    m.state = 'paused';
    m.since = this.migrating.since;
    m.iteration = iteration;
    m.pauses++;
    this.log.info({ iteration }, 'outgoing migration: scans and moves paused');
  }

  /**
   * The policy in force: the metadata's when it was (re)read successfully, else the store's last
   * version (libvirt unreachable: retried next round).
   */
  private async currentPolicy(): Promise<EffectivePolicy> {
    if (this.policyDirty || !this.effective) {
      try {
        const eff = await syncPolicy(this.d.inventory, this.d.store, this.uuid, this.d.now());
        this.policyDirty = false;
        if (eff.error && eff.error.message !== this.status.policyError?.message) {
          this.log.warn({ err: eff.error }, 'policy in the domain metadata is invalid: keeping the last valid one');
        }
        this.status.policyError = eff.error ? { ...eff.error, t: this.d.now() } : null;
        this.effective = eff;
      } catch (e) {
        // Unreachable (retried next round) or gone (the round finds out): the stored version meanwhile.
        this.log.debug({ err: e }, 'cannot read the policy from the domain metadata: using the stored one');
        this.effective ??= storedPolicy(this.d.store, this.uuid);
      }
    }
    // A PUT through the API updates the store at once; the metadata's copy arrives by event.
    const rec = this.d.store.currentPolicy(this.uuid) ?? this.effective.record;
    return { ...this.effective, record: rec };
  }

  /**
   * While migrating: is the job over? libvirt reports no job once the migration ended; a domain
   * still running here then stayed (the migration failed or was cancelled) and scans resume.
   * A migration that succeeded ends the domain here, which ends the loop.
   */
  private async migrationEnded(): Promise<boolean> {
    let active: boolean;
    try {
      active = await this.d.inventory.jobActive(this.uuid);
    } catch (e) {
      if (isGone(e)) throw e;
      return false;
    }
    if (active) return false;
    const d = await this.d.inventory.resolve(this.uuid);
    if (d.state !== 'running') return false;
    const m = this.status.migration;
    this.log.info({ pausedMs: this.d.now() - (this.migrating?.since ?? this.d.now()) }, 'migration over and the domain is still here: scans resume');
    this.migrating = null;
    m.state = 'none';
    m.since = null;
    m.iteration = null;
    m.resumes++;
    return true;
  }

  start(): Promise<void> {
    this.done ??= this.run();
    return this.done;
  }

  /** Ends the loop (mid-scan or mid-move) and waits for it. */
  async stop(reason: Error = new VmtierError('VM_GONE', 'loop stopped')): Promise<void> {
    if (!this.ctl.signal.aborted) this.ctl.abort(reason);
    await this.done;
  }

  private get signal(): AbortSignal {
    return this.ctl.signal;
  }

  private async pause(ms: number): Promise<void> {
    if (ms <= 0) return;
    await sleep(ms, undefined, { signal: this.signal }).catch(() => undefined);
  }

  private async run(): Promise<void> {
    let reason = 'stopped';
    try {
      while (!this.signal.aborted) {
        if (this.migrating) {
          this.status.state = 'migrating';
          try {
            if (!(await this.migrationEnded())) {
              await this.pause(this.d.idleMs);
              continue;
            }
          } catch (e) {
            if (isGone(e)) {
              reason = 'domain gone';
              break;
            }
            // libvirt unreachable: ask again after a pause.
            await this.pause(this.d.idleMs);
            continue;
          }
        }
        const eff = await this.currentPolicy();
        const rec = eff.record;
        const policy = rec?.policy ?? DEFAULT_POLICY;
        this.status.mode = policy.mode;
        this.status.policyVersion = rec?.version ?? 0;
        this.status.policySource = eff.source;
        if (policy.mode === 'off') {
          if (this.status.state !== 'idle') this.log.info('policy mode off: loop idle');
          this.status.state = 'idle';
          await this.releaseTracker();
          this.policyMode = null;
          await this.pause(this.d.idleMs);
          continue;
        }
        if (!this.roundBackoff.ready()) {
          this.status.state = 'backoff';
          // Wake at least every idleMs so a policy change or stop is seen.
          await this.pause(Math.min(this.roundBackoff.remainingMs(), this.d.idleMs));
          continue;
        }
        // The first round waits for the domain to run: an incoming migration's domain is paused
        // until the switch-over, its memory not copied yet (the hot map's seed would find nothing).
        if (this.seedPending && !(await this.domainRunning())) {
          this.status.state = 'starting';
          await this.pause(this.d.idleMs);
          continue;
        }
        // Catches a migration (or save, dump) whose event was missed, e.g. across a reconnect.
        if (await this.jobRunning()) {
          this.migrationStarted(null);
          continue;
        }
        this.status.state = 'running';
        try {
          await this.round(policy);
          this.roundBackoff.success();
          this.status.failures = 0;
          this.status.backoffUntil = null;
        } catch (e) {
          if (this.signal.aborted) break;
          if (e instanceof MigrationStarted) {
            this.status.migration.discardedRounds++;
            continue;
          }
          if (isGone(e) || (await this.domainGone())) {
            reason = 'domain gone';
            break;
          }
          const delay = this.roundBackoff.failure();
          this.status.failures = this.roundBackoff.failures;
          this.status.lastError = { ...errInfo(e), t: this.d.now() };
          this.status.backoffUntil = this.roundBackoff.blockedUntil;
          this.d.metrics.roundFailed(this.uuid, this.name, this.roundBackoff.failures);
          this.layoutStale = true;
          this.log.warn({ err: e, failures: this.roundBackoff.failures, backoffMs: delay }, 'round failed; backing off');
        }
      }
    } finally {
      if (this.signal.aborted) {
        const r = this.signal.reason;
        reason = r instanceof Error ? r.message : 'stopped';
      }
      this.status.state = 'stopped';
      // The tracker first: a kmod tracker's device fd lives in the worker thread.
      await this.releaseTracker();
      await this.worker.close().catch(() => undefined);
      if (this.pidfd >= 0) {
        closeFd(this.pidfd);
        this.pidfd = -1;
      }
      this.log.info({ reason, rounds: this.status.rounds }, 'loop ended');
      this.d.onEnd(reason);
    }
  }

  private async jobRunning(): Promise<boolean> {
    try {
      return await this.d.inventory.jobActive(this.uuid);
    } catch {
      // A domain gone or libvirt unreachable: the round finds out and reports it.
      return false;
    }
  }

  private async domainRunning(): Promise<boolean> {
    try {
      return (await this.d.inventory.resolve(this.uuid)).state === 'running';
    } catch {
      // Gone or unreachable: the engine's listing ends a loop whose domain went away.
      return false;
    }
  }

  private async domainGone(): Promise<boolean> {
    try {
      const d = await this.d.inventory.resolve(this.uuid);
      return d.state === 'shutoff' || d.state === 'crashed';
    } catch (e) {
      return isVmtierError(e, 'VM_NOT_FOUND');
    }
  }

  private async releaseTracker(): Promise<void> {
    const t = this.tracker;
    this.tracker = null;
    if (t) await t.close().catch((err) => this.log.warn({ err }, 'tracker close failed'));
  }

  private async ensureLayout(): Promise<PageMap> {
    if (this.pageMap && !this.layoutStale) return this.pageMap;
    const map = await this.d.inventory.numaMap(this.uuid);
    this.signal.throwIfAborted();
    const pm = PageMap.fromNumaMap(map);
    const pidChanged = map.domain.pid !== this.pid;
    const sizeChanged = !this.pageMap || pm.totalPages !== this.pageMap.totalPages;
    this.pageMap = pm;
    this.hotUnits = new HotUnits(pm);
    this.pid = map.domain.pid;
    this.layoutStale = false;
    // A remapped layout may number pages differently: query everything again.
    this.placement = null;
    if (pidChanged && this.pidfd >= 0) {
      closeFd(this.pidfd);
      this.pidfd = -1;
    }
    if (pidChanged || sizeChanged) {
      // New process or layout: the tracker must track the new ranges, and old per-page state is meaningless.
      await this.releaseTracker();
      this.freshPolicy = true;
      this.demandBytes = null;
      this.coldRounds = new Uint16Array(pm.totalPages);
      this.log.info({ pid: this.pid, pages: pm.totalPages, guestNodes: pm.guestNodes(), unmovableSegments: pm.segments.filter((s) => !s.migratable).length }, 'guest layout mapped');
    } else {
      await this.tracker?.track(this.pid, pm.ranges());
    }
    return pm;
  }

  /** The tracker for this round, or null while it cannot run (reported, retried with backoff). */
  private async ensureTracker(policy: TierPolicy, pm: PageMap): Promise<Tracker | null> {
    const choice = this.d.trackerFor(policy);
    if (this.tracker && this.trackerStatus?.name === choice.name && this.trackerStatus.available) return this.tracker;
    if (this.trackerStatus?.name === choice.name && !this.trackerStatus.available && !this.trackerBackoff.ready()) return null;
    if (this.trackerStatus?.name !== choice.name) this.trackerBackoff.success();
    await this.releaseTracker();
    let t: Tracker | null = null;
    this.status.trackerStarts++;
    try {
      t = createVmTracker(this.worker, choice.name, choice.options);
      await t.track(this.pid, pm.ranges());
      this.tracker = t;
      // The backoff is reset by a successful scan, not here: a tracker that starts but breaks in
      // every scan (a kdamond someone keeps turning off) is retried ever more slowly.
      this.trackerStatus = { name: choice.name, available: true, error: null };
      this.log.info({ tracker: choice.name }, 'tracker ready');
    } catch (e) {
      if (t) await t.close().catch(() => undefined);
      if (isGone(e)) throw e;
      const wasUp = this.trackerStatus?.available !== false || this.trackerStatus.name !== choice.name;
      this.trackerStatus = { name: choice.name, available: false, error: errInfo(e) };
      const delay = this.trackerBackoff.failure();
      this.status.trackerFailures++;
      this.status.trackerBackoffMs = delay;
      this.d.metrics.trackerFailed(this.uuid, this.name, choice.name);
      // Once per outage at warn; retries at debug.
      if (wasUp) this.log.warn({ tracker: choice.name, err: e, retryMs: delay }, 'tracker unavailable: observing placement only');
      else this.log.debug({ tracker: choice.name, err: e, retryMs: delay }, 'tracker still unavailable');
    }
    this.status.tracker = { ...this.trackerStatus! };
    this.d.metrics.tracker(this.uuid, this.name, choice.name, this.trackerStatus!.available);
    return this.tracker;
  }

  /**
   * Where every page sits: host node per page (-1 not present or not queryable). Kept from round
   * to round (src/migrate/placement-cache.ts): this round's rotating window is queried in the
   * VM's thread, vmtier's own moves were recorded as they happened.
   */
  private async queryNodes(pm: PageMap): Promise<{ node: Int16Array; unqueryable: number }> {
    if (!this.placement || this.placement.totalPages !== pm.totalPages) this.placement = new PlacementCache(pm.totalPages);
    let unqueryable = 0;
    await this.placement.refresh(async (w) => {
      const end = w.first + w.count;
      const segs: Array<{ start: number; pages: number; firstPage: number }> = [];
      for (const s of pm.segments) {
        const lo = Math.max(s.firstPage, w.first);
        const hi = Math.min(s.firstPage + s.pages, end);
        if (lo < hi) segs.push({ start: s.start + (lo - s.firstPage) * PAGE_SIZE, pages: hi - lo, firstPage: lo });
      }
      const r = await this.worker.query(this.pid, segs, w.first, w.count, MOVE_BATCH, this.signal);
      this.longestSyscallMs = Math.max(this.longestSyscallMs, r.longestCallMs);
      unqueryable += r.unqueryable;
      return r.node;
    });
    return { node: this.placement.node, unqueryable };
  }

  private async round(policy: TierPolicy): Promise<void> {
    const t0 = performance.now();
    this.longestSyscallMs = 0;
    const phases: Record<string, number> = {};
    let tp = t0;
    const phase = (name: string) => {
      const t = performance.now();
      phases[name] = Math.round((t - tp) * 10) / 10;
      tp = t;
    };
    const mode = policy.mode as 'observe' | 'tier';
    const pm = await this.ensureLayout();
    if (pm.totalPages === 0) throw new VmtierError('HVA_MISMATCH', 'the domain has no guest RAM ranges to manage');
    if (this.policyMode !== mode) {
      // Fresh policy state per mode: observe-mode "decisions" were never carried out.
      this.freshPolicy = true;
      this.demandBytes = null;
      this.plan = null;
      this.policyMode = mode;
    }
    const plan = this.plan ?? this.planner.initialPlan(policy);
    const scans = plan.scansPerRound;
    const intervalMs = Math.max(10, Math.round(policy.scan.intervalMs * plan.intervalMultiplier));
    const roundMinMs = scans * intervalMs;
    const epoch = this.migrationEpoch;

    // 0. seed: a hot map left in the metadata (by the source of a live migration, or by this host
    // before a restart) says which units to place in DRAM before anything is learned here.
    if (this.seedPending) await this.seed(policy, pm, mode);

    // 1. scan
    const tracker = await this.ensureTracker(policy, pm);
    let counts: Uint8Array | null = null;
    let scanMs = 0;
    if (tracker) {
      const ts = performance.now();
      try {
        const res = await tracker.scan({ scans, intervalMs, signal: this.signal });
        counts = this.buffers(pm.totalPages).counts.fill(0);
        for (const r of res.ranges) {
          const p0 = pm.pageOf(r.start);
          if (p0 < 0) throw new VmtierError('HVA_MISMATCH', `tracker returned range 0x${r.start.toString(16)} outside the guest layout`);
          counts.set(r.counts.subarray(0, Math.min(r.counts.length, pm.totalPages - p0)), p0);
        }
        this.trackerBackoff.success();
        this.status.trackerBackoffMs = null;
      } catch (e) {
        if (this.signal.aborted || isGone(e)) throw e;
        // A tracker that breaks mid-run is treated like one that cannot start: reported, retried.
        await this.releaseTracker();
        this.trackerStatus = { name: this.trackerStatus?.name ?? 'unknown', available: false, error: errInfo(e) };
        this.status.tracker = { ...this.trackerStatus };
        const retryMs = this.trackerBackoff.failure();
        this.status.trackerFailures++;
        this.status.trackerBackoffMs = retryMs;
        this.d.metrics.tracker(this.uuid, this.name, this.trackerStatus.name, false);
        this.d.metrics.trackerFailed(this.uuid, this.name, this.trackerStatus.name);
        this.log.warn({ err: e, retryMs }, 'scan failed: observing placement only until the tracker is retried');
        counts = null;
      }
      scanMs = performance.now() - ts;
    }

    // The migration's pre-copy read every page while this scan ran: its counts say nothing.
    if (this.migrationEpoch !== epoch || this.migrating) throw new MigrationStarted();
    phase('scan');
    // 2. placement
    const { node: hostNode, unqueryable } = await this.queryNodes(pm);
    phase('placement');
    const host = this.d.host();
    const classOf = new Map<number, 'top' | 'slow'>(host.nodes.map((n) => [n.node, n.tier.class]));
    // Tier per host node in a typed array: the per-page pass below does no map lookups or allocations.
    const tierOfNode = new Uint8Array(MAX_NODES).fill(TIER_DRAM);
    for (const n of host.nodes) if (n.tier.class === 'slow' && n.node < MAX_NODES) tierOfNode[n.node] = TIER_SLOW;
    const tiers = this.buffers(pm.totalPages).tiers;

    // 3. one pass: tier per page, and per guest node x host node this round's hot/warm/cold/resident pages
    const hotT = Math.max(1, Math.ceil(policy.thresholds.hotMinFraction * scans));
    const coldT = Math.floor(policy.thresholds.coldMaxFraction * scans);
    type Cell = { hot: number; warm: number; cold: number; resident: number; moved: number; failures: number };
    const cells = new Map<string, Cell>();
    const cell = (g: number, h: number): Cell => {
      const k = `${g}:${h}`;
      let c = cells.get(k);
      if (!c) cells.set(k, (c = { hot: 0, warm: 0, cold: 0, resident: 0, moved: 0, failures: 0 }));
      return c;
    };
    // [host node * 4 + 0..3] = resident, hot, warm, cold pages of one guest node.
    const acc = new Map<number, Float64Array>();
    let dramPages = 0;
    let hotPages = 0;
    let warmPages = 0;
    let coldPages = 0;
    let residentPages = 0;
    let unmovablePages = 0;
    if (this.coldRounds.length !== pm.totalPages) this.coldRounds = new Uint16Array(pm.totalPages);
    const cold = this.coldRounds;
    for (const s of pm.segments) {
      if (!s.migratable) unmovablePages += s.pages;
      let a = acc.get(s.guestNode);
      if (!a) acc.set(s.guestNode, (a = new Float64Array(MAX_NODES * 4)));
      const end = s.firstPage + s.pages;
      for (let from = s.firstPage; from < end; from += WORK_CHUNK) {
        const to = Math.min(end, from + WORK_CHUNK);
        for (let p = from; p < to; p++) {
          const hn = hostNode[p]!;
          if (hn < 0 || hn >= MAX_NODES) {
            tiers[p] = TIER_NONE;
            cold[p] = 0;
            continue;
          }
          const t = tierOfNode[hn]!;
          tiers[p] = t;
          if (t === TIER_DRAM) dramPages++;
          a[hn * 4]!++;
          if (!counts) continue;
          const n = counts[p]!;
          if (n >= hotT) {
            a[hn * 4 + 1]!++;
            cold[p] = 0;
          } else if (n <= coldT) {
            a[hn * 4 + 3]!++;
            if (cold[p]! < 0xffff) cold[p]!++;
          } else {
            a[hn * 4 + 2]!++;
            cold[p] = 0;
          }
        }
        await turn();
      }
    }
    for (const [g, a] of acc) {
      for (let h = 0; h < MAX_NODES; h++) {
        if (a[h * 4] === 0) continue;
        const c = cell(g, h);
        c.resident = a[h * 4]!;
        c.hot = a[h * 4 + 1]!;
        c.warm = a[h * 4 + 2]!;
        c.cold = a[h * 4 + 3]!;
        residentPages += c.resident;
        hotPages += c.hot;
        warmPages += c.warm;
        coldPages += c.cold;
      }
    }

    phase('account');
    // 4. decide
    const summary: RoundSummary = {
      round: this.status.rounds + 1,
      t: 0,
      mode,
      scans: counts ? scans : 0,
      intervalMs,
      scanMs,
      durationMs: 0,
      trackedBytes: pm.totalPages * PAGE_SIZE,
      residentBytes: residentPages * PAGE_SIZE,
      hotBytes: hotPages * PAGE_SIZE,
      warmBytes: warmPages * PAGE_SIZE,
      coldBytes: coldPages * PAGE_SIZE,
      decided: { promotePages: 0, demotePages: 0 },
      moves: { promote: emptyMoveCounts(), demote: emptyMoveCounts() },
      promotionPaused: false,
      skipped: {},
      madvisedColdBytes: 0,
      unmovablePages,
      longestSyscallMs: 0,
    };
    const skip = (why: string, n: number) => {
      if (n > 0) summary.skipped[why] = (summary.skipped[why] ?? 0) + n;
    };
    if (counts) {
      const dramBytes = dramPages * PAGE_SIZE;
      // Demand as the policy measures it (decayed seen fractions), from the previous decision; the
      // first round has only this round's hot and warm pages.
      const share = this.d.dramShare(this.uuid, policy, dramBytes, this.demandBytes ?? (hotPages + warmPages) * PAGE_SIZE);
      // The host's top tier below the watermark: give back confirmed-cold DRAM even with no limit set.
      const topFree = host.nodes.reduce((sum, n) => sum + (n.tier.class === 'top' ? n.memFreeBytes : 0), 0);
      const dramShort = topFree < this.d.budget.watermarkBytes;
      const decision = await this.worker.decide(this.freshPolicy, { dramCapacityBytes: share, dramShort, vms: [{ vmId: this.uuid, policy, counts, tiers, plan }] }, this.signal);
      this.freshPolicy = false;
      this.signal.throwIfAborted();
      const vd = decision.vms[0]!;
      this.demandBytes = vd.stats.demandBytes;
      phase('decide');
      this.plan = vd.plan;
      summary.decided = { promotePages: vd.promote.length, demotePages: vd.demote.length };
      if (this.migrationEpoch !== epoch || this.migrating) throw new MigrationStarted();
      if (mode === 'tier') {
        // Pages whose demotion was attempted; the rest of the decided ones stay in DRAM this round.
        const leaving = await this.move(policy, pm, vd.promote, vd.demote, host, summary, skip, (g, h, moved, failed) => {
          const c = cell(g, h);
          c.moved += moved;
          c.failures += failed;
        }, (pages, reached, target) => {
          // The heatmap shows where heat lives after the round: a page that reached its target is in the target's tier now.
          const t = target >= 0 && target < MAX_NODES ? tierOfNode[target]! : TIER_DRAM;
          for (let i = 0; i < pages.length; i++) if (reached[i]) tiers[pages[i]!] = t;
        });
        phase('move');
        if (policy.madviseCold) summary.madvisedColdBytes = await this.madviseCold(policy, pm, tiers, leaving);
        phase('madvise');
      }
    }
    if (unqueryable > 0) skip('unqueryable', unqueryable);

    // 5. pace the round like a real tracker would (a replayed or failed scan returns at once)
    const elapsed = performance.now() - t0;
    if (elapsed < roundMinMs) await this.pause(roundMinMs - elapsed);
    this.signal.throwIfAborted();
    phase('pace');

    // 6. record
    const t = this.d.now();
    summary.t = t;
    summary.durationMs = performance.now() - t0;
    summary.longestSyscallMs = Math.round(this.longestSyscallMs * 10) / 10;
    const samples: HotnessSample[] = [];
    for (const [k, c] of cells) {
      const [g, h] = k.split(':').map(Number) as [number, number];
      samples.push({
        t,
        vmUuid: this.uuid,
        guestNode: g,
        hostNode: h,
        hostTier: classOf.get(h) ?? 'top',
        hotBytes: c.hot * PAGE_SIZE,
        warmBytes: c.warm * PAGE_SIZE,
        coldBytes: c.cold * PAGE_SIZE,
        scannedBytes: counts ? c.resident * PAGE_SIZE : 0,
        scanMs,
        movedBytes: c.moved * PAGE_SIZE,
        failures: c.failures,
      });
    }
    if (samples.length > 0) this.d.store.insertSamples(samples);
    // The dashboard's heatmap: placement after this round's moves (read, then updated with what moved), heat if scanned.
    recordHeat(this.d.store, this.uuid, t, { segments: pm.segments, totalPages: pm.totalPages, pageSize: PAGE_SIZE, counts, scans, tiers });
    phase('record');
    this.status.rounds++;
    // 7. publish the hot map into the metadata, so that it is there when a migration starts
    // (libvirt refuses metadata changes while the migration job holds the domain).
    if (counts && (this.status.rounds === 1 || this.status.rounds % this.d.hotMapEveryRounds === 0)) await this.publishHotMap(pm, counts, hotT, t);
    phase('publish');
    this.status.lastRound = summary;
    addMoveCounts(this.status.totals.promote, summary.moves.promote);
    addMoveCounts(this.status.totals.demote, summary.moves.demote);
    this.status.totals.madvisedColdBytes += summary.madvisedColdBytes;
    this.d.metrics.round(this.uuid, this.name, summary);
    this.log.info(
      {
        round: summary.round,
        mode,
        tracker: this.trackerStatus?.available ? this.trackerStatus.name : `${this.trackerStatus?.name ?? 'none'} (unavailable)`,
        scanMs: Math.round(scanMs),
        ms: Math.round(summary.durationMs),
        residentMB: +(summary.residentBytes / 2 ** 20).toFixed(1),
        hotMB: +(summary.hotBytes / 2 ** 20).toFixed(1),
        coldMB: +(summary.coldBytes / 2 ** 20).toFixed(1),
        promoted: summary.moves.promote.byClass.moved,
        demoted: summary.moves.demote.byClass.moved,
        skipped: summary.skipped,
        phasesMs: phases,
        longestSyscallMs: summary.longestSyscallMs,
      },
      'round',
    );
  }

  /** Writes the units with hot pages this round into the domain's metadata (live XML only), when they changed. */
  private async publishHotMap(pm: PageMap, counts: Uint8Array, hotMin: number, t: number): Promise<void> {
    const units = this.hotUnits ?? (this.hotUnits = new HotUnits(pm));
    const bits = units.hotBits(counts, hotMin);
    const b64 = Buffer.from(bits).toString('base64');
    if (b64 === this.lastHotMap) return;
    const xml = hotMapElement({ pages: units.pages, unitBytes: HOT_UNIT_BYTES, bits, round: this.status.rounds, t });
    let hot = 0;
    for (const b of bits) for (let v = b; v; v &= v - 1) hot++;
    try {
      // Live only: the map describes this run of the VM; rewriting the persistent definition
      // every few rounds would churn the domain's XML file for nothing.
      await this.d.inventory.setMetadata(this.uuid, HOTMAP_NS, HOTMAP_KEY, xml, { config: false });
      this.lastHotMap = b64;
      this.status.hotMap = { round: this.status.rounds, t, units: units.units, hotUnits: hot, map: b64, error: null };
      this.log.debug({ units: units.units, hotUnits: hot }, 'hot map written to the domain metadata');
    } catch (e) {
      if (isGone(e)) throw e;
      this.status.hotMap = { round: this.status.rounds, t, units: units.units, hotUnits: hot, map: b64, error: errInfo(e) };
      this.log.warn({ err: e }, 'cannot write the hot map into the domain metadata');
    }
  }

  /**
   * Places the units of the metadata's hot map in DRAM (tier mode), once, in the loop's first round
   * (which waits for the domain to run).
   */
  private async seed(policy: TierPolicy, pm: PageMap, mode: 'observe' | 'tier'): Promise<void> {
    this.seedPending = false;
    let xml: string | null;
    try {
      xml = await this.d.inventory.metadata(this.uuid, HOTMAP_NS);
    } catch (e) {
      if (isGone(e)) throw e;
      this.log.warn({ err: e }, 'cannot read the hot map from the domain metadata: learning from scratch');
      return;
    }
    if (xml === null) return;
    const units = this.hotUnits ?? (this.hotUnits = new HotUnits(pm));
    let map;
    try {
      map = parseHotMapElement(xml);
    } catch (e) {
      this.log.warn({ err: e }, 'ignoring the hot map in the domain metadata');
      return;
    }
    if (map.pages !== units.pages) {
      this.log.warn({ mapPages: map.pages, pages: units.pages }, 'ignoring the hot map in the domain metadata: it describes a different memory layout');
      return;
    }
    const pages = units.pagesOf(map.bits);
    let hot = 0;
    for (const b of map.bits) for (let v = b; v; v &= v - 1) hot++;
    const host = this.d.host();
    const seed: SeedStatus = {
      round: this.status.rounds + 1,
      t: this.d.now(),
      map: Buffer.from(map.bits).toString('base64'),
      units: units.units,
      hotUnits: hot,
      pages: pages.length,
      promote: null,
      target: chooseTargets(host, this.d.targetNodes).top,
      skipped: {},
    };
    if (mode === 'tier' && pages.length > 0) {
      const summary = { moves: { promote: emptyMoveCounts(), demote: emptyMoveCounts() }, promotionPaused: false } as RoundSummary;
      await this.move(policy, pm, pages, new Int32Array(0), host, summary, (why, n) => {
        if (n > 0) seed.skipped[why] = (seed.skipped[why] ?? 0) + n;
      }, () => undefined, () => undefined);
      seed.promote = summary.moves.promote;
      addMoveCounts(this.status.totals.promote, summary.moves.promote);
    }
    this.status.seed = seed;
    this.log.info({ hotUnits: hot, pages: pages.length, moved: seed.promote?.byClass.moved ?? null, target: seed.target, mapRound: map.round }, 'placed the hot units of the metadata hot map');
  }

  /** Executes the decision with the mover (src/migrate/mover.ts): moves run in the VM's thread, each batch logged. */
  private async move(
    policy: TierPolicy,
    pm: PageMap,
    promote: Int32Array,
    demote: Int32Array,
    host: HostTopology,
    summary: RoundSummary,
    skip: (why: string, n: number) => void,
    account: (guestNode: number, hostNode: number, moved: number, failed: number) => void,
    arrived: (pages: readonly number[], reached: Uint8Array, target: number) => void,
  ): Promise<number[]> {
    const mover = new Mover({
      budget: this.d.budget,
      movePages: async (addrs, target) => {
        const r = await this.worker.move(this.pid, addrs, target, MOVE_BATCH, this.signal);
        this.longestSyscallMs = Math.max(this.longestSyscallMs, r.longestCallMs);
        return r;
      },
      // vmtier knows what it moved: no query needed to learn where these pages are now.
      onMoved: (pages, reached, target) => {
        this.placement?.recordMoves(pages, reached, target);
        arrived(pages, reached, target);
      },
      record: (r) => {
        const c = r.counts;
        account(r.guestNode, r.target, c.byClass.moved, c.requested - c.byClass.moved);
        this.d.store.logMigration({
          t: this.d.now(),
          vmUuid: this.uuid,
          guestNode: r.guestNode,
          fromNode: null,
          toNode: r.target,
          direction: r.direction,
          pages: c.requested,
          moved: c.byClass.moved,
          busy: c.byClass.busy,
          notPresent: c.byClass.notPresent,
          noMemory: c.byClass.noMemory,
          fault: c.byClass.fault,
          other: c.byClass.other,
          durationMs: r.durationMs,
        });
      },
    });
    const pages = { movable: (p: number) => pm.movable(p), guestNodeOf: (p: number) => pm.segments[pm.segmentIndexOfPage(p)]!.guestNode, addrOf: (p: number) => pm.addrOf(p) };
    const r = await mover.run(pages, { vmId: this.uuid, promote, demote, host, targetNodes: this.d.targetNodes, migration: policy.migration });
    summary.moves = { promote: r.promote, demote: r.demote };
    summary.promotionPaused = r.promotionPaused;
    for (const [why, n] of Object.entries(r.skipped)) skip(why, n);
    if (r.demote.requested > 0) this.d.metrics.moves(this.uuid, this.name, 'demote', r.demote, PAGE_SIZE);
    if (r.promote.requested > 0) this.d.metrics.moves(this.uuid, this.name, 'promote', r.promote, PAGE_SIZE);
    return r.leaving;
  }

  /**
   * MADV_COLD on DRAM pages cold for coldConfirmRounds that stay in DRAM this round, so the
   * kernel's reclaim agrees with vmtier about them. Returns bytes advised.
   */
  private async madviseCold(policy: TierPolicy, pm: PageMap, tiers: Uint8Array, demoted: readonly number[]): Promise<number> {
    const leaving = new Set<number>(demoted);
    const ranges: Array<{ start: number; end: number }> = [];
    const need = policy.thresholds.coldConfirmRounds;
    for (const s of pm.segments) {
      if (!s.migratable) continue;
      let runStart = -1;
      for (let i = 0; i <= s.pages; i++) {
        const p = s.firstPage + i;
        const cold = i < s.pages && tiers[p] === TIER_DRAM && this.coldRounds[p]! >= need && !leaving.has(p);
        if (cold && runStart < 0) runStart = i;
        else if (!cold && runStart >= 0) {
          ranges.push({ start: s.start + runStart * PAGE_SIZE, end: s.start + i * PAGE_SIZE });
          runStart = -1;
        }
      }
    }
    if (ranges.length === 0) return 0;
    if (this.pidfd < 0) this.pidfd = pidfdOpen(this.pid);
    let bytes = 0;
    for (let off = 0; off < ranges.length; off += MADVISE_IOVECS) {
      this.signal.throwIfAborted();
      bytes += processMadvise(this.pidfd, ranges.slice(off, off + MADVISE_IOVECS), MADV_COLD);
      await turn();
    }
    return bytes;
  }
}
