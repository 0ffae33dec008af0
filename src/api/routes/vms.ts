/** GET /v1/vms, /v1/vms/{uuid}, /v1/vms/{uuid}/numa, /v1/vms/{uuid}/placement. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Static } from 'typebox';
import { isVmtierError } from '../../errors.js';
import { DEFAULT_POLICY } from '../../policy/schema.js';
import type { HvaRange } from '../../units.js';
import type { DomainSummary } from '../../vm/types.js';
import { iso, type ApiContext } from '../context.js';
import { NumaResponse, PlacementResponse, VmDetailResponse, VmListResponse, VmParams, VmSummary, errors } from '../schemas.js';

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function hexRanges(rs: readonly HvaRange[]): Array<{ start: string; end: string }> {
  return rs.map((r) => ({ start: hex(r.start), end: hex(r.end) }));
}

function summary(ctx: ApiContext, d: DomainSummary, running: boolean): Static<typeof VmSummary> {
  const rec = ctx.store.getVm(d.uuid);
  const pol = ctx.store.currentPolicy(d.uuid);
  return {
    uuid: d.uuid,
    name: d.name,
    id: d.id,
    state: d.state,
    running,
    firstSeen: iso(rec?.firstSeen),
    lastSeen: iso(rec?.lastSeen),
    policy: { version: pol?.version ?? 0, mode: pol?.policy.mode ?? DEFAULT_POLICY.mode },
  };
}

export const vmRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const ctx = app.vmtier;
  const common = { tags: ['vms'], security: [{ bearerAuth: [] }] };

  app.get(
    '/v1/vms',
    { schema: { ...common, summary: 'Running libvirt domains', response: { 200: VmListResponse, ...errors(401, 503) } } },
    async () => {
      const list = await ctx.inventory.list();
      return { vms: list.map((d) => summary(ctx, d, true)) };
    },
  );

  app.get(
    '/v1/vms/:uuid',
    {
      schema: {
        ...common,
        summary: 'One VM: running now, or recorded earlier by vmtier',
        params: VmParams,
        response: { 200: VmDetailResponse, ...errors(400, 401, 404, 503) },
      },
    },
    async (req) => {
      const uuid = req.params.uuid.toLowerCase();
      let d: DomainSummary;
      let running = true;
      try {
        d = await ctx.inventory.resolve(uuid);
      } catch (e) {
        const rec = ctx.store.getVm(uuid);
        // A VM that is not running (or libvirtd is down) is still answered from the store.
        if (!rec || !(isVmtierError(e, 'VM_NOT_FOUND') || isVmtierError(e, 'LIBVIRT_UNAVAILABLE'))) throw e;
        d = { uuid, name: rec.name, id: -1, state: isVmtierError(e, 'VM_NOT_FOUND') ? 'shutoff' : 'nostate' };
        running = false;
      }
      const guestNodes = ctx.store.guestNodes(uuid).map((n) => ({
        node: n.node,
        cpus: n.cpus,
        sizeBytes: n.sizeBytes,
        backing: n.backing as Static<typeof NumaResponse>['nodes'][number]['backing'],
      }));
      return { ...summary(ctx, d, running), guestNodes };
    },
  );

  app.get(
    '/v1/vms/:uuid/numa',
    {
      schema: {
        ...common,
        summary: 'Each guest NUMA node with its backing and exact host virtual address ranges',
        params: VmParams,
        response: { 200: NumaResponse, ...errors(400, 401, 404, 503) },
      },
    },
    async (req) => {
      const map = await ctx.inventory.numaMap(req.params.uuid.toLowerCase());
      const now = ctx.now();
      ctx.store.recordVmSeen(map.domain.uuid, map.domain.name, now);
      ctx.store.replaceGuestNodes(map.domain.uuid, map.nodes, now);
      return {
        domain: map.domain,
        nodes: map.nodes.map(({ devices, hva, ...n }) => ({
          ...n,
          hva: hexRanges(hva),
          ...(devices ? { devices: devices.map((d) => ({ ...d, hva: hexRanges(d.hva) })) } : {}),
        })),
      };
    },
  );

  app.get(
    '/v1/vms/:uuid/placement',
    {
      schema: {
        ...common,
        summary: 'Resident pages of each guest node per host node and tier',
        params: VmParams,
        response: { 200: PlacementResponse, ...errors(400, 401, 404, 503) },
      },
    },
    async (req) => {
      const p = await ctx.inventory.placement(req.params.uuid.toLowerCase());
      const host = ctx.readHost();
      const classOf = new Map(host.nodes.map((n) => [String(n.node), n.tier.class]));
      return {
        domain: p.domain,
        nodes: p.nodes.map((n) => {
          const pagesByTier = { top: 0, slow: 0 };
          for (const [hostNode, pages] of Object.entries(n.pagesByHostNode)) pagesByTier[classOf.get(hostNode) ?? 'slow'] += pages;
          return { ...n, pagesByTier };
        }),
      };
    },
  );
};
