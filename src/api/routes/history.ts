/** GET /v1/vms/{uuid}/history?from&to&step: hotness history, downsampled into buckets. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { VmtierError } from '../../errors.js';
import { MAX_HISTORY_BUCKETS } from '../../store/store.js';
import { iso, knownVm } from '../context.js';
import { acceptsGzip } from '../gzip.js';
import { HistoryTextCache, historyGzipParts, historyJsonParts } from '../history-text.js';
import { HistoryQuery, HistoryResponse, VmParams, errors } from '../schemas.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };

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
  const cache = new HistoryTextCache(ctx.store);
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
    async (req, reply) => {
      const q = req.query;
      const to = q.to !== undefined ? parseTime(q.to, 'to') : ctx.now();
      const from = q.from !== undefined ? parseTime(q.from, 'from') : to - 3600_000;
      if (from >= to) throw new VmtierError('INVALID_INPUT', `from must be before to (from=${iso(from)}, to=${iso(to)})`);
      const stepMs = q.step !== undefined ? parseStep(q.step) : Math.max(1000, Math.ceil((to - from) / 60));
      const vm = await knownVm(ctx, req.params.uuid.toLowerCase());
      // Built as JSON bytes (src/api/history-text.ts; the schema above documents them, the
      // serializer is not needed) in pieces: the request's own ~130-byte start and the series
      // text, usually kept and shared between polls (~225 KB for a day at 5 m). Written as one
      // writev without joining them: a copy and a fresh 225 KB allocation per poll cost about a
      // tenth of a poll's CPU on this host. reply.send takes one buffer, hence the hijack;
      // fastify's onResponse hooks (the request counter) still run.
      // With Accept-Encoding: gzip (what Go's and Python's HTTP clients and browsers send) the
      // answer is one gzip member made of the start as a stored block and the kept body deflated
      // once (src/api/gzip.ts): ~28 KB instead of ~225 KB on the wire and through the socket.
      const gzip = acceptsGzip(req.headers['accept-encoding']);
      const source = q.source ?? 'auto';
      const parts = gzip ? historyGzipParts(ctx.store, cache, vm.uuid, from, to, stepMs, source) : historyJsonParts(ctx.store, cache, vm.uuid, from, to, stepMs, source);
      const r = reply as FastifyReply;
      r.hijack();
      const res = r.raw;
      for (const [name, value] of Object.entries(r.getHeaders())) if (value !== undefined) res.setHeader(name, value);
      const headers: Record<string, string | number> = {
        'content-type': 'application/json; charset=utf-8',
        'content-length': parts.reduce((n, p) => n + p.length, 0),
        vary: 'Accept-Encoding',
      };
      if (gzip) headers['content-encoding'] = 'gzip';
      res.writeHead(200, headers);
      // Corked: headers and every piece leave in one writev (end() uncorks).
      res.cork();
      for (let i = 0; i < parts.length - 1; i++) res.write(parts[i]);
      res.end(parts[parts.length - 1]);
    },
  );
};
