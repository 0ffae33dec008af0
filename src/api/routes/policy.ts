/**
 * GET|PUT /v1/vms/{uuid}/policy. The policy lives in the domain's metadata (the source of truth,
 * src/vm/policy-source.ts); SQLite records every distinct version. PUT writes the metadata (live,
 * and the persistent definition when there is one), then the history.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { DEFAULT_POLICY, TierPolicySchema, normalizePolicy, type TierPolicyInput } from '../../policy/schema.js';
import { isVmtierError } from '../../errors.js';
import { withoutNulls } from '../../store/store.js';
import { storedPolicy, syncPolicy, writePolicy, type EffectivePolicy } from '../../vm/policy-source.js';
import { iso, knownOrDefinedVm } from '../context.js';
import { VmParams, errors } from '../schemas.js';

export const PolicyResponse = Type.Object({
  uuid: Type.String(),
  version: Type.Integer({ description: '0 = never set: the defaults apply' }),
  updatedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  policy: TierPolicySchema,
  source: Type.Union([Type.Literal('metadata'), Type.Literal('store'), Type.Literal('default')], {
    description: "where the policy in force was read: the domain's metadata, vmtier's store (libvirt unreachable, or not in the metadata yet), or the defaults",
  }),
  metadataError: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }), Type.Null()], {
    description: "why the policy in the domain's metadata is not in force (invalid: the last valid version applies)",
  }),
  written: Type.Optional(
    Type.Object(
      { live: Type.Boolean(), config: Type.Boolean() },
      { description: "PUT only: where the domain's metadata was written (running domain, persistent definition)" },
    ),
  ),
});

function body(uuid: string, eff: EffectivePolicy) {
  const rec = eff.record;
  // Unset limits are null inside vmtier and absent on the wire, so a GET body can be PUT back.
  return {
    uuid,
    version: rec?.version ?? 0,
    updatedAt: iso(rec?.updatedAt),
    policy: withoutNulls(rec?.policy ?? DEFAULT_POLICY) as TierPolicyInput,
    source: eff.source,
    metadataError: eff.error,
  };
}

export const policyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const ctx = app.vmtier;
  const common = { tags: ['policy'], security: [{ bearerAuth: [] }], params: VmParams };

  app.get(
    '/v1/vms/:uuid/policy',
    { schema: { ...common, summary: 'Current tiering policy (defaults filled in)', response: { 200: PolicyResponse, ...errors(400, 401, 404, 503) } } },
    async (req) => {
      const vm = await knownOrDefinedVm(ctx, req.params.uuid.toLowerCase());
      let eff: EffectivePolicy;
      try {
        eff = await syncPolicy(ctx.inventory, ctx.store, vm.uuid, ctx.now());
      } catch (e) {
        // The history answers while libvirt cannot (or no longer knows the domain).
        if (!isVmtierError(e, 'LIBVIRT_UNAVAILABLE') && !isVmtierError(e, 'VM_NOT_FOUND')) throw e;
        eff = storedPolicy(ctx.store, vm.uuid);
      }
      return body(vm.uuid, eff);
    },
  );

  app.put(
    '/v1/vms/:uuid/policy',
    {
      schema: {
        ...common,
        summary: "Replace the tiering policy: written into the domain's metadata, stored as a new version, applied at the next round",
        body: TierPolicySchema,
        response: { 200: PolicyResponse, ...errors(400, 401, 404, 503) },
      },
    },
    async (req) => {
      // Schema checks ran already; normalizePolicy adds the cross-field rules (INVALID_POLICY).
      const policy = normalizePolicy(req.body);
      const vm = await knownOrDefinedVm(ctx, req.params.uuid.toLowerCase());
      const w = await writePolicy(ctx.inventory, ctx.store, vm.uuid, policy, ctx.now());
      return { ...body(vm.uuid, { record: w.record, source: w.metadata.live || w.metadata.config ? 'metadata' : 'store', error: null }), written: w.metadata };
    },
  );
};
