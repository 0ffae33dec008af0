/**
 * One VM's tiering loop: its life cycle (start, stop, the policy in force, outgoing migrations,
 * failures and their backoff) and what lives longer than a round — the guest layout, the
 * tracker, the placement cache, the VM's worker thread and pidfd. Each round runs as named
 * stages (round/round.ts: account, decide, move, advise, record).
 *
 * Every step is asynchronous or chunked (move_pages in batches with a turn of the event loop between
 * them), so a VM with a slow scan or a stuck move never holds up another VM or the API. The loop's
 * AbortSignal reaches the tracker and the mover: a destroyed domain ends its loop mid-scan or
 * mid-move. A tracker that cannot run here (no module, DAMON refused) is reported as unavailable
 * and retried with backoff, while placement is still observed and recorded every round.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { HostTopology } from '../host/topology.js';
import { VmtierError, isVmtierError } from '../errors.js';
import { emptyMoveCounts } from '../migrate/counts.js';
import { DEFAULT_BATCH } from '../migrate/move.js';
import type { NodeRuns } from '../migrate/node-runs.js';
import type { UnitRun } from '../migrate/query.js';
import { PlacementCache, windowRuns } from '../migrate/placement-cache.js';
import { DEFAULT_POLICY, type TierPolicy } from '../policy/index.js';
import type { TrackerOptions } from '../scan/index.js';
import type { Tracker } from '../scan/tracker.js';
import { closeFd, pidfdOpen } from '../sys/syscalls.js';
import { PAGE_SHIFT, isUnitShift } from '../units.js';
import { storedPolicy, syncPolicy, type EffectivePolicy } from '../vm/policy-source.js';
import { POLICY_NS } from '../vm/vm-metadata.js';
import { Backoff } from './backoff.js';
import { HotUnits } from './hot-units.js';
import { PageMap } from './page-map.js';
import { RoundState, runRound, type RoundDeps, type RoundScan, type RoundVm } from './round/round.js';
import type { TrackerStatus, VmEngineStatus } from './status.js';
import { createVmTracker } from './thread-tracker.js';
import { MigrationStarted, errInfo, isGone } from './vm-errors.js';
import { VmWorker } from './vm-worker.js';

export interface TrackerChoice {
  /** Name reported in status and metrics ('auto' resolved). */
  name: string;
  /** Options handed to the tracker (they cross into the VM's thread: plain data). */
  options: TrackerOptions;
}

