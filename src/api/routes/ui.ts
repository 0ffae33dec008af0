/**
 * The web dashboard: static assets under /ui (built by scripts/build-ui.mjs into dist/ui; public,
 * they hold no data) and GET /v1/dashboard/vms, the one-row-per-VM overview the VMs page needs in
 * a single request (data, so behind the bearer token like everything under /v1).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from 'typebox';
import type { VmEngineStatus } from '../../daemon/status.js';
import { isVmtierError } from '../../errors.js';
import { DEFAULT_POLICY, TierPolicySchema } from '../../policy/schema.js';
import type { HotnessSample } from '../../store/store.js';
import { errors } from '../schemas.js';
import { EngineResponse } from './engine.js';

/** dist/ui (this file runs as dist/src/api/routes/ui.js). */
export const UI_DIR = fileURLToPath(new URL('../../../ui/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
};

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(s: T) => Type.Union([s, Type.Null()]);

export const DashboardVm = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  running: Type.Boolean({ description: 'libvirt runs it now (false: recorded earlier, or libvirtd unreachable)' }),
  mode: Type.Union([Type.Literal('off'), Type.Literal('observe'), Type.Literal('tier')]),
  policyVersion: Type.Integer(),
  engineState: Nullable(Type.String({ description: "the engine loop's state; null when no loop manages the VM" })),
  tracker: Nullable(Type.Object({ name: Type.String(), available: Type.Boolean(), error: Nullable(Type.String()) })),
  lastRoundAt: Nullable(Type.String({ format: 'date-time', description: 'time of the newest recorded round' })),
  dramBytes: Type.Integer({ description: 'newest round: resident bytes on top-tier nodes (scanned rounds)' }),
  slowBytes: Type.Integer({ description: 'newest round: resident bytes on slow-tier nodes (scanned rounds)' }),
  hotBytes: Type.Integer(),
  warmBytes: Type.Integer(),
  coldBytes: Type.Integer(),
  movedLastHourBytes: Type.Integer(),
  moveFailuresLastHour: Type.Integer({ description: 'pages chosen but not moved in the last hour' }),
  roundFailures: Type.Integer({ description: "the engine loop's consecutive failed rounds" }),
  backoffUntil: Nullable(Type.String({ format: 'date-time' })),
});

export const DashboardVmsResponse = Type.Object({
  now: Type.String({ format: 'date-time' }),
  libvirt: Type.Object({ connected: Type.Boolean() }),
  vms: Type.Array(DashboardVm),
});

type Row = Static<typeof DashboardVm>;

function loadAssets(): Map<string, { body: Buffer; type: string }> {
  const out = new Map<string, { body: Buffer; type: string }>();
  let names: string[] = [];
  try {
    names = readdirSync(UI_DIR);
  } catch {
    return out; // not built: /ui says so
  }
  for (const n of names) {
    const type = TYPES[extname(n)];
    if (type) out.set(n, { body: readFileSync(join(UI_DIR, n)), type });
  }
  return out;
}

