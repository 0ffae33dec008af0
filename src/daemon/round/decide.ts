/**
 * Round stage 2, decide: the VM's counts go to the host's decider (host-decider.ts), which
 * decides the tiered VMs whose rounds are due in one src/policy decide() over the host's DRAM
 * pool, and answers the pages this VM promotes and demotes.
 */
import type { ScanPlan, TierPolicy } from '../../policy/index.js';
import { PAGE_SIZE } from '../../units.js';
import type { DecisionRequest, HostDecision } from '../host-decider.js';
import type { Accounting } from './account.js';

/** The host's decider (HostDecider.submit). */
export type Decider = (req: DecisionRequest, signal: AbortSignal) => Promise<HostDecision>;

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
  decider: Decider;
  signal: AbortSignal;
}

export async function decide(input: DecideInput): Promise<HostDecision> {
  // Demand as the policy measures it (decayed seen fractions), from the previous decision; the
  // first round has only this round's hot and warm pages.
  const demandBytes = input.lastDemandBytes ?? (input.accounting.hotPages + input.accounting.warmPages) * PAGE_SIZE;
  const d = await input.decider(
    {
      vm: { vmId: input.vmId, policy: input.policy, counts: input.counts, tiers: input.tiers, plan: input.plan },
      fresh: input.fresh,
      dramBytes: input.accounting.dramPages * PAGE_SIZE,
      demandBytes,
    },
    input.signal,
  );
  input.signal.throwIfAborted();
  return d;
}
