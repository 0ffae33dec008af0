/**
 * GET /v1/vms/{uuid}/heat?from&to&frames: the VM's heat history for the dashboard's heatmap —
 * per time column and address bucket hotness, DRAM share and residency, one byte each (base64).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { VmtierError } from '../../errors.js';
import { HEAT_CELL_MS, HEAT_MAX_BUCKETS, HEAT_MAX_FRAMES, heatHistoryOf } from '../../store/heat-history.js';
import { iso, knownVm } from '../context.js';
import { VmParams, errors } from '../schemas.js';
import { parseTime } from './history.js';

export const HeatQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ description: 'ISO 8601 time or ms since epoch; default: to - 1 h' })),
    to: Type.Optional(Type.String({ description: 'ISO 8601 time or ms since epoch; default: now' })),
    frames: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: `columns at most (1..${HEAT_MAX_FRAMES}); default 240` })),
  },
  { additionalProperties: false },
);

const Bytes = (what: string) => Type.String({ contentEncoding: 'base64', description: `one byte per bucket: ${what}, 0..255 = 0..1` });

export const HeatResponse = Type.Object({
  uuid: Type.String(),
  from: Type.String({ format: 'date-time' }),
  to: Type.String({ format: 'date-time' }),
  stepMs: Type.Integer({ description: `column width (at least the ${HEAT_CELL_MS / 1000} s cell rounds are folded into)` }),
  buckets: Type.Integer({ description: `address buckets per column (at most ${HEAT_MAX_BUCKETS}); 0 when there are no frames` }),
  bucketBytes: Type.Integer({ description: 'bytes of tracked guest memory per bucket' }),
  totalBytes: Type.Integer(),
  nodes: Type.Array(Type.Object({ guestNode: Type.Integer(), start: Type.Integer(), end: Type.Integer() }), {
    description: "each guest node's span on the bucket axis (guest nodes ascending, each node's memory in address order), in bytes from its start",
  }),
  frames: Type.Array(
    Type.Object({
      t: Type.String({ format: 'date-time', description: 'start of the column' }),
      samples: Type.Integer({ description: 'rounds folded into the column' }),
      hot: Type.Union([Bytes('mean fraction of scans that saw the resident pages accessed'), Type.Null()], { description: 'null: no round of the column was scanned' }),
      dram: Bytes('fraction of resident pages on a top-tier (DRAM) node'),
      resident: Bytes('fraction of pages resident'),
    }),
    { description: 'columns in time order; only those of the newest layout (a resized VM starts a new one)' },
  ),
});

export const heatRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const ctx = app.vmtier;
  app.get(
    '/v1/vms/:uuid/heat',
    {
      schema: {
        tags: ['history'],
        security: [{ bearerAuth: [] }],
        summary: `Heat history for a heatmap: guest memory in at most ${HEAT_MAX_BUCKETS} address buckets x time`,
        params: VmParams,
        querystring: HeatQuery,
        response: { 200: HeatResponse, ...errors(400, 401, 404, 503) },
      },
    },
    async (req) => {
      const q = req.query;
      const to = q.to !== undefined ? parseTime(q.to, 'to') : ctx.now();
      const from = q.from !== undefined ? parseTime(q.from, 'from') : to - 3600_000;
      if (from >= to) throw new VmtierError('INVALID_INPUT', `from must be before to (from=${iso(from)}, to=${iso(to)})`);
      const frames = q.frames !== undefined ? Number(q.frames) : 240;
      const vm = await knownVm(ctx, req.params.uuid.toLowerCase());
      const r = heatHistoryOf(ctx.store).query(vm.uuid, from, to, frames);
      const last = r.frames[r.frames.length - 1];
      const b64 = (a: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
      return {
        uuid: vm.uuid,
        from: iso(from)!,
        to: iso(to)!,
        stepMs: r.stepMs,
        buckets: last ? last.dram.length : 0,
        bucketBytes: last?.bucketBytes ?? 0,
        totalBytes: last?.totalBytes ?? 0,
        nodes: last?.nodes ?? [],
        frames: r.frames.map((f) => ({ t: iso(f.t)!, samples: f.samples, hot: f.hot ? b64(f.hot) : null, dram: b64(f.dram), resident: b64(f.resident) })),
      };
    },
  );
};
