/** Validation every tracker applies to a ScanRequest before touching the kernel. */
import { VmtierError } from '../errors.js';
import type { ScanRequest } from './tracker.js';

/** Counts live in one byte per page, so at most 255 scans per round. */
export const MAX_SCANS = 255;

/** Checks the request, including that its counts hold exactly the `trackedPages` pages tracked. */
export function checkScanRequest(req: ScanRequest, trackedPages: number): void {
  if (!Number.isInteger(req.scans) || req.scans < 1 || req.scans > MAX_SCANS) {
    throw new VmtierError('INVALID_INPUT', `scans must be an integer in 1..${MAX_SCANS}, not ${req.scans}`);
  }
  if (!Number.isFinite(req.intervalMs) || req.intervalMs < 0 || req.intervalMs > 3_600_000) {
    throw new VmtierError('INVALID_INPUT', `intervalMs must be in 0..3600000, not ${req.intervalMs}`);
  }
  if (!(req.counts instanceof Uint8Array)) throw new VmtierError('INVALID_INPUT', 'a scan needs a Uint8Array to write its counts into');
  if (req.counts.length !== trackedPages) {
    throw new VmtierError('INVALID_INPUT', `counts hold ${req.counts.length} pages but ${trackedPages} are tracked`);
  }
}

/** The error a scan rejects with when its signal fires: the signal's reason, else VM_GONE. */
export function abortError(signal: AbortSignal): Error {
  const r = signal.reason;
  return r instanceof Error && !(r.name === 'AbortError') ? r : new VmtierError('VM_GONE', 'scan aborted');
}
