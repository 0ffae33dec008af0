/**
 * How a VM's loop reads errors: which mean the domain is gone (the loop ends), and the code and
 * message the status reports for the rest.
 */
import { ESRCH } from '../errno.js';
import { KernelError, isVmtierError } from '../errors.js';

/** The domain (or its QEMU process) is gone: the loop ends instead of backing off. */
export function isGone(e: unknown): boolean {
  if (e instanceof KernelError && e.errno === ESRCH) return true;
  return isVmtierError(e, 'VM_GONE') || isVmtierError(e, 'VM_NOT_FOUND');
}

/** Code and message for the engine status. */
export function errInfo(e: unknown): { code: string; message: string } {
  if (isVmtierError(e)) return { code: e.code, message: e.message };
  return { code: 'INTERNAL', message: (e as Error)?.message ?? String(e) };
}

/** A round overlapped the start of an outgoing migration: its scan saw the migration's reads. */
export class MigrationStarted extends Error {}
