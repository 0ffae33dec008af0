/**
 * FAULT INJECTION, for tests only: makes move_pages(2) *moves* fail the way the kernel can fail
 * them, without a kernel that does. Set before vmtier (or its worker threads, which copy the
 * environment when they start) runs:
 *
 *   VMTIER_INJECT_MOVE_PAGES=EBUSY          every page of every move reports -EBUSY (page pinned)
 *   VMTIER_INJECT_MOVE_PAGES=EFAULT         every page reports -EFAULT (not a movable mapping)
 *   VMTIER_INJECT_MOVE_PAGES=ENOMEM         the whole call fails with ENOMEM (target node full)
 *   VMTIER_INJECT_MOVE_PAGES=EPERM          the whole call fails with EPERM (no CAP_SYS_NICE)
 *   VMTIER_INJECT_MOVE_PAGES=EBUSY:call     any errno, forced to the per-page or whole-call form
 *   VMTIER_INJECT_MOVE_PAGES=ARRIVED        every page reports it is on the target node: a stand-in
 *                                           for a second NUMA node on a machine that has one
 *
 * Queries (move_pages with nodes = NULL) are never affected: placement stays the kernel's truth.
 * The injected move does not reach the kernel, so no page moves. Unset = no effect, no cost
 * beyond one environment lookup per move call.
 */
import { ERRNO, type ErrnoName } from '../errno.js';
import { VmtierError } from '../errors.js';

/** The errnos that can be injected, and how the kernel reports each: per page in status[], or as the call's return. */
const DEFAULT_SCOPE: Partial<Record<ErrnoName, 'page' | 'call'>> = {
  EPERM: 'call', ENOENT: 'page', ESRCH: 'call', EAGAIN: 'page', ENOMEM: 'call', EFAULT: 'page', EBUSY: 'page', EINVAL: 'call',
};

export const MOVE_PAGES_INJECT_ENV = 'VMTIER_INJECT_MOVE_PAGES';

export interface InjectedFault {
  /** 0 with `arrived`. */
  errno: number;
  scope: 'page' | 'call';
  /** No error: every page reports the target node (status = node), as if moved. */
  arrived?: boolean;
}

let cachedSpec: string | undefined;
let cachedFault: InjectedFault | null = null;

/** The move_pages fault injected through the environment, or null (the normal case). */
export function injectedMovePagesFault(): InjectedFault | null {
  const spec = process.env[MOVE_PAGES_INJECT_ENV];
  if (spec === undefined || spec === '') return null;
  if (spec === cachedSpec) return cachedFault;
  if (spec === 'ARRIVED') {
    cachedSpec = spec;
    cachedFault = { errno: 0, scope: 'page', arrived: true };
    return cachedFault;
  }
  const [name, scope] = spec.split(':');
  const defaultScope = name !== undefined && Object.hasOwn(DEFAULT_SCOPE, name) ? DEFAULT_SCOPE[name as ErrnoName] : undefined;
  if (defaultScope === undefined || (scope !== undefined && scope !== 'page' && scope !== 'call')) {
    throw new VmtierError('CONFIG_ERROR', `${MOVE_PAGES_INJECT_ENV}=${spec}: expected ARRIVED or one of ${Object.keys(DEFAULT_SCOPE).join(', ')}, optionally :page or :call`);
  }
  cachedSpec = spec;
  cachedFault = { errno: ERRNO[name as ErrnoName], scope: (scope as 'page' | 'call' | undefined) ?? defaultScope };
  return cachedFault;
}
