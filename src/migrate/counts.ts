/**
 * Move outcomes counted by class: the one count type of the mover (move.ts's batches, mover.ts's
 * groups), the engine's status and metrics, and the API (src/api/routes/engine.ts's schema is
 * checked against it by test/unit/move-counts.test.ts).
 */

/**
 * What became of a page asked to move: it reached the target (already there counts), was busy
 * (EBUSY/EAGAIN, pinned or under I/O), not present (ENOENT), found the target full (ENOMEM), is
 * not movable (EFAULT) or anything else.
 */
export type MoveClass = 'moved' | 'busy' | 'notPresent' | 'noMemory' | 'fault' | 'other';

export interface MoveCounts {
  requested: number;
  byClass: Record<MoveClass, number>;
}

export function emptyMoveCounts(): MoveCounts {
  return { requested: 0, byClass: { moved: 0, busy: 0, notPresent: 0, noMemory: 0, fault: 0, other: 0 } };
}

export function addMoveCounts(into: MoveCounts, add: MoveCounts): void {
  into.requested += add.requested;
  for (const k of Object.keys(into.byClass) as MoveClass[]) into.byClass[k] += add.byClass[k];
}