export const uiRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const ctx = app.vmtier;
  const assets = loadAssets();

  const sendAsset = (name: string, reply: import('fastify').FastifyReply) => {
    const a = assets.get(name);
    if (!a) {
      return reply.code(404).type('text/plain; charset=utf-8').send(assets.size === 0 ? 'the dashboard is not built: run `npm run build`' : `no such asset: ${name}`);
    }
    return reply.type(a.type).header('cache-control', name === 'index.html' ? 'no-cache' : 'max-age=300').send(a.body);
  };
  // Every page is the same document (the client routes on the hash).
  app.get('/ui', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/ui/'));
  app.get('/ui/', { schema: { hide: true } }, async (_req, reply) => sendAsset('index.html', reply));
  app.get<{ Params: { file: string } }>('/ui/:file', { schema: { hide: true } }, async (req, reply) => sendAsset(req.params.file, reply));

  app.get(
    '/v1/dashboard/policy-schema',
    {
      schema: {
        tags: ['dashboard'],
        security: [{ bearerAuth: [] }],
        summary: 'The JSON Schema PUT /v1/vms/{uuid}/policy validates against (the dashboard builds its policy form from it)',
        response: { 200: Type.Object({ schema: Type.Unknown() }), ...errors(401) },
      },
    },
    async () => ({ schema: JSON.parse(JSON.stringify(TierPolicySchema)) as unknown }),
  );

  app.get(
    '/v1/dashboard/engine',
    {
      schema: {
        tags: ['dashboard'],
        security: [{ bearerAuth: [] }],
        summary: 'The engine status of GET /v1/engine, or null when this service runs none (no 404 for the pages to log)',
        response: { 200: Type.Object({ engine: Nullable(EngineResponse) }), ...errors(401) },
      },
    },
    async () => ({ engine: ctx.engine ? ctx.engine.status() : null }),
  );

  app.get(
    '/v1/dashboard/vms',
    {
      schema: {
        tags: ['dashboard'],
        security: [{ bearerAuth: [] }],
        summary: 'Every VM running or recorded: mode, tracker, newest round per tier, moves and failures of the last hour, backoff',
        response: { 200: DashboardVmsResponse, ...errors(401) },
      },
    },
    async () => {
      const now = ctx.now();
      const iso = (t: number | null | undefined) => (t === null || t === undefined ? null : new Date(t).toISOString());
      const rows = new Map<string, Row>();
      const row = (uuid: string, name: string): Row => {
        let r = rows.get(uuid);
        if (!r) {
          const pol = ctx.store.currentPolicy(uuid);
          r = {
            uuid, name, running: false, mode: pol?.policy.mode ?? DEFAULT_POLICY.mode, policyVersion: pol?.version ?? 0,
            engineState: null, tracker: null, lastRoundAt: null,
            dramBytes: 0, slowBytes: 0, hotBytes: 0, warmBytes: 0, coldBytes: 0,
            movedLastHourBytes: 0, moveFailuresLastHour: 0, roundFailures: 0, backoffUntil: null,
          };
          rows.set(uuid, r);
        }
        return r;
      };
      for (const v of ctx.store.listVms()) row(v.uuid, v.name);
      let connected = true;
      try {
        for (const d of await ctx.inventory.list()) row(d.uuid, d.name).running = true;
      } catch (e) {
        // The overview still answers from the store while libvirtd is away.
        if (!isVmtierError(e, 'LIBVIRT_UNAVAILABLE') && !isVmtierError(e, 'LIBVIRT_ERROR')) throw e;
        connected = false;
      }
      const engineVms: VmEngineStatus[] = ctx.engine?.status().vms ?? [];
      for (const s of engineVms) {
        const r = row(s.uuid, s.name);
        r.mode = s.mode;
        r.policyVersion = s.policyVersion;
        r.engineState = s.state;
        r.tracker = s.tracker ? { name: s.tracker.name, available: s.tracker.available, error: s.tracker.error?.message ?? null } : null;
        r.roundFailures = s.failures;
        r.backoffUntil = iso(s.backoffUntil);
      }
      const latest: HotnessSample[] = ctx.store.latestSamples();
      for (const s of latest) {
        const r = rows.get(s.vmUuid);
        if (!r) continue;
        const resident = s.hotBytes + s.warmBytes + s.coldBytes;
        if (s.hostTier === 'top') r.dramBytes += resident;
        else r.slowBytes += resident;
        r.hotBytes += s.hotBytes;
        r.warmBytes += s.warmBytes;
        r.coldBytes += s.coldBytes;
        r.lastRoundAt = iso(s.t);
      }
      for (const r of rows.values()) {
        if (!r.lastRoundAt) continue;
        for (const series of ctx.store.history(r.uuid, now - 3600_000, now + 1, 3600_001)) {
          for (const b of series.buckets) {
            r.movedLastHourBytes += b.movedBytes;
            r.moveFailuresLastHour += b.failures;
          }
        }
      }
      return { now: iso(now)!, libvirt: { connected }, vms: [...rows.values()].sort((a, b) => a.name.localeCompare(b.name) || a.uuid.localeCompare(b.uuid)) };
    },
  );
};
