/**
 * What the engine reports about itself and each managed VM (read by the API's /v1/engine routes
 * and logged). Plain data: no behaviour, so the API depends on these types only.
 */
import type { HostDecisionStatus } from './host-decider.js';
import type { KernelTiering } from '../host/topology.js';

import type { HostBudgetStatus } from '../migrate/budget.js';
import type { MoveCounts } from '../migrate/counts.js';

export type { BudgetLimit, HostBudgetStatus } from '../migrate/budget.js';

export interface TrackerStatus {
  /** The tracker asked for ('auto' resolved), e.g. "kmod", "damon", "replay". */
  name: string;
  available: boolean;
  /** Why it is unavailable (error code and message), while it is. */
  error: { code: string; message: string } | null;
}

export interface RoundSummary {
  round: number;
  /** ms since epoch, end of the round. */
  t: number;
  mode: 'observe' | 'tier';
  scans: number;
  intervalMs: number;
  scanMs: number;
  durationMs: number;
  trackedBytes: number;
  residentBytes: number;
  hotBytes: number;
  warmBytes: number;
  coldBytes: number;
  /** Pages the policy chose this round (in observe mode: what it would have moved). */
  decided: { promotePages: number; demotePages: number };
  moves: { promote: MoveCounts; demote: MoveCounts };
  promotionPaused: boolean;
  /** Moves the policy chose that were not attempted, by reason. */
  skipped: Record<string, number>;
  madvisedColdBytes: number;
  unmovablePages: number;
  /** Longest single synchronous move_pages batch (query or move) of the round, in ms. */
  longestSyscallMs: number;
  /** Why the policy set the next round's scan plan ('none' before a decision), and the recurrence period it found in rounds (0: none). */
  planReason: string;
  recurrencePeriodRounds: number;
  /** VMs decided in the same src/policy decide() as this one (host-decider.ts; 0 before a decision, 1: alone). */
  decidedWithVms: number;
  /** DRAM the policy gave this VM in that decision (its share of the host's pool), bytes. */
  shareBytes: number;
}

/** Outgoing live migration as the loop saw it: scans and moves pause while one runs. */
export interface MigrationStatus {
  state: 'none' | 'paused';
  /** When the current pause began (ms since epoch), and the pass libvirt reported. */
  since: number | null;
  iteration: number | null;
  /** Pauses so far, resumes after a migration that failed or was cancelled, rounds thrown away. */
  pauses: number;
  resumes: number;
  discardedRounds: number;
}

/** The hot map last written into the domain's metadata (src/vm/vm-metadata.ts). */
export interface HotMapStatus {
  round: number;
  t: number;
  units: number;
  hotUnits: number;
  /** The bitmap as written (base64). */
  map: string;
  error: { code: string; message: string } | null;
}

/** The first placement from a hot map found in the metadata (after a migration or restart). */
export interface SeedStatus {
  /** The round it ran in (1 = the loop's first). */
  round: number;
  t: number;
  /** The map used (base64), its units and hot units; the pages asked to be placed in DRAM. */
  map: string;
  units: number;
  hotUnits: number;
  pages: number;
  /** What the mover did with them (null in observe mode: nothing moved). */
  promote: MoveCounts | null;
  target: number | null;
  skipped: Record<string, number>;
}

export interface VmEngineStatus {
  uuid: string;
  name: string;
  /** Mode of the current policy; the loop idles while it is 'off'. */
  mode: 'off' | 'observe' | 'tier';
  policyVersion: number;
  /** Where the policy in force was read (the domain's metadata is the source of truth). */
  policySource: 'metadata' | 'store' | 'default';
  /** Why the metadata's policy is not in force (invalid: the last valid version applies), or null. */
  policyError: { code: string; message: string; t: number } | null;
  state: 'starting' | 'running' | 'idle' | 'backoff' | 'migrating' | 'stopped';
  migration: MigrationStatus;
  hotMap: HotMapStatus | null;
  seed: SeedStatus | null;
  tracker: TrackerStatus | null;
  /**
   * Tracker starts attempted, and tracker failures (starts that failed plus scans that broke, e.g.
   * the kmod module missing, a kdamond turned off by someone else), since the loop started. Each
   * failure backs the tracker off (5 s doubling to 5 min; reset by a successful scan), so starts
   * stay far below rounds while a tracker is broken.
   */
  trackerStarts: number;
  trackerFailures: number;
  /** The tracker backoff in force after its last failure (ms); null while the tracker works. */
  trackerBackoffMs: number | null;
  rounds: number;
  lastRound: RoundSummary | null;
  totals: { promote: MoveCounts; demote: MoveCounts; madvisedColdBytes: number };
  /** Consecutive failed rounds, and the last failure. */
  failures: number;
  lastError: { code: string; message: string; t: number } | null;
  backoffUntil: number | null;
}

export interface EngineStatus {
  running: boolean;
  /** Tracker override for every VM (serve --tracker), or null: each policy's tracker. */
  trackerOverride: string | null;
  kernel: KernelTiering | null;
  /** The kernel's own tiering that may fight vmtier over the same pages. */
  warnings: string[];
  /** The host-wide migration budget every VM's moves lease from. */
  budget: HostBudgetStatus;
  /** The host's decisions: tiered VMs decided together in one policy call (host-decider.ts). */
  decisions: HostDecisionStatus & { policyStateBytes: number | null };
  vms: VmEngineStatus[];
}

/** Read side of the engine, as the API sees it. */
export interface EngineView {
  status(): EngineStatus;
  vm(uuid: string): VmEngineStatus | null;
}
