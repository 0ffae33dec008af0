// A "kernel" for placement tests: the true host node of every page (-1: not present), which a
// test changes behind vmtier's back as NUMA balancing or reclaim demotion would; its query
// answers a window the way the VM thread's queryWindow does (runs of present pages).
import { RunList, type RunListData } from '../../src/migrate/node-runs.js';
import type { PageWindow } from '../../src/migrate/placement-cache.js';

/** Runs of the present pages (node >= 0) of truth[first, first + count). */
export function runsOf(truth: ArrayLike<number>, first: number, count: number): RunListData {
  const out = new RunList();
  for (let p = first; p < first + count; ) {
    let q = p + 1;
    while (q < first + count && truth[q] === truth[p]) q++;
    if (truth[p]! >= 0) out.push(p, q - p, truth[p]!);
    p = q;
  }
  return out.trimmed();
}

export function fakeKernel(pages: number, node = 0) {
  const truth = new Int16Array(pages).fill(node);
  let queried = 0;
  const query = async (w: PageWindow): Promise<RunListData> => {
    queried += w.count;
    return runsOf(truth, w.first, w.count);
  };
  return { truth, query, queried: () => queried, reset: () => (queried = 0) };
}
