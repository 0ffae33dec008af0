/**
 * The host's policy thread: one src/policy TieringPolicy for every VM of the host, so a round's
 * tiered VMs are decided in one decide() call — the call the simulator makes — with one DRAM
 * pool, one pass of demotions before promotions and one definition of contention. decide() is
 * O(pages) and synchronous, so it runs here, off node's main thread. The round's counts and
 * tiers arrive on SharedArrayBuffers (the VM threads' scans wrote them): shared, not copied.
 */
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { VmtierError } from '../errors.js';
import { TieringPolicy, type Decision, type RoundInput } from '../policy/index.js';
import { threadHeap as heap, type WorkerHeap } from './thread-heap.js';

export type PolicyThreadRequest =
  /** Decides `input`; the VMs in `forget` start from fresh policy state first. */
  | { op: 'decide'; id: number; forget: string[]; input: RoundInput }
  | { op: 'forget'; id: number; vmIds: string[] };

export type PolicyThreadReply = (
  | { id: number; ok: true; result: Decision | null }
  | { id: number; ok: false; error: { code?: string; message: string; details?: Record<string, unknown> } }
) & { heap: WorkerHeap; stateBytes: number };

const core = new TieringPolicy();

// This thread's CPU work yields to node's main thread (the API, the loops), as the VM threads do.
try {
  setPriority(0, 10);
} catch {
  // Not permitted (containers may forbid it): the work is still off the main thread.
}

function run(m: PolicyThreadRequest): { result: Decision | null; transfer: ArrayBuffer[] } {
  switch (m.op) {
    case 'forget':
      for (const v of m.vmIds) core.forget(v);
      return { result: null, transfer: [] };
    case 'decide': {
      for (const v of m.forget) core.forget(v);
      const d = core.decide(m.input);
      return { result: d, transfer: d.vms.flatMap((v) => [v.promote.buffer, v.demote.buffer]) as ArrayBuffer[] };
    }
  }
}

parentPort?.on('message', (m: PolicyThreadRequest) => {
  try {
    const { result, transfer } = run(m);
    parentPort!.postMessage({ id: m.id, ok: true, result, heap: heap(), stateBytes: core.stateBytes() } satisfies PolicyThreadReply, transfer);
  } catch (e) {
    const err = e as Error & { code?: string };
    const details = e instanceof VmtierError && e.details ? { details: JSON.parse(JSON.stringify(e.details)) as Record<string, unknown> } : {};
    parentPort!.postMessage({ id: m.id, ok: false, error: { code: err.code, message: err.message, ...details }, heap: heap(), stateBytes: core.stateBytes() } satisfies PolicyThreadReply);
  }
});
