/**
 * The part of bench:migrate that runs INSIDE the lab guest (bench/migrate.ts boots the lab and
 * runs this): one workload footprint, moved DRAM → node 1 and back alternately by vmtier's path
 * (src/migrate movePagesToNode: koffi, batches of 1024, per-page outcome) and by the C loop
 * (bench/migrate-loop.c) on the very same pages. Prints one JSON line with the median MB/s of
 * each direction for both, and their ratio.
 *
 *   node dist/bench/migrate-guest.js <migrate-loop binary> <MiB> <thp on|off> <rounds>
 */
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { DEFAULT_BATCH, movePagesToNode } from '../src/migrate/move.js';
import { queryPageNodes } from '../src/sys/syscalls.js';
import { startWorkload } from '../lab/guest/workload-proc.js';

const [loop, mibArg, thpArg, roundsArg] = process.argv.slice(2);
const mib = Number(mibArg ?? 128);
const thp = thpArg === 'on';
const rounds = Number(roundsArg ?? 3);
const FAST = 0;
const SLOW = 1;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

const w = await startWorkload(['--size', `${mib}m`, '--hot', '2m', '--rate', '0', '--thp', thp ? 'on' : 'off']);
try {
  const { pid, base, bytes } = w.layout;
  const mbps = (ms: number) => bytes / 1e6 / (ms / 1000);
  const allOn = (node: number) => queryPageNodes(pid, w.pages).every((s) => s === node);
  const vmtier = (node: number): number => {
    const t0 = performance.now();
    const o = movePagesToNode(pid, w.pages, node, { batch: DEFAULT_BATCH });
    const ms = performance.now() - t0;
    if (o.moved !== w.pages.length) throw new Error(`vmtier moved ${o.moved} of ${w.pages.length}: ${JSON.stringify(o.byStatus)}`);
    return mbps(ms);
  };
  const cLoop = (node: number): number => {
    const r = JSON.parse(execFileSync(loop!, [String(pid), base.toString(16), String(bytes), String(node), String(DEFAULT_BATCH)], { encoding: 'utf8' })) as { ns: number };
    if (!allOn(node)) throw new Error(`C loop left pages off node ${node}`);
    return mbps(r.ns / 1e6);
  };
  if (!allOn(FAST)) throw new Error('workload did not start on node 0');
  // One untimed round trip each first: vmtier's JIT (14x slower under TCG) and the C binary's page cache warm up.
  vmtier(SLOW); vmtier(FAST); cLoop(SLOW); cLoop(FAST);
  const res = { vmtier: { toSlow: [] as number[], toFast: [] as number[] }, c: { toSlow: [] as number[], toFast: [] as number[] } };
  for (let i = 0; i < rounds; i++) {
    // Alternate who goes first so neither always meets a warmer (or fuller) node.
    const order = i % 2 === 0 ? (['vmtier', 'c'] as const) : (['c', 'vmtier'] as const);
    for (const who of order) {
      const move = who === 'vmtier' ? vmtier : cLoop;
      res[who].toSlow.push(move(SLOW));
      res[who].toFast.push(move(FAST));
    }
    process.stderr.write(`bench:migrate: ${mib} MiB THP ${thpArg} round ${i + 1}/${rounds}\n`);
  }
  const anonHuge = execFileSync('grep', ['AnonHugePages', `/proc/${pid}/smaps_rollup`], { encoding: 'utf8' });
  const out = {
    mib, thp, rounds, pages: w.pages.length,
    hugeKiB: Number(/(\d+) kB/.exec(anonHuge)?.[1] ?? 0),
    vmtier: { toSlow: median(res.vmtier.toSlow), toFast: median(res.vmtier.toFast) },
    c: { toSlow: median(res.c.toSlow), toFast: median(res.c.toFast) },
    samples: res,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  await w.stop();
}
