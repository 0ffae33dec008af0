/**
 * Runs inside the lab: exercises src/migrate on the workload's pages and prints one JSON object
 * of raw facts (outcomes, queries, numa_maps) for test/lab/migrate-move.test.ts to judge.
 *
 *   node dist/lab/guest/migrate-probe.js roundtrip [--thp]   DRAM → node 1 → DRAM
 *   node dist/lab/guest/migrate-probe.js enomem              node 1 filled first
 *   node dist/lab/guest/migrate-probe.js devdax <device>     pages of a devdax mapping
 *   node dist/lab/guest/migrate-probe.js pinned              pages referenced by a pipe
 */
import { readFileSync } from 'node:fs';
import { movePagesToNode } from '../../src/migrate/move.js';
import { queryPageNodes } from '../../src/sys/syscalls.js';
import { histogram, nodeMemFreeBytes, numaMapsCounts, startWorkload } from './workload-proc.js';

const SLOW = 1;
const FAST = 0;

async function roundtrip(thp: boolean): Promise<unknown> {
  const w = await startWorkload(['--size', '32m', '--hot', '4m', '--rate', '0', '--thp', thp ? 'on' : 'off']);
  try {
    const { pid, base } = w.layout;
    const before = histogram(queryPageNodes(pid, w.pages));
    const toSlow = movePagesToNode(pid, w.pages, SLOW);
    const afterSlow = histogram(queryPageNodes(pid, w.pages));
    const numaMapsSlow = numaMapsCounts(pid, base);
    const anonHuge = /AnonHugePages:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1];
    const toFast = movePagesToNode(pid, w.pages, FAST);
    const afterFast = histogram(queryPageNodes(pid, w.pages));
    const numaMapsFast = numaMapsCounts(pid, base);
    return { layout: w.layout, pages: w.pages.length, before, toSlow, afterSlow, numaMapsSlow, anonHugeKiB: Number(anonHuge ?? 0), toFast, afterFast, numaMapsFast };
  } finally {
    await w.stop();
  }
}

async function enomem(): Promise<unknown> {
  const freeBefore = nodeMemFreeBytes(SLOW);
  // First touch preferring node 1 (not bound: the overflow goes to node 0 instead of the OOM killer).
  const filler = await startWorkload(['--size', `${Math.ceil(freeBefore / 2 ** 20) + 64}m`, '--hot', '2m', '--rate', '0', '--node', String(SLOW)]);
  try {
    const freeFilled = nodeMemFreeBytes(SLOW);
    const w = await startWorkload(['--size', '64m', '--hot', '2m', '--rate', '0']);
    try {
      const before = histogram(queryPageNodes(w.layout.pid, w.pages));
      let outcome: unknown;
      let thrown: unknown = null;
      try {
        outcome = movePagesToNode(w.layout.pid, w.pages, SLOW);
      } catch (e) {
        thrown = { message: (e as Error).message, code: (e as { code?: string }).code };
      }
      const after = histogram(queryPageNodes(w.layout.pid, w.pages));
      return { freeBefore, freeFilled, pages: w.pages.length, before, outcome, thrown, after };
    } finally {
      await w.stop();
    }
  } finally {
    await filler.stop();
  }
}

async function devdax(device: string): Promise<unknown> {
  const w = await startWorkload(['--map', device, '--size', '2m', '--hot', '2m', '--rate', '0']);
  try {
    const before = Array.from(queryPageNodes(w.layout.pid, w.pages.subarray(0, 4)));
    const toFast = movePagesToNode(w.layout.pid, w.pages, FAST);
    const toSlow = movePagesToNode(w.layout.pid, w.pages, SLOW);
    return { layout: w.layout, pages: w.pages.length, before, toFast, toSlow };
  } finally {
    await w.stop();
  }
}

async function pinned(): Promise<unknown> {
  // 1 MiB: the default pipe-max-size, so the pipe can hold every page of it.
  const w = await startWorkload(['--size', '8m', '--hot', '1m', '--vmsplice', '1m', '--rate', '0']);
  try {
    const { pid, pinned: pin } = w.layout;
    const outcome = movePagesToNode(pid, w.pages, SLOW);
    const where = queryPageNodes(pid, w.pages);
    const pinnedPages = pin ? (pin.end - pin.start) / 4096 : 0;
    const first = pin ? (pin.start - w.layout.base) / 4096 : 0;
    return {
      pages: w.pages.length,
      pinnedPages,
      outcome,
      pinnedWhere: histogram(where.subarray(first, first + pinnedPages)),
      otherWhere: histogram(Int32Array.from([...where.subarray(0, first), ...where.subarray(first + pinnedPages)])),
    };
  } finally {
    await w.stop();
  }
}

const [scenario, arg] = process.argv.slice(2);
const run: Record<string, () => Promise<unknown>> = {
  roundtrip: () => roundtrip(arg === '--thp'),
  enomem,
  devdax: () => devdax(arg ?? '/dev/dax1.0'),
  pinned,
};
const fn = scenario ? run[scenario] : undefined;
if (!fn) {
  process.stderr.write(`usage: migrate-probe.js ${Object.keys(run).join('|')} [arg]\n`);
  process.exit(2);
}
fn().then(
  (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
  (e) => {
    process.stderr.write(`migrate-probe ${scenario}: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
