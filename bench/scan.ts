/**
 * bench:scan — in the lab (TCG), CPU time of a kmod scan pass per GiB of 4 KiB pages and of
 * 2 MiB THPs against the kernel's own clear_refs walk over the same process (ratio from one
 * run), the share of the kmod pass spent decoding in TypeScript, and the TLB-flush cost.
 * Prints a markdown table (README "Accessed-bit tracking: the kernel module").
 *
 *   npm run bench:scan [-- --mib 512 --repeats 5]
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { LabSession, ensureLabBinary } from '../lab/index.js';
import { repoRoot } from '../lab/paths.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}
const mib = arg('mib', 512);
const repeats = arg('repeats', 7);

// Its own build directory: a test run building kmod/build-<release> at the same time cannot interfere.
const b = spawnSync('bash', [join(repoRoot, 'scripts/build-kmod.sh'), '--debian', '6.12', join(repoRoot, '.cache', 'lab', 'kmod-bench')], { encoding: 'utf8' });
if (b.status !== 0) {
  process.stderr.write(b.stderr);
  process.exit(1);
}
const ko = b.stdout.trim().split('\n').pop()!;
const target = ensureLabBinary('kmod-target', 'test/lab/kmod-target.c');
// no_timer_check: on a loaded host TCG can fail the kernel's boot-time IO-APIC timer check.
// Boots took over 120 s with the 2 cores shared by several lab guests: the kmod lab test's bound.
const lab = await LabSession.start({ append: ['no_timer_check'], bootTimeoutMs: 300_000, onProgress: (l) => process.stderr.write(`${l}\n`) });
try {
  await lab.check(['insmod', ko]);
  const rows: string[] = [];
  // THP first: after a 4 KiB run the guest's memory is fragmented and THPs get scarce.
  for (const thp of ['on', 'off']) {
    process.stderr.write(`bench:scan: ${mib} MiB, THP ${thp}\n`);
    const out = await lab.check(['node', 'dist/bench/scan-guest.js', target, String(mib), thp, String(repeats)], { timeoutMs: 1_200_000 });
    const res = JSON.parse(out.trim().split('\n').pop()!) as Record<string, Record<string, number>>;
    for (const state of ['accessed', 'idle']) {
      const r = res[state]!;
      rows.push(`| ${thp === 'on' ? '2 MiB THP' : '4 KiB'} (${Math.round(r.hugeShare! * 100)} % mapped 2 MiB) | ${state === 'accessed' ? 'all set' : 'all clear'} | ` +
        `${r.kmodReadCpuMsPerGiB!.toFixed(2)} | ${r.clearRefsCpuMsPerGiB!.toFixed(2)} | ${r.ratioKmodToClearRefs!.toFixed(2)} | ` +
        `${r.kmodNoFlushReadCpuMsPerGiB!.toFixed(2)} | ${r.decodeCpuMsPerGiB!.toFixed(2)} | ${(r.decodeShare! * 100).toFixed(0)} % |`);
    }
  }
  const bad = (await lab.dmesg()).split('\n').filter((l) => /WARNING:|BUG:|Oops|Call Trace/.test(l));
  console.log(`lab (TCG), ${mib} MiB footprint, median of ${repeats} passes, CPU ms per GiB:\n`);
  console.log('| pages | A bits before the pass | kmod read+clear pass | clear_refs | kmod / clear_refs | kmod pass, no TLB flush | TS decode of the pass | decode share of kmod total |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
  if (bad.length) console.log(`\nkernel warnings during the run:\n${bad.join('\n')}`);
} finally {
  await lab.close();
}
