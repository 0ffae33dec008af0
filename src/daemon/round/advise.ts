/**
 * Round stage 4, advise: MADV_COLD on DRAM pages cold for the policy's coldConfirmRounds that
 * stay in DRAM this round, so that the kernel's reclaim agrees with vmtier about them (they are
 * the first to go under pressure instead of the VM's hot pages).
 *
 * A page is advised once, in the round it turns cold (its cold count reaches coldConfirmRounds),
 * not every round after: MADV_COLD puts a page in the second-youngest MGLRU generation, so
 * advising it again while reclaim runs makes it younger than the pages reclaim should take first
 * (lab finding of issue 17). A sweep round advises every DRAM page that is cold by then: the first
 * advising round of a loop, after a round that did not advise (observe mode, advice off) and after
 * a policy change (a new coldConfirmRounds).
 */
import { MADV_COLD, processMadvise } from '../../sys/syscalls.js';
import { TIER_DRAM } from '../../policy/index.js';
import { PAGE_SIZE, type HvaRange } from '../../units.js';
import type { PageMap } from '../page-map.js';
import { nextTurn } from './turn.js';

/** process_madvise takes at most IOV_MAX (1024) ranges per call. */
const MADVISE_IOVECS = 512;

export interface AdviseInput {
  pm: PageMap;
  /** Tier of every page after the move stage. */
  tiers: Uint8Array;
  /** Consecutive cold rounds per page (the account stage's). */
  coldRounds: Uint16Array;
  /** Rounds a page must have stayed cold. */
  confirmRounds: number;
  /** Pages whose demotion was attempted this round: leaving DRAM, nothing to advise. */
  leaving: readonly number[];
  /** Advise every page cold for at least confirmRounds, not only those that turned cold this round. */
  sweep: boolean;
}

/** The runs of movable DRAM pages to advise, as address ranges [start, end). */
export function coldRanges(input: AdviseInput): HvaRange[] {
  const leaving = new Set<number>(input.leaving);
  const { tiers, coldRounds, confirmRounds, sweep } = input;
  const ranges: HvaRange[] = [];
  for (const s of input.pm.segments) {
    if (!s.migratable) continue;
    let runStart = -1;
    for (let i = 0; i <= s.pages; i++) {
      const p = s.firstPage + i;
      const c = i < s.pages ? coldRounds[p]! : 0;
      const cold = i < s.pages && tiers[p] === TIER_DRAM && (sweep ? c >= confirmRounds : c === confirmRounds) && !leaving.has(p);
      if (cold && runStart < 0) runStart = i;
      else if (!cold && runStart >= 0) {
        ranges.push({ start: s.start + runStart * PAGE_SIZE, end: s.start + i * PAGE_SIZE });
        runStart = -1;
      }
    }
  }
  return ranges;
}

/** Advises the cold ranges through the VM's pidfd (opened on first need); returns bytes advised. */
export async function advise(input: AdviseInput & { pidfd(): number; signal: AbortSignal }): Promise<number> {
  const ranges = coldRanges(input);
  if (ranges.length === 0) return 0;
  const pidfd = input.pidfd();
  let bytes = 0;
  for (let off = 0; off < ranges.length; off += MADVISE_IOVECS) {
    input.signal.throwIfAborted();
    bytes += processMadvise(pidfd, ranges.slice(off, off + MADVISE_IOVECS), MADV_COLD);
    await nextTurn();
  }
  return bytes;
}
