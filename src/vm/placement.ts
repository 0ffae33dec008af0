/**
 * Where each guest node's resident pages sit on the host: move_pages(2) in query mode
 * (nodes = NULL: src/sys's queryPageNodes, the one placement query) over every page of the
 * node's HVA ranges. A large node has millions of pages, so addresses are generated a chunk at
 * a time into a reused typed array, and the event loop gets a turn between chunks.
 */
import { ENOENT, errnoName } from '../errno.js';
import { queryPageNodes } from '../sys/syscalls.js';
import { PAGE_SIZE } from '../units.js';
import type { GuestNodeMap, GuestNodePlacement, Placement } from './types.js';

export interface PlacementOptions {
  /** Pages per chunk (addresses materialised at once). */
  chunkPages?: number;
  /** Called after each chunk with pages done and total, over all nodes. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export async function measurePlacement(map: GuestNodeMap, opts: PlacementOptions = {}): Promise<Placement> {
  const chunk = Math.max(1, opts.chunkPages ?? 65536);
  const addrs = new Float64Array(chunk);
  // The kernel's answers, one chunk's worth reused for every chunk (nothing allocated per query).
  const where = new Int32Array(chunk);
  const total = map.nodes.reduce((s, n) => s + n.hva.reduce((t, r) => t + (r.end - r.start) / PAGE_SIZE, 0), 0);
  let done = 0;
  const nodes: GuestNodePlacement[] = [];
  for (const n of map.nodes) {
    const byNode = new Map<number, number>();
    const errors: Record<string, number> = {};
    let notPresent = 0;
    let pages = 0;
    for (const r of n.hva) {
      for (let at = r.start; at < r.end; at += chunk * PAGE_SIZE) {
        opts.signal?.throwIfAborted();
        const count = Math.min(chunk, (r.end - at) / PAGE_SIZE);
        for (let i = 0; i < count; i++) addrs[i] = at + i * PAGE_SIZE;
        const status = queryPageNodes(map.domain.pid, count === chunk ? addrs : addrs.subarray(0, count), undefined, where);
        for (let i = 0; i < count; i++) {
          const s = status[i]!;
          if (s >= 0) byNode.set(s, (byNode.get(s) ?? 0) + 1);
          else if (s === -ENOENT) notPresent++;
          else errors[errnoName(-s)] = (errors[errnoName(-s)] ?? 0) + 1;
        }
        pages += count;
        done += count;
        opts.onProgress?.(done, total);
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    const pagesByHostNode: Record<string, number> = {};
    for (const k of [...byNode.keys()].sort((a, b) => a - b)) pagesByHostNode[String(k)] = byNode.get(k)!;
    nodes.push({ node: n.node, pagesByHostNode, notPresentPages: notPresent, errors, totalPages: pages });
  }
  return { domain: { ...map.domain }, nodes };
}
