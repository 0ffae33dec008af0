/**
 * Where a VM's policy comes from. The domain's metadata (src/vm/vm-metadata.ts) is the source of
 * truth: it is what a control plane edits (`virsh metadata`, `virsh edit`, its own libvirt client),
 * it travels with the VM on live migration and it survives a reinstall of vmtier. SQLite keeps the
 * history: every PUT through the API, and every policy seen in the metadata that differs from the
 * current version, becomes a new version there, so `GET /v1/vms/{uuid}/policy/history` shows who changed what when, on this host.
 *
 * Rules, in order:
 *  - valid policy in the metadata: it applies; recorded as a new version when it differs from the
 *    store's current one;
 *  - invalid policy in the metadata: the last valid version (the store's current one) keeps
 *    applying, and the error is reported (engine status, GET policy) until the element is fixed;
 *  - no policy in the metadata: the store's current version applies and is published into the
 *    metadata (VMs whose policy predates the metadata, or was PUT while the domain was not
 *    defined); with no version at all, the defaults apply and nothing is written.
 */
import { VmtierError, isVmtierError } from '../errors.js';
import type { TierPolicy } from '../policy/schema.js';
import type { VmInventory } from './inventory.js';
import { POLICY_KEY, POLICY_NS, parsePolicyElement, policyElement } from './vm-metadata.js';

export interface PolicyVersion {
  uuid: string;
  version: number;
  policy: TierPolicy;
  updatedAt: number;
}

/** The part of the store this needs (the store's own PolicyRecord fits). */
export interface PolicyHistory {
  currentPolicy(uuid: string): PolicyVersion | null;
  putPolicy(uuid: string, policy: TierPolicy, t: number): PolicyVersion;
}

export type PolicySourceName = 'metadata' | 'store' | 'default';

export interface EffectivePolicy {
  record: PolicyVersion | null;
  /** Where the policy in force was read. */
  source: PolicySourceName;
  /** Why the metadata's policy is not the one in force (INVALID_POLICY), or null. */
  error: { code: string; message: string } | null;
}

function samePolicy(a: TierPolicy, b: TierPolicy): boolean {
  // Both come out of normalizePolicy, which builds every field in one fixed order.
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Stores `policy` as a new version unless it is the current one already. */
export function recordVersion(store: PolicyHistory, uuid: string, policy: TierPolicy, t: number): PolicyVersion {
  const cur = store.currentPolicy(uuid);
  if (cur && samePolicy(cur.policy, policy)) return cur;
  return store.putPolicy(uuid, policy, t);
}

/**
 * Reads the domain's metadata and brings the store in line with it (rules above). Throws
 * LIBVIRT_UNAVAILABLE / VM_NOT_FOUND when the metadata cannot be read: callers fall back to the store.
 */
export async function syncPolicy(inventory: VmInventory, store: PolicyHistory, uuid: string, now: number): Promise<EffectivePolicy> {
  const xml = await inventory.metadata(uuid, POLICY_NS);
  if (xml === null) {
    const cur = store.currentPolicy(uuid);
    if (!cur) return { record: null, source: 'default', error: null };
    await inventory.setMetadata(uuid, POLICY_NS, POLICY_KEY, policyElement(cur.policy));
    return { record: cur, source: 'store', error: null };
  }
  let policy: TierPolicy;
  try {
    policy = parsePolicyElement(xml);
  } catch (e) {
    if (!isVmtierError(e, 'INVALID_POLICY')) throw e;
    const cur = store.currentPolicy(uuid);
    return { record: cur, source: cur ? 'store' : 'default', error: { code: e.code, message: e.message } };
  }
  return { record: recordVersion(store, uuid, policy, now), source: 'metadata', error: null };
}

/**
 * The policy in force by the same rules, read without writing anything (`vmtier doctor` runs beside
 * the service and must not publish versions or record history). `store` is null when the service
 * has not created its database yet.
 */
export async function readPolicy(inventory: Pick<VmInventory, 'metadata'>, store: Pick<PolicyHistory, 'currentPolicy'> | null, uuid: string): Promise<EffectivePolicy> {
  const cur = store?.currentPolicy(uuid) ?? null;
  const fromStore: EffectivePolicy = { record: cur, source: cur ? 'store' : 'default', error: null };
  const xml = await inventory.metadata(uuid, POLICY_NS);
  if (xml === null) return fromStore;
  try {
    const policy = parsePolicyElement(xml);
    return { record: { uuid, version: cur?.version ?? 0, policy, updatedAt: cur?.updatedAt ?? 0 }, source: 'metadata', error: null };
  } catch (e) {
    if (!isVmtierError(e, 'INVALID_POLICY')) throw e;
    return { ...fromStore, error: { code: e.code, message: e.message } };
  }
}

/** The store's view alone (libvirt unreachable or the domain no longer defined). */
export function storedPolicy(store: PolicyHistory, uuid: string): EffectivePolicy {
  const cur = store.currentPolicy(uuid);
  return { record: cur, source: cur ? 'store' : 'default', error: null };
}

/**
 * A new policy from the API: the metadata first (it is the source of truth: a version stored only
 * in SQLite would be overwritten by the older one still in the metadata), then the history. A
 * domain libvirt no longer knows keeps its policy in the store alone, published when it returns.
 */
export async function writePolicy(
  inventory: VmInventory,
  store: PolicyHistory,
  uuid: string,
  policy: TierPolicy,
  now: number,
): Promise<{ record: PolicyVersion; metadata: { live: boolean; config: boolean } }> {
  let metadata = { live: false, config: false };
  let previous: string | null = null;
  try {
    previous = await inventory.metadata(uuid, POLICY_NS);
    metadata = await inventory.setMetadata(uuid, POLICY_NS, POLICY_KEY, policyElement(policy));
  } catch (e) {
    if (!isVmtierError(e, 'VM_NOT_FOUND')) {
      if (isVmtierError(e)) throw e;
      throw new VmtierError('LIBVIRT_ERROR', `cannot write the policy into the domain metadata: ${(e as Error).message}`, undefined, { cause: e });
    }
  }
  // Every PUT is a version of its own (an operator's explicit act, kept for the audit trail);
  // the copies seen in the metadata afterwards are not, being equal to it.
  try {
    return { record: store.putPolicy(uuid, policy, now), metadata };
  } catch (e) {
    // A PUT that fails (store read-only, full, unavailable) must leave the policy as it was: the
    // metadata wins over the store, so a new element left behind would apply after all.
    if (metadata.live || metadata.config) {
      await inventory.setMetadata(uuid, POLICY_NS, POLICY_KEY, previous, metadata).catch(() => undefined);
    }
    throw e;
  }
}
