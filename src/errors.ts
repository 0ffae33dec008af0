/**
 * One small error hierarchy for all of vmtier. Every error carries a stable `code`;
 * the API maps codes to HTTP statuses in one place (src/api/errors.ts) and the CLI
 * prints `code: message`.
 */
import { errnoName } from './errno.js';

export type ErrorCode =
  | 'VM_NOT_FOUND'
  | 'VM_GONE'
  | 'PID_UNTRUSTED'
  | 'INVALID_POLICY'
  | 'INVALID_INPUT'
  | 'INVALID_XML'
  | 'INVALID_PROFILE'
  | 'INVALID_TRACE'
  | 'NOT_FOUND'
  | 'LIBVIRT_UNAVAILABLE'
  | 'LIBVIRT_ERROR'
  | 'MONITOR_ERROR'
  | 'HVA_MISMATCH'
  | 'KERNEL_ERROR'
  | 'UNSUPPORTED'
  | 'TRACKER_BUSY'
  | 'TRACKER_UNAVAILABLE'
  | 'STREAM_CORRUPT'
  | 'SCHEMA_TOO_NEW'
  | 'STORE_ERROR'
  | 'STORE_UNAVAILABLE'
  | 'LAB_ERROR'
  | 'UNAUTHORIZED'
  | 'CONFIG_ERROR';

export class VmtierError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VmtierError';
    this.code = code;
    this.details = details;
  }
}

/** A failed system call; `errno` is the positive errno value (e.g. 3 for ESRCH). */
export class KernelError extends VmtierError {
  readonly errno: number;
  readonly syscall: string;
  constructor(syscall: string, errno: number, message?: string, details?: Record<string, unknown>) {
    super('KERNEL_ERROR', message ?? `${syscall} failed: ${errnoName(errno)} (${errno})`, { ...details, errno, syscall });
    this.name = 'KernelError';
    this.errno = errno;
    this.syscall = syscall;
  }
}

export function isVmtierError(e: unknown, code?: ErrorCode): e is VmtierError {
  return e instanceof VmtierError && (code === undefined || e.code === code);
}
