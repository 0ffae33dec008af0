/**
 * A worker thread's V8 isolate (its own heap, apart from the main thread's), sent with every
 * reply of the VM threads and the policy thread: /metrics shows it and bench:soak samples it,
 * so a leak in a thread is seen, not hidden in the process's RSS. getHeapStatistics() reads
 * counters (no GC, no walk): cheap next to any request.
 */
import { getHeapStatistics } from 'node:v8';

export interface WorkerHeap {
  usedBytes: number;
  totalBytes: number;
  externalBytes: number;
}

/** The policy thread's heap and the policy's retained state for every VM. */
export type PolicyThreadHeap = WorkerHeap & { stateBytes: number };

/** This thread's heap now. */
export function threadHeap(): WorkerHeap {
  const h = getHeapStatistics();
  return { usedBytes: h.used_heap_size, totalBytes: h.total_heap_size, externalBytes: h.external_memory };
}
