/**
 * The engine's Prometheus metrics, labelled by VM uuid and name (vm_uuid, vm_name, as kubevirt's
 * kubevirt_vmi_* are by VM). They are registered on the API's
 * registry (so /metrics serves them next to the store-backed hotness gauges) or on a private one.
 */
import { Counter, Gauge, Registry, type CounterConfiguration, type GaugeConfiguration } from 'prom-client';
import type { MoveClass, MoveCounts } from '../migrate/counts.js';
import type { RoundSummary } from './status.js';
import type { PolicyThreadHeap, WorkerHeap } from './thread-heap.js';

const STATUS_LABEL: Record<MoveClass, string> = {
  moved: 'moved',
  busy: 'busy',
  notPresent: 'not_present',
  noMemory: 'no_memory',
  fault: 'fault',
  other: 'other',
};

/** A metric already on the registry (an engine restarted in the same process) is reused, not registered twice. */
function counter<L extends string>(registry: Registry, cfg: CounterConfiguration<L>): Counter<L> {
  return (registry.getSingleMetric(cfg.name) as Counter<L> | undefined) ?? new Counter(cfg);
}
function gauge<L extends string>(registry: Registry, cfg: GaugeConfiguration<L>): Gauge<L> {
  return (registry.getSingleMetric(cfg.name) as Gauge<L> | undefined) ?? new Gauge(cfg);
}

