/** What route plugins get from the server: `app.vmtier` (decorated once in server.ts). */
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { EngineView } from '../daemon/status.js';
import type { HostTopology } from '../host/topology.js';
import type { Store, VmRecord } from '../store/store.js';
import type { VmInventory } from '../vm/inventory.js';
import { isVmtierError } from '../errors.js';

/** A fastify instance whatever its logger and type provider (helpers only add hooks). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyFastify = FastifyInstance<any, any, any, any, any>;

export interface ApiContext {
  inventory: VmInventory;
  store: Store;
  /** Reads the host topology (sysfs) with the configured tier overrides. */
  readHost: () => HostTopology;
  /** Prometheus registry served at /metrics; other parts may register their metrics here. */
  metrics: Registry;
  now: () => number;
  /** The tiering engine, when `vmtier serve` runs one (set after the API is built). */
  engine?: EngineView;
}

declare module 'fastify' {
  interface FastifyInstance {
    vmtier: ApiContext;
  }
}

/**
 * A VM the API may talk about: one vmtier has recorded, or else one libvirt has running
 * now (recorded on the way). Throws VM_NOT_FOUND, or LIBVIRT_UNAVAILABLE when libvirtd is
 * down and the store does not know the VM.
 */
export async function knownVm(ctx: ApiContext, uuid: string): Promise<VmRecord> {
  const rec = ctx.store.getVm(uuid);
  if (rec) return rec;
  const d = await ctx.inventory.resolve(uuid);
  return ctx.store.recordVmSeen(d.uuid, d.name, ctx.now());
}

/**
 * knownVm, or else a domain libvirt has defined but not running: the policy of a shut-off VM may
 * be set before it starts (it goes into the saved definition's metadata).
 */
export async function knownOrDefinedVm(ctx: ApiContext, uuid: string): Promise<VmRecord> {
  try {
    return await knownVm(ctx, uuid);
  } catch (e) {
    if (!isVmtierError(e, 'VM_NOT_FOUND')) throw e;
    const d = await ctx.inventory.lookup(uuid);
    return ctx.store.recordVmSeen(d.uuid, d.name, ctx.now());
  }
}

export function iso(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(ms).toISOString();
}
