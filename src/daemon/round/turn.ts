/**
 * Lets the event loop run between chunks of per-page work: a VM of millions of pages must not
 * hold the API or the other VMs' rounds for the length of a whole pass.
 */
export const nextTurn = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/** Pages of per-page bookkeeping done between event-loop turns. */
export const WORK_CHUNK = 1 << 14;
