/**
 * The HTTP API: fastify 5 with TypeBox schemas, bearer auth on /v1, errors mapped in one
 * place (errors.ts), OpenAPI generated from the route schemas, Prometheus at /metrics.
 * Route plugins from src/api/routes/index.ts are registered after the core routes.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { type FastifyReply } from 'fastify';
import swagger from '@fastify/swagger';
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { HostTopology } from '../host/topology.js';
import type { Store } from '../store/store.js';
import type { VmInventory } from '../vm/inventory.js';
import { installBearerAuth } from './auth.js';
import type { AnyFastify, ApiContext } from './context.js';
import { errorBody, installErrorHandling, toHttpError, validationMessage } from './errors.js';
import { createMetrics } from './metrics.js';
import { HealthResponse } from './schemas.js';
import { historyRoutes } from './routes/history.js';
import { hostRoutes } from './routes/host.js';
import { routePlugins } from './routes/index.js';
import { policyRoutes } from './routes/policy.js';
import { vmRoutes } from './routes/vms.js';

export const API_VERSION = '0.1.0';

export interface ApiOptions {
  inventory: VmInventory;
  store: Store;
  readHost: () => HostTopology;
  /** Bearer token for /v1; null = open (serve allows that on loopback only). */
  token: string | null;
  logger?: Logger;
  now?: () => number;
  /** Largest request body in bytes. */
  bodyLimit?: number;
}

export async function buildApi(opts: ApiOptions): Promise<AnyFastify> {
  const bodyLimit = opts.bodyLimit ?? 1 << 20;
  const bodyTooLarge = (contentLength: string | undefined) => {
    const declared = Number(contentLength);
    return declared > bodyLimit ? errorBody('BODY_TOO_LARGE', `request body of ${declared} bytes is over the limit of ${bodyLimit}`) : null;
  };
  const app = Fastify({
    // Per-request lines would drown the daemon's round lines (/metrics counts requests): the
    // API logs warnings and errors only.
    ...(opts.logger ? { loggerInstance: opts.logger.child({ component: 'api' }, { level: 'warn' }) } : { logger: false }),
    bodyLimit,
    schemaErrorFormatter: validationMessage,
    // Response schemas with unions (nullable fields) make fast-json-stringify compile Ajv
    // validators on the first reply that reaches them: 50-100 ms of the main thread in the middle
    // of serving (measured by test/integration/engine-load.test.ts). Compile them at startup instead.
    serializerOpts: { compileValidators: true },
    // Requests node's HTTP parser rejects (a target that is not a path, bad headers, headers too
    // large) never reach fastify's handlers: answer them in the same shape too.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket: Socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return void socket.destroy();
      const [status, code, message] =
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'INVALID_INPUT', 'request not received in time']
        : err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'INVALID_INPUT', 'request headers too large']
        : [400, 'INVALID_INPUT', `malformed HTTP request (${err.code ?? 'parse error'})`];
      const body = JSON.stringify(errorBody(code, message));
      // A HEAD request gets the headers only (node's parser keeps the raw bytes it rejected).
      const head = (err as { rawPacket?: Buffer }).rawPacket?.subarray(0, 5).toString('latin1') === 'HEAD ';
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${head ? '' : body}`);
    },
    // Errors fastify raises before routing (bad URL encoding, over-long params) get the same body.
    frameworkErrors: (err, req, reply) => {
      const tooLarge = bodyTooLarge(req.headers['content-length']);
      const { status, body } = tooLarge ? { status: 413, body: tooLarge } : toHttpError(err);
      if (tooLarge) void (reply as unknown as FastifyReply).header('connection', 'close');
      void (reply as unknown as FastifyReply).code(status).send(body);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  // TypeBox checks bodies strictly (no coercion, unknown fields rejected, never dropped).
  app.setValidatorCompiler(TypeBoxValidatorCompiler);

  const metrics = createMetrics({ store: opts.store, inventory: opts.inventory });
  const ctx: ApiContext = {
    inventory: opts.inventory,
    store: opts.store,
    readHost: opts.readHost,
    metrics: metrics.registry,
    now: opts.now ?? Date.now,
  };
  app.decorate('vmtier', ctx);
  installErrorHandling(app);
  // A declared body over the limit is refused before anything else looks at the request (and
  // before it is read), on every route: fastify itself only checks routes that parse a body.
  app.addHook('onRequest', async (req, reply) => {
    const tooLarge = bodyTooLarge(req.headers['content-length']);
    if (tooLarge) return reply.header('connection', 'close').code(413).send(tooLarge);
  });
  installBearerAuth(app, opts.token);
  app.addHook('onResponse', async (req, reply) => {
    metrics.httpRequests.inc({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
  });

  await app.register(swagger, {
    // Schemas with an $id (TierPolicy) become named components instead of def-N.
    refResolver: { buildLocalReference: (json, _base, _frag, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'vmtier',
        version: API_VERSION,
        description: 'Memory tiering for KVM virtual machines. Errors are {"error":{"code","message"}}.',
      },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
    },
  });

  const started = Date.now();
  app.get(
    '/healthz',
    { schema: { summary: 'Liveness: libvirt connection and database state (degraded while either is faulty)', tags: ['service'], response: { 200: HealthResponse } } },
    async () => {
      const connected = ctx.inventory.connected();
      const db = ctx.store.health();
      return {
        status: connected && db.ok ? ('ok' as const) : ('degraded' as const),
        libvirt: { connected },
        db: { schemaVersion: ctx.store.schemaVersion, ok: db.ok, mode: db.mode, error: db.error, droppedWrites: db.droppedWrites },
        uptimeSeconds: (Date.now() - started) / 1000,
      };
    },
  );
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['service'], produces: ['text/plain'] } }, async (_req, reply) => {
    const text = (await metrics.registry.metrics()) + metrics.perVmText();
    return reply.type(metrics.registry.contentType).send(text);
  });

  await app.register(hostRoutes);
  await app.register(vmRoutes);
  await app.register(policyRoutes);
  await app.register(historyRoutes);
  for (const { name, plugin } of routePlugins) {
    if (typeof plugin !== 'function') throw new Error(`route plugin ${name} is not a fastify plugin function`);
    await app.register(plugin as Parameters<AnyFastify['register']>[0]);
  }
  await app.ready();
  return app;
}
