/**
 * Round stage 1, account: one pass over the VM's pages joins this round's access counts with
 * where each page sits. It yields the tier of every page (the policy's input and the heatmap's),
 * the consecutive cold rounds of every page (what MADV_COLD waits for), and per guest node x host
 * node the resident, hot, warm and cold pages (the store's samples).
 *
 * The thresholds are the round's own (a fraction of this round's scans): the policy keeps its
 * decayed, hysteretic view privately in its thread; this pass is what the round observed.
 */
import type { HostTopology } from '../../host/topology.js';
import { TIER_DRAM, TIER_NONE, TIER_SLOW, heatThresholds, type HeatThresholds, type TierPolicy } from '../../policy/index.js';
import type { NodeRuns } from '../../migrate/node-runs.js';
import type { PageMap } from '../page-map.js';
import { WORK_CHUNK, nextTurn } from './turn.js';

/** Host node ids are below the kernel's MAX_NUMNODES (1024 on x86_64). */
export const MAX_NODES = 1024;

/** Pages of one guest node on one host node this round, and what the move stage did with them. */
export interface NodeCell {
  hot: number;
  warm: number;
  cold: number;
  resident: number;
  moved: number;
  failures: number;
}

/** The cells of a round, keyed by guest node and host node. */
export class NodeCells {
  private readonly byKey = new Map<string, { guestNode: number; hostNode: number; cell: NodeCell }>();

  cell(guestNode: number, hostNode: number): NodeCell {
    const k = `${guestNode}:${hostNode}`;
    let e = this.byKey.get(k);
    if (!e) this.byKey.set(k, (e = { guestNode, hostNode, cell: { hot: 0, warm: 0, cold: 0, resident: 0, moved: 0, failures: 0 } }));
    return e.cell;
  }

  *entries(): IterableIterator<{ guestNode: number; hostNode: number; cell: NodeCell }> {
    yield* this.byKey.values();
  }

  get size(): number {
    return this.byKey.size;
  }
}

/** Tier per host node in a typed array: the per-page pass does no map lookups or allocations. */
export function tierOfNodes(host: HostTopology): Uint8Array {
  const t = new Uint8Array(MAX_NODES).fill(TIER_DRAM);
  for (const n of host.nodes) if (n.tier.class === 'slow' && n.node < MAX_NODES) t[n.node] = TIER_SLOW;
  return t;
}

/** A page is hot when seen in at least hotMin of the round's scans, cold when in at most coldMax (the policy's definition). */
export function roundThresholds(policy: TierPolicy, scans: number): HeatThresholds {
  return heatThresholds(policy.thresholds, scans);
}

export interface AccountInput {
  pm: PageMap;
  /** Host node per page as runs (-1: not present or not queryable): the placement cache's. */
  hostNode: Pick<NodeRuns, 'forEach'>;
  /** Scans that saw each page this round; null when no tracker ran (placement is still accounted). */
  counts: Uint8Array | null;
  /** From tierOfNodes(). */
  tierOfNode: Uint8Array;
  hotMin: number;
  coldMax: number;
  /** Written: the tier of every page (TIER_NONE where it is not present). */
  tiers: Uint8Array;
  /** Read and written: consecutive cold rounds per page (kept from round to round by the loop); null: not kept (no advising). */
  coldRounds: Uint16Array | null;
}

export interface Accounting {
  cells: NodeCells;
  dramPages: number;
  residentPages: number;
  hotPages: number;
  warmPages: number;
  coldPages: number;
  /** Pages of segments move_pages may not touch (devdax). */
  unmovablePages: number;
}

export async function account(input: AccountInput): Promise<Accounting> {
  const { pm, hostNode, counts, tierOfNode, hotMin, coldMax, tiers, coldRounds: cold } = input;
  // [host node * 4 + 0..3] = resident, hot, warm, cold pages of one guest node.
  const acc = new Map<number, Float64Array>();
  const out: Accounting = { cells: new NodeCells(), dramPages: 0, residentPages: 0, hotPages: 0, warmPages: 0, coldPages: 0, unmovablePages: 0 };
  for (const s of pm.segments) {
    if (!s.migratable) out.unmovablePages += s.pages;
    let a = acc.get(s.guestNode);
    if (!a) acc.set(s.guestNode, (a = new Float64Array(MAX_NODES * 4)));
    const end = s.firstPage + s.pages;
    for (let from = s.firstPage; from < end; from += WORK_CHUNK) {
      const to = Math.min(end, from + WORK_CHUNK);
      // Run by run: a stretch on one node (or not present) is one fill, not a lookup per page.
      hostNode.forEach(from, to, (rs, re, hn) => {
        const len = re - rs;
        if (hn < 0 || hn >= MAX_NODES) {
          tiers.fill(TIER_NONE, rs, re);
          if (cold) cold.fill(0, rs, re);
          return;
        }
        const t = tierOfNode[hn]!;
        tiers.fill(t, rs, re);
        if (t === TIER_DRAM) out.dramPages += len;
        a[hn * 4]! += len;
        if (!counts) return;
        let hot = 0;
        let warm = 0;
        let coldN = 0;
        for (let p = rs; p < re; p++) {
          const n = counts[p]!;
          if (n >= hotMin) {
            hot++;
            if (cold) cold[p] = 0;
          } else if (n <= coldMax) {
            coldN++;
            if (cold && cold[p]! < 0xffff) cold[p]!++;
          } else {
            warm++;
            if (cold) cold[p] = 0;
          }
        }
        a[hn * 4 + 1]! += hot;
        a[hn * 4 + 2]! += warm;
        a[hn * 4 + 3]! += coldN;
      });
      await nextTurn();
    }
  }
  for (const [g, a] of acc) {
    for (let h = 0; h < MAX_NODES; h++) {
      if (a[h * 4] === 0) continue;
      const c = out.cells.cell(g, h);
      c.resident = a[h * 4]!;
      c.hot = a[h * 4 + 1]!;
      c.warm = a[h * 4 + 2]!;
      c.cold = a[h * 4 + 3]!;
      out.residentPages += c.resident;
      out.hotPages += c.hot;
      out.warmPages += c.warm;
      out.coldPages += c.cold;
    }
  }
  return out;
}
