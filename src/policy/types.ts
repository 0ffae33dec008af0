/**
 * The round-level contract between the decision core (src/policy) and its two callers: the daemon
 * (real scans, real move_pages) and the simulator (trace replay). Everything per page is a typed
 * array indexed by page number within the VM's tracked memory.
 */
import type { TierPolicy } from './schema.js';

/** Tier codes stored per page in `tiers`. */
export const TIER_DRAM = 0;
export const TIER_SLOW = 1;
/** Not present (never touched, or unmapped): cannot be moved and holds no DRAM. */
export const TIER_NONE = 255;

export interface ScanPlan {
  /** Multiplies the policy's scan.intervalMs (the simulator: epochs per scan). */
  intervalMultiplier: number;
  /** N: scans whose counts make one round. */
  scansPerRound: number;
}

export interface VmRoundInput {
  vmId: string;
  policy: TierPolicy;
  /** Per page: in how many of this round's scans the page was seen accessed (0..scansPerRound). */
  counts: Uint8Array;
  /** Per page: TIER_DRAM, TIER_SLOW or TIER_NONE. */
  tiers: Uint8Array;
  /** Bytes per page: one size for all pages, or one per page (2 MiB mappings). Default 4096. */
  pageBytes?: number | Uint32Array;
  /** The plan the counts were gathered with (normally the one the previous decision returned). */
  plan: ScanPlan;
}

export interface RoundInput {
  /** DRAM the tiered VMs may hold together, in bytes. Every VM sharing it must be in `vms`. */
  dramCapacityBytes: number;
  /**
   * DRAM is short from outside the VMs (the host's free top-tier memory is below the watermark):
   * VMs above their share give DRAM back even when no VM's hot pages wait for it.
   */
  dramShort?: boolean;
  vms: VmRoundInput[];
}

export interface VmRoundStats {
  /** Pages seen in >= the hot threshold of scans this round. */
  hotPages: number;
  /** Hot pages that sit in the slow tier. */
  hotSlowPages: number;
  /** DRAM pages whose coldness is confirmed over coldConfirmRounds rounds. */
  coldConfirmedPages: number;
  dramBytes: number;
  /** DRAM this VM is entitled to this round (after floors, ceilings and weights). */
  shareBytes: number;
  /** DRAM the VM's recently used pages would fill (what its share was split by). */
  demandBytes: number;
  /** Moves this round that reverse a move made within pingPongWindowRounds. */
  pingPongs: number;
  /** Pages frozen by a ping-pong cool-down. */
  coolingPages: number;
  /** Why the scan plan changed: 'shift' | 'too-hot' | 'stable' | 'hold' | 'recurrent' (held while a period is found) | 'fixed' (no auto-tuning). */
  planReason: string;
  /** The recurrence period found in the VM's seen sets, in rounds (0: none); while one is found DRAM follows it. */
  recurrencePeriodRounds: number;
}

export interface VmDecision {
  vmId: string;
  /** Slow-tier pages to move to DRAM, most valuable first. */
  promote: Int32Array;
  /** DRAM pages to move to the slow tier, least valuable first. */
  demote: Int32Array;
  /** The plan for the next round. */
  plan: ScanPlan;
  stats: VmRoundStats;
}

export interface Decision {
  round: number;
  vms: VmDecision[];
}
