/**
 * Round stage 2, decide: the policy (src/policy, run in the VM's thread) picks the pages to
 * promote and demote within the DRAM share the engine gives this VM this round.
 */
import type { HostTopology } from '../../host/topology.js';
import type { Decision, RoundInput, ScanPlan, TierPolicy, VmDecision } from '../../policy/index.js';
import { PAGE_SIZE } from '../../units.js';
import type { Accounting } from './account.js';

/** Runs one decision: the VM worker's decide() (fresh: start from new policy state). */
export type Decider = (fresh: boolean, input: RoundInput, signal?: AbortSignal) => Promise<Decision>;

export interface DecideInput {
  vmId: string;
  policy: TierPolicy;
  counts: Uint8Array;
  tiers: Uint8Array;
  /** The plan this round's counts were gathered with. */
  plan: ScanPlan;
  accounting: Pick<Accounting, 'dramPages' | 'hotPages' | 'warmPages'>;
  /** The previous decision's DRAM demand; null on the first round of a fresh policy state. */
  lastDemandBytes: number | null;
  /** The next decision starts from fresh policy state (new layout, new mode, new thread). */
  fresh: boolean;
  host: HostTopology;
  /** Free top-tier memory below this is short DRAM (the migration budget's watermark). */
  watermarkBytes: number;
  /** The engine's split of the top tier between tiered VMs. */
  dramShare(dramBytes: number, demandBytes: number): number;
  decider: Decider;
  signal: AbortSignal;
}

export async function decide(input: DecideInput): Promise<VmDecision> {
  const dramBytes = input.accounting.dramPages * PAGE_SIZE;
  // Demand as the policy measures it (decayed seen fractions), from the previous decision; the
  // first round has only this round's hot and warm pages.
  const demand = input.lastDemandBytes ?? (input.accounting.hotPages + input.accounting.warmPages) * PAGE_SIZE;
  const share = input.dramShare(dramBytes, demand);
  // The host's top tier below the watermark: give back confirmed-cold DRAM even with no limit set.
  const topFree = input.host.nodes.reduce((sum, n) => sum + (n.tier.class === 'top' ? n.memFreeBytes : 0), 0);
  const dramShort = topFree < input.watermarkBytes;
  const decision = await input.decider(
    input.fresh,
    { dramCapacityBytes: share, dramShort, vms: [{ vmId: input.vmId, policy: input.policy, counts: input.counts, tiers: input.tiers, plan: input.plan }] },
    input.signal,
  );
  input.signal.throwIfAborted();
  return decision.vms[0]!;
}
