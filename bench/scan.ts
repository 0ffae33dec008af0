/**
 * bench:scan — in the lab (TCG), CPU time of a kmod scan pass per GiB of 4 KiB pages and of
 * 2 MiB THPs against the kernel's own clear_refs walk over the same process (ratio from one
 * run), the share of the kmod pass spent decoding in TypeScript, and the TLB-flush cost.
 * kmod and clear_refs passes are interleaved round by round (bench/scan-guest.ts); the table
 * gives the ratio of the medians and the interquartile range of the per-round ratios.
 * Prints a markdown table (README "Accessed-bit tracking: the kernel module").
 *
 *   npm run bench:scan [-- --mib 512 --thp-mib 1024 --repeats 21 --thp-only 1]
 */
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { LabSession, ensureLabBinary } from '../lab/index.js';
import { repoRoot } from '../lab/paths.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}
const mib = arg('mib', 512);
// THP passes are cheap (one entry per 2 MiB): a larger footprint makes each one long enough to time.
const thpMib = arg('thp-mib', 1024);
const repeats = arg('repeats', 21);
const thpOnly = arg('thp-only', 0) === 1;
const fmtLoad = (): string => loadavg().map((x) => x.toFixed(1)).join(' ');

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
  const loadBefore = fmtLoad();
  // THP first: after a 4 KiB run the guest's memory is fragmented and THPs get scarce.
  for (const thp of thpOnly ? ['on'] : ['on', 'off']) {
    const m = thp === 'on' ? thpMib : mib;
    process.stderr.write(`bench:scan: ${m} MiB, THP ${thp}\n`);
    const out = await lab.check(['node', 'dist/bench/scan-guest.js', target, String(m), thp, String(repeats)], { timeoutMs: 1_800_000 });
    const res = JSON.parse(out.trim().split('\n').pop()!) as Record<string, Record<string, number>>;
    for (const state of ['accessed', 'idle']) {
      const r = res[state]!;
      rows.push(`| ${thp === 'on' ? '2 MiB THP' : '4 KiB'}, ${m} MiB (${Math.round(r.hugeShare! * 100)} % mapped 2 MiB) | ${state === 'accessed' ? 'all set' : 'all clear'} (${r.clearedPerPassMin === r.clearedPerPassMax ? r.clearedPerPassMin : `${r.clearedPerPassMin}–${r.clearedPerPassMax}`} cleared per kmod pass) | ` +
        `${r.kmodReadCpuMsPerGiB!.toFixed(2)} | ${r.clearRefsCpuMsPerGiB!.toFixed(2)} | **${r.ratioKmodToClearRefs!.toFixed(2)}** | ` +
        `${r.ratioPairedP25!.toFixed(2)}–${r.ratioPairedP75!.toFixed(2)} | ${Math.round(r.kmodFasterShare! * 100)} % | ${r.kmodWalkMsPerGiB!.toFixed(2)} | ` +
        `${r.kmodNoFlushReadCpuMsPerGiB!.toFixed(2)} | ${r.decodeCpuMsPerGiB!.toFixed(2)} | ${(r.decodeShare! * 100).toFixed(0)} % |`);
    }
  }
  const bad = (await lab.dmesg()).split('\n').filter((l) => /WARNING:|BUG:|Oops|Call Trace/.test(l));
  console.log(`lab (TCG), ${repeats} interleaved rounds, medians, CPU ms per GiB; host load average (1/5/15 min) ${loadBefore} before, ${fmtLoad()} after:\n`);
  console.log('| pages | A bits before the pass | kmod read+clear pass | clear_refs | kmod / clear_refs (medians) | per-round ratio, IQR | rounds kmod cheaper | kmod time inside the module (walk_ns, wall) | kmod pass, no TLB flush | TS decode of the pass | decode share of kmod total |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
  if (bad.length) console.log(`\nkernel warnings during the run:\n${bad.join('\n')}`);
} finally {
  await lab.close();
}
