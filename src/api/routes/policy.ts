/** GET|PUT /v1/vms/{uuid}/policy: validated, persisted, every PUT a new version. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { DEFAULT_POLICY, TierPolicySchema, normalizePolicy, type TierPolicyInput } from '../../policy/schema.js';
import { withoutNulls, type PolicyRecord } from '../../store/store.js';
import { iso, knownVm } from '../context.js';
import { VmParams, errors } from '../schemas.js';

export const PolicyResponse = Type.Object({
  uuid: Type.String(),
  version: Type.Integer({ description: '0 = never set: the defaults apply' }),
  updatedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  policy: TierPolicySchema,
});

function body(uuid: string, rec: PolicyRecord | null) {
  // Unset limits are null inside vmtier and absent on the wire, so a GET body can be PUT back.
  return {
    uuid,
    version: rec?.version ?? 0,
    updatedAt: iso(rec?.updatedAt),
    policy: withoutNulls(rec?.policy ?? DEFAULT_POLICY) as TierPolicyInput,
  };
}

export const policyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const ctx = app.vmtier;
  const common = { tags: ['policy'], security: [{ bearerAuth: [] }], params: VmParams };

  app.get(
    '/v1/vms/:uuid/policy',
    { schema: { ...common, summary: 'Current tiering policy (defaults filled in)', response: { 200: PolicyResponse, ...errors(400, 401, 404, 503) } } },
    async (req) => {
      const vm = await knownVm(ctx, req.params.uuid.toLowerCase());
      return body(vm.uuid, ctx.store.currentPolicy(vm.uuid));
    },
  );

  app.put(
    '/v1/vms/:uuid/policy',
    {
      schema: {
        ...common,
        summary: 'Replace the tiering policy; stored as a new version, applied at the next round',
        body: TierPolicySchema,
        response: { 200: PolicyResponse, ...errors(400, 401, 404, 503) },
      },
    },
    async (req) => {
      // Schema checks ran already; normalizePolicy adds the cross-field rules (INVALID_POLICY).
      const policy = normalizePolicy(req.body);
      const vm = await knownVm(ctx, req.params.uuid.toLowerCase());
      return body(vm.uuid, ctx.store.putPolicy(vm.uuid, policy, ctx.now()));
    },
  );
};
