/** How lab guest drivers report an error on stdout (JSON), so host-side tests can assert its code. */
import { KernelError, isVmtierError } from '../../src/errors.js';

export function describeError(e: unknown): Record<string, unknown> {
  if (e instanceof KernelError) return { code: e.code, errno: e.errno, message: e.message };
  if (isVmtierError(e)) return { code: e.code, message: e.message, details: e.details };
  return { code: 'UNTYPED', message: String((e as Error)?.stack ?? e) };
}
