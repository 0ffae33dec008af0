/**
 * bench:migrate — in the lab (TCG): MB/s of vmtier's move_pages path (src/migrate through koffi,
 * its batching and per-page bookkeeping) against a plain C move_pages loop on the same pages of
 * the same process, DRAM → slow node and back, with 4 KiB pages and with THP. Both figures and
 * their ratio come from one run. Prints a markdown table (README "The lab").
 *
 *   npm run bench:migrate [-- --mib 128 --rounds 3]
 */
import { LabSession, ensureLabBinary, ensureWorkload } from '../lab/index.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}
const mib = arg('mib', 128);
const rounds = arg('rounds', 3);

ensureWorkload();
const loop = ensureLabBinary('migrate-loop', 'bench/migrate-loop.c');
const lab = await LabSession.start({ topology: 'tiered', onProgress: (l) => process.stderr.write(`${l}\n`) });
try {
  const rows: string[] = [];
  for (const thp of ['off', 'on']) {
    const out = await lab.check(['node', 'dist/bench/migrate-guest.js', loop, String(mib), thp, String(rounds)], {
      timeoutMs: 1_800_000,
      onStderr: (s) => process.stderr.write(s),
    });
    type Dir = { toSlow: number; toFast: number };
    type Samples = { toSlow: number[]; toFast: number[] };
    const r = JSON.parse(out.trim().split('\n').pop()!) as { hugeKiB: number; vmtier: Dir; c: Dir; samples: { vmtier: Samples; c: Samples } };
    const spread = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
    const pages = thp === 'on' ? `2 MiB THP (${Math.round((r.hugeKiB / 1024 / mib) * 100)} % huge)` : '4 KiB';
    for (const dir of ['toSlow', 'toFast'] as const) {
      const v = r.vmtier[dir];
      const c = r.c[dir];
      rows.push(`| ${pages} | ${dir === 'toSlow' ? 'DRAM → slow (node 0 → 1)' : 'slow → DRAM (node 1 → 0)'} | ` +
        `${v.toFixed(0)} (${spread(r.samples.vmtier[dir])}) | ${c.toFixed(0)} (${spread(r.samples.c[dir])}) | ${(v / c).toFixed(2)} |`);
    }
  }
  console.log(`lab (TCG), ${mib} MiB footprint, batches of 1024 pages, MB/s as median (min–max) of ${rounds} rounds:\n`);
  console.log('| pages | direction | vmtier (koffi) | C loop | vmtier / C (medians) |');
  console.log('|---|---|---|---|---|');
  for (const row of rows) console.log(row);
} finally {
  await lab.close();
}