export class EngineMetrics {
  readonly registry: Registry;
  private readonly rounds: Counter<'vm_uuid' | 'vm_name' | 'mode'>;
  private readonly roundErrors: Counter<'vm_uuid' | 'vm_name'>;
  private readonly pages: Counter<'vm_uuid' | 'vm_name' | 'direction' | 'status'>;
  private readonly movedBytes: Counter<'vm_uuid' | 'vm_name' | 'direction'>;
  private readonly madvised: Counter<'vm_uuid' | 'vm_name'>;
  private readonly trackerFailures: Counter<'vm_uuid' | 'vm_name' | 'tracker'>;
  private readonly trackerUp: Gauge<'vm_uuid' | 'vm_name' | 'tracker'>;
  private readonly roundSeconds: Gauge<'vm_uuid' | 'vm_name'>;
  private readonly scanSeconds: Gauge<'vm_uuid' | 'vm_name'>;
  private readonly bytes: Gauge<'vm_uuid' | 'vm_name' | 'class'>;
  private readonly failures: Gauge<'vm_uuid' | 'vm_name'>;
  private readonly workerHeapBytes: Gauge<'vm_uuid' | 'vm_name' | 'kind'>;
  private readonly policyThreadBytes: Gauge<'kind'>;
  private readonly trackersOf = new Map<string, Set<string>>();

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const r = [registry];
    this.rounds = counter(registry, { name: 'vmtier_engine_rounds_total', help: 'tiering rounds completed per VM and mode', labelNames: ['vm_uuid', 'vm_name', 'mode'], registers: r });
    this.roundErrors = counter(registry, { name: 'vmtier_engine_round_errors_total', help: 'rounds that failed (the VM backs off)', labelNames: ['vm_uuid', 'vm_name'], registers: r });
    this.pages = counter(registry, {
      name: 'vmtier_engine_move_pages_total',
      help: 'pages the engine asked move_pages to move, by direction and per-page outcome',
      labelNames: ['vm_uuid', 'vm_name', 'direction', 'status'],
      registers: r,
    });
    this.movedBytes = counter(registry, { name: 'vmtier_engine_moved_bytes_total', help: 'bytes that ended on the target node', labelNames: ['vm_uuid', 'vm_name', 'direction'], registers: r });
    this.madvised = counter(registry, { name: 'vmtier_engine_madvise_cold_bytes_total', help: 'bytes marked MADV_COLD (cold pages left in DRAM)', labelNames: ['vm_uuid', 'vm_name'], registers: r });
    this.trackerFailures = counter(registry, {
      name: 'vmtier_engine_tracker_failures_total',
      help: 'tracker starts that failed and scans that broke (each backs the tracker off)',
      labelNames: ['vm_uuid', 'vm_name', 'tracker'],
      registers: r,
    });
    this.trackerUp = gauge(registry, { name: 'vmtier_engine_tracker_up', help: '1 while the VM\'s tracker works, 0 while it is unavailable', labelNames: ['vm_uuid', 'vm_name', 'tracker'], registers: r });
    this.roundSeconds = gauge(registry, { name: 'vmtier_engine_round_duration_seconds', help: 'wall time of the newest round', labelNames: ['vm_uuid', 'vm_name'], registers: r });
    this.scanSeconds = gauge(registry, { name: 'vmtier_engine_scan_duration_seconds', help: 'scan time of the newest round', labelNames: ['vm_uuid', 'vm_name'], registers: r });
    this.bytes = gauge(registry, { name: 'vmtier_engine_vm_bytes', help: 'newest round: tracked, resident, hot, warm, cold bytes', labelNames: ['vm_uuid', 'vm_name', 'class'], registers: r });
    this.failures = gauge(registry, { name: 'vmtier_engine_consecutive_failed_rounds', help: 'failed rounds in a row (backoff grows with it)', labelNames: ['vm_uuid', 'vm_name'], registers: r });
    this.workerHeapBytes = gauge(registry, {
      name: 'vmtier_engine_worker_heap_bytes',
      help: 'V8 heap of the VM loop\'s worker thread (its own isolate, not in vmtier_nodejs_heap_*) after its newest round: used, total (reserved) and external (ArrayBuffers) bytes',
      labelNames: ['vm_uuid', 'vm_name', 'kind'],
      registers: r,
    });
    this.policyThreadBytes = gauge(registry, {
      name: 'vmtier_engine_policy_thread_bytes',
      help: "the host's policy thread after its newest decision: V8 heap used, total (reserved) and external bytes, and state (the policy's retained per-unit state for every VM)",
      labelNames: ['kind'],
      registers: r,
    });
  }

  /** The policy thread after a decision; null (no thread now) drops the series. */
  policyThread(h: PolicyThreadHeap | null): void {
    for (const [kind, v] of [['used', h?.usedBytes], ['total', h?.totalBytes], ['external', h?.externalBytes], ['state', h?.stateBytes]] as const) {
      if (v === undefined) this.policyThreadBytes.remove({ kind });
      else this.policyThreadBytes.set({ kind }, v);
    }
  }

  round(vm: string, name: string, s: RoundSummary): void {
    this.rounds.inc({ vm_uuid: vm, vm_name: name, mode: s.mode });
    this.roundSeconds.set({ vm_uuid: vm, vm_name: name }, s.durationMs / 1000);
    this.scanSeconds.set({ vm_uuid: vm, vm_name: name }, s.scanMs / 1000);
    for (const [cls, v] of [['tracked', s.trackedBytes], ['resident', s.residentBytes], ['hot', s.hotBytes], ['warm', s.warmBytes], ['cold', s.coldBytes]] as const) {
      this.bytes.set({ vm_uuid: vm, vm_name: name, class: cls }, v);
    }
    this.failures.set({ vm_uuid: vm, vm_name: name }, 0);
    if (s.madvisedColdBytes > 0) this.madvised.inc({ vm_uuid: vm, vm_name: name }, s.madvisedColdBytes);
  }

  moves(vm: string, name: string, direction: 'promote' | 'demote', c: MoveCounts, pageBytes: number): void {
    for (const [cls, label] of Object.entries(STATUS_LABEL) as Array<[MoveClass, string]>) {
      const n = c.byClass[cls];
      if (n > 0) this.pages.inc({ vm_uuid: vm, vm_name: name, direction, status: label }, n);
    }
    if (c.byClass.moved > 0) this.movedBytes.inc({ vm_uuid: vm, vm_name: name, direction }, c.byClass.moved * pageBytes);
  }

  /** The VM thread's heap after a round; null (no thread now) drops the series. */
  workerHeap(vm: string, name: string, h: WorkerHeap | null): void {
    for (const [kind, v] of [['used', h?.usedBytes], ['total', h?.totalBytes], ['external', h?.externalBytes]] as const) {
      if (v === undefined) this.workerHeapBytes.remove({ vm_uuid: vm, vm_name: name, kind });
      else this.workerHeapBytes.set({ vm_uuid: vm, vm_name: name, kind }, v);
    }
  }

  roundFailed(vm: string, name: string, consecutive: number): void {
    this.roundErrors.inc({ vm_uuid: vm, vm_name: name });
    this.failures.set({ vm_uuid: vm, vm_name: name }, consecutive);
  }

  trackerFailed(vm: string, name: string, tracker: string): void {
    this.trackerFailures.inc({ vm_uuid: vm, vm_name: name, tracker });
  }

  tracker(vm: string, name: string, tracker: string, up: boolean): void {
    const seen = this.trackersOf.get(vm) ?? new Set<string>();
    // One series per VM: the tracker in use now.
    for (const t of seen) if (t !== tracker) this.trackerUp.remove({ vm_uuid: vm, vm_name: name, tracker: t });
    seen.clear();
    seen.add(tracker);
    this.trackersOf.set(vm, seen);
    this.trackerUp.set({ vm_uuid: vm, vm_name: name, tracker }, up ? 1 : 0);
  }

  /** A VM's loop ended: drop its gauges (counters stay, as Prometheus expects). */
  forget(vm: string, name: string): void {
    for (const tracker of this.trackersOf.get(vm) ?? []) this.trackerUp.remove({ vm_uuid: vm, vm_name: name, tracker });
    this.trackersOf.delete(vm);
    this.roundSeconds.remove({ vm_uuid: vm, vm_name: name });
    this.scanSeconds.remove({ vm_uuid: vm, vm_name: name });
    this.failures.remove({ vm_uuid: vm, vm_name: name });
    for (const cls of ['tracked', 'resident', 'hot', 'warm', 'cold']) this.bytes.remove({ vm_uuid: vm, vm_name: name, class: cls });
    this.workerHeap(vm, name, null);
  }
}
