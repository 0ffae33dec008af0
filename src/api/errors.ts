/**
 * The one place where errors become HTTP responses: VmtierError codes map to statuses,
 * fastify's own client errors (validation, bad JSON, media type, size) stay 4xx, and only
 * what is truly the server's fault becomes 500. Body: {"error":{"code","message"}}.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { AnyFastify } from './context.js';
import { isVmtierError, type ErrorCode } from '../errors.js';

const STATUS: Record<ErrorCode, number> = {
  VM_NOT_FOUND: 404,
  VM_GONE: 404,
  NOT_FOUND: 404,
  INVALID_POLICY: 400,
  INVALID_INPUT: 400,
  INVALID_XML: 400,
  INVALID_PROFILE: 400,
  INVALID_TRACE: 400,
  UNAUTHORIZED: 401,
  TRACKER_BUSY: 409,
  UNSUPPORTED: 422,
  LIBVIRT_UNAVAILABLE: 503,
  TRACKER_UNAVAILABLE: 503,
  LIBVIRT_ERROR: 502,
  MONITOR_ERROR: 502,
  PID_UNTRUSTED: 502,
  HVA_MISMATCH: 500,
  KERNEL_ERROR: 500,
  SCHEMA_TOO_NEW: 500,
  STORE_ERROR: 500,
  STORE_UNAVAILABLE: 503,
  LAB_ERROR: 500,
  STREAM_CORRUPT: 500,
  CONFIG_ERROR: 500,
};

export function httpStatusOf(code: ErrorCode): number {
  return STATUS[code] ?? 500;
}

export interface ApiErrorBody {
  error: { code: string; message: string };
}

export function errorBody(code: string, message: string): ApiErrorBody {
  return { error: { code, message } };
}

/** status + body for anything thrown by a handler, a hook or fastify itself. */
export function toHttpError(err: unknown): { status: number; body: ApiErrorBody } {
  if (isVmtierError(err)) return { status: httpStatusOf(err.code), body: errorBody(err.code, err.message) };
  const fe = err as Partial<FastifyError> & { validationContext?: string };
  if (fe && Array.isArray(fe.validation)) {
    return { status: 400, body: errorBody('INVALID_INPUT', fe.message ?? 'invalid request') };
  }
  // fastify's own client errors: malformed JSON, unsupported media type, body too large, ...
  if (fe && typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const code = fe.statusCode === 404 ? 'NOT_FOUND' : fe.statusCode === 401 ? 'UNAUTHORIZED' : fe.statusCode === 413 ? 'BODY_TOO_LARGE' : 'INVALID_INPUT';
    return { status: fe.statusCode, body: errorBody(code, fe.message ?? 'bad request') };
  }
  return { status: 500, body: errorBody('INTERNAL', 'internal error; see the service log') };
}

export function installErrorHandling(app: AnyFastify): void {
  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const { status, body } = toHttpError(err);
    if (status >= 500) req.log.error({ err }, 'request failed');
    else req.log.debug({ code: body.error.code }, body.error.message);
    if (status === 401) reply.header('www-authenticate', 'Bearer realm="vmtier"');
    void reply.status(status).send(body);
  });
  app.setNotFoundHandler((req: FastifyRequest, reply: FastifyReply) => {
    void reply.status(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`));
  });
}

/**
 * A union of literals reports one "must be equal to constant" per branch plus an anyOf
 * summary; say instead which values are allowed, and every other problem once.
 */
export function validationMessage(errs: ReadonlyArray<{ instancePath?: string; keyword?: string; message?: string; params?: unknown }>, dataVar: string): Error {
  const allowed = new Map<string, unknown[]>();
  for (const e of errs) {
    if (e.keyword === 'const') {
      const list = allowed.get(e.instancePath ?? '') ?? [];
      list.push((e.params as { allowedValue?: unknown } | undefined)?.allowedValue);
      allowed.set(e.instancePath ?? '', list);
    }
  }
  const lines = new Set<string>();
  for (const e of errs) {
    const where = `${dataVar}${e.instancePath ?? ''}`;
    const values = allowed.get(e.instancePath ?? '');
    if (values && (e.keyword === 'const' || e.keyword === 'anyOf')) lines.add(`${where} must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}`);
    else lines.add(`${where} ${e.message ?? 'is invalid'}`);
  }
  return new Error([...lines].join('; '));
}
