/** GET /v1/host: nodes, tiers, dax devices and the kernel's own tiering state. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HostResponse, errors } from '../schemas.js';

export const hostRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/v1/host',
    {
      schema: {
        summary: 'Host NUMA nodes classed top/slow tier, memory tiers, dax devices, kernel tiering state',
        tags: ['host'],
        security: [{ bearerAuth: [] }],
        response: { 200: HostResponse, ...errors(401) },
      },
    },
    async () => app.vmtier.readHost(),
  );
};
