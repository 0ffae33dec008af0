/** GET /v1/vms/{uuid}/history?from&to&step: hotness history, downsampled into buckets. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { VmtierError } from '../../errors.js';
import { MAX_HISTORY_BUCKETS } from '../../store/store.js';
import { iso, knownVm } from '../context.js';
import { HistoryQuery, HistoryResponse, VmParams, errors } from '../schemas.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };

/**
 * Bucket starts are multiples of the step, the same for every VM and every poll: formatting
 * them once (a day at 5 minutes is 288 strings per series) saves most of a response's CPU.
 */
const isoCache = new Map<number, string>();
function bucketIso(ms: number): string {
  let s = isoCache.get(ms);
  if (s === undefined) {
    if (isoCache.size >= 100_000) isoCache.clear();
    s = new Date(ms).toISOString();
    isoCache.set(ms, s);
  }
  return s;
}

export function parseTime(text: string, what: string): number {
  const t = /^\d+$/.test(text) ? Number(text) : /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN;
  if (!Number.isSafeInteger(t)) throw new VmtierError('INVALID_INPUT', `${what} must be an ISO 8601 time or ms since epoch, got ${JSON.stringify(text)}`);
  return t;
}

export function parseStep(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text);
  const ms = m ? Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 'ms']) : NaN;
  if (!(ms >= 1 && Number.isSafeInteger(ms))) throw new VmtierError('INVALID_INPUT', `step must be a duration like 60000, 30s, 5m, 1h, got ${JSON.stringify(text)}`);
  return ms;
}

export const historyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const ctx = app.vmtier;
  app.get(
    '/v1/vms/:uuid/history',
    {
      schema: {
        tags: ['history'],
        security: [{ bearerAuth: [] }],
        summary: `Per guest node x host node: hot/warm/cold bytes, scan and move figures, in buckets (at most ${MAX_HISTORY_BUCKETS})`,
        params: VmParams,
        querystring: HistoryQuery,
        response: { 200: HistoryResponse, ...errors(400, 401, 404, 503) },
      },
    },
    async (req) => {
      const q = req.query;
      const to = q.to !== undefined ? parseTime(q.to, 'to') : ctx.now();
      const from = q.from !== undefined ? parseTime(q.from, 'from') : to - 3600_000;
      if (from >= to) throw new VmtierError('INVALID_INPUT', `from must be before to (from=${iso(from)}, to=${iso(to)})`);
      const stepMs = q.step !== undefined ? parseStep(q.step) : Math.max(1000, Math.ceil((to - from) / 60));
      const vm = await knownVm(ctx, req.params.uuid.toLowerCase());
      const series = ctx.store.history(vm.uuid, from, to, stepMs, q.source ?? 'auto');
      return {
        uuid: vm.uuid,
        from: iso(from)!,
        to: iso(to)!,
        stepMs,
        series: series.map((s) => ({
          guestNode: s.guestNode,
          hostNode: s.hostNode,
          hostTier: s.hostTier,
          buckets: s.buckets.map((b) => ({
            start: bucketIso(b.start),
            hotBytes: b.hotBytes,
            warmBytes: b.warmBytes,
            coldBytes: b.coldBytes,
            scannedBytes: b.scannedBytes,
            scanMs: b.scanMs,
            movedBytes: b.movedBytes,
            failures: b.failures,
            samples: b.samples,
          })),
        })),
      };
    },
  );
};
