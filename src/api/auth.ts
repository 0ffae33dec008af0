/**
 * Bearer-token check for every /v1 route (including route plugins added later). Without a
 * configured token the API is open, which serve allows on loopback addresses only.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { AnyFastify } from './context.js';
import { VmtierError } from '../errors.js';

function digest(s: string): Buffer {
  // Equal-length digests let timingSafeEqual compare tokens of any length.
  return createHash('sha256').update(s).digest();
}

export function installBearerAuth(app: AnyFastify, token: string | null): void {
  if (token === null) return;
  const expected = digest(token);
  app.addHook('onRequest', async (req: FastifyRequest) => {
    const path = req.url.split('?')[0];
    if (path !== '/v1' && !path.startsWith('/v1/')) return;
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
    if (!m) throw new VmtierError('UNAUTHORIZED', 'missing bearer token (Authorization: Bearer <token>)');
    if (!timingSafeEqual(digest(m[1]), expected)) throw new VmtierError('UNAUTHORIZED', 'invalid bearer token');
  });
}