export interface VmLoopDeps extends RoundDeps {
  uuid: string;
  name: string;
  logger: Logger;
  /** Host topology, cached by the engine (nodes' free memory changes as pages move). */
  host: () => HostTopology;
  /** The tracker for this policy (engine override, else the policy's own). */
  trackerFor: (policy: TierPolicy) => TrackerChoice;
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
  private layoutStale = true;
  /** Host node per page, refreshed by a rotating window; null until the first round of a layout. */
  private placement: PlacementCache | null = null;
  /** The huge units (2 MiB, 1 GiB) the last scan saw mapped: the placement query asks one page per unit there. */
  private unitRuns: UnitRun[] = [];
  /** What rounds carry from one to the next (policy state flags, cold rounds, buffers, hot map). */
  private readonly rounds = new RoundState();
  /** Decisions and move_pages run in this VM's own thread (vm-thread.ts). */
  private readonly worker = new VmWorker();
  /** The metadata's policy must be read again (start, METADATA_CHANGE event, reconnect). */
  private policyDirty = true;
  private effective: EffectivePolicy | null = null;
  /** An outgoing migration is running: no scans, no moves. */
  private migrating: { since: number; iteration: number | null } | null = null;
  /** Bumped when a migration starts, so a round that was mid-scan knows to throw its counts away. */
  private migrationEpoch = 0;
  private status: VmEngineStatus;
  /** The loop as its rounds see it. */
  private readonly roundVm: RoundVm;

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
    this.roundVm = {
      uuid: this.uuid,
      name: this.name,
      log: this.log,
      signal: this.ctl.signal,
      deps,
      state: this.rounds,
      status: this.status,
      layout: () => this.ensureLayout(),
      scan: (policy, pm, counts, scans, intervalMs) => this.scan(policy, pm, counts, scans, intervalMs),
      placement: (pm) => this.queryNodes(pm),
      placementCache: () => this.placement,
      migrationEpoch: () => this.migrationEpoch,
      migrating: () => this.migrating !== null,
      movePages: async (addrs, target) => {
        const r = await this.worker.move(this.pid, addrs, target, DEFAULT_BATCH, this.signal);
        this.rounds.longestSyscallMs = Math.max(this.rounds.longestSyscallMs, r.longestCallMs);
        return r;
      },
      pidfd: () => {
        if (this.pidfd < 0) this.pidfd = pidfdOpen(this.pid);
        return this.pidfd;
      },
      pause: (ms) => this.pause(ms),
      trackerLabel: () => (this.trackerStatus?.available ? this.trackerStatus.name : `${this.trackerStatus?.name ?? 'none'} (unavailable)`),
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
          this.rounds.policyMode = null;
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
        if (this.rounds.seedPending && !(await this.domainRunning())) {
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
          await runRound(this.roundVm, policy);
          this.d.metrics.workerHeap(this.uuid, this.name, this.worker.heap);
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
    this.rounds.hotUnits = new HotUnits(pm);
    this.pid = map.domain.pid;
    this.layoutStale = false;
    // A remapped layout may number pages differently: query everything again.
    this.placement = null;
    this.unitRuns = [];
    if (pidChanged && this.pidfd >= 0) {
      closeFd(this.pidfd);
      this.pidfd = -1;
    }
    if (pidChanged || sizeChanged) {
      // New process or layout: the tracker must track the new ranges, and old per-page state is meaningless.
      await this.releaseTracker();
      this.rounds.relayout();
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
   * Where every page sits: host node per page as runs (-1 not present or not queryable). Kept
   * from round to round (src/migrate/placement-cache.ts): this round's rotating window is queried
   * in the VM's thread, which answers with runs; vmtier's own moves were recorded as they happened.
   */
  private async queryNodes(pm: PageMap): Promise<{ node: NodeRuns; unqueryable: number }> {
    if (!this.placement || this.placement.totalPages !== pm.totalPages) this.placement = new PlacementCache(pm.totalPages);
    let unqueryable = 0;
    await this.placement.refresh(async (w) => {
      const end = w.first + w.count;
      const units = this.unitRuns.filter((u) => u.firstPage < end && u.firstPage + u.pages > w.first).map((u) => {
        const lo = Math.max(u.firstPage, w.first);
        return { firstPage: lo, pages: Math.min(u.firstPage + u.pages, end) - lo, shift: u.shift };
      });
      const r = await this.worker.query(this.pid, windowRuns(pm.segments, w), w.first, w.count, DEFAULT_BATCH, this.signal, units);
      this.rounds.longestSyscallMs = Math.max(this.rounds.longestSyscallMs, r.longestCallMs);
      unqueryable += r.unqueryable;
      return r.runs;
    });
    return { node: this.placement.node, unqueryable };
  }

  /**
   * This round's scan into `buffer`, with the loop's tracker. A tracker that breaks mid-run is
   * treated like one that cannot start: reported, retried with backoff, and the round goes on
   * with placement only (counts null).
   */
  private async scan(policy: TierPolicy, pm: PageMap, buffer: Uint8Array, scans: number, intervalMs: number): Promise<RoundScan> {
    const tracker = await this.ensureTracker(policy, pm);
    if (!tracker) return { counts: null, scanMs: 0 };
    const ts = performance.now();
    let counts: Uint8Array | null = null;
    try {
      // The tracker writes the round's buffer itself (in the VM's thread when it runs there).
      const res = await tracker.scan({ scans, intervalMs, counts: buffer, signal: this.signal });
      // Its numbering is the layout's (tracked ranges laid end to end) unless it tracks another layout.
      for (const r of res.ranges) {
        if (pm.pageOf(r.start) !== r.firstPage) {
          throw new VmtierError('HVA_MISMATCH', `tracker returned range 0x${r.start.toString(16)} at page ${r.firstPage}, not where the guest layout has it`);
        }
      }
      counts = buffer;
      this.unitRuns = [];
      for (const r of res.ranges) {
        const m = r.mapped;
        for (let k = 0; k + 2 < m.length; k += 3) {
          const shift = m[k + 2]!;
          if (shift > PAGE_SHIFT && isUnitShift(shift)) this.unitRuns.push({ firstPage: r.firstPage + m[k]!, pages: m[k + 1]!, shift });
        }
      }
      this.trackerBackoff.success();
      this.status.trackerBackoffMs = null;
    } catch (e) {
      if (this.signal.aborted || isGone(e)) throw e;
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
    return { counts, scanMs: performance.now() - ts };
  }
}
