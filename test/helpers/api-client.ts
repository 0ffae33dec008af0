/**
 * What the integration tests need to talk to a running API and to wait for the engine: one bearer
 * request helper, and a poll with a deadline that fails the test naming what it waited for.
 */
import assert from 'node:assert/strict';

export type ApiRequest = (method: string, path: string, body?: unknown) => Promise<{ status: number; body: any }>;

/** Requests against the API at `base()` (read at each call: the port is known only after listen). */
export function apiClient(base: () => string, token: string): ApiRequest {
  return async (method, path, body) => {
    const r = await fetch(`${base()}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    return { status: r.status, body: text.startsWith('{') ? JSON.parse(text) : text };
  };
}

/** Polls `f` every `stepMs` until it returns something truthy; fails after `ms`. */
export async function until<T>(ms: number, what: string, f: () => T | undefined | null | false | Promise<T | undefined | null | false>, stepMs = 20): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
