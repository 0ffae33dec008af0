/**
 * bench:madvise — in the lab (TCG): how much of a workload's hot set and of its cold memory the
 * kernel demotes under node-0 pressure, with and without vmtier's MADV_COLD (policy
 * `madviseCold`), for the lab kernel's default LRU (MGLRU) and the classic active/inactive
 * lists. lab/guest/madvise-cold-lab.ts runs the arms; this prints the table and the ratios.
 *
 *   npm run bench:madvise [-- --reps 2 --pressure-mb 32 --lru mglru,classic]
 *   npm run bench:madvise -- --domain --reps 5 [--controlled]   # the libvirt-domain experiment: on/off
 *       pairs in one boot, with node 0's content and MGLRU generations before the hog
 */
import { parseArgs } from 'node:util';
import { LabSession, ensureWorkload } from '../lab/index.js';
import type { ArmResult, MadviseColdRun } from '../lab/guest/madvise-cold-lab.js';
import { LabServe, startLabLibvirt } from '../lab/guest/engine-lab.js';
import { runDomainArm, type DomainArmResult } from '../lab/guest/madvise-cold-domain.js';

const { values } = parseArgs({
  options: {
    reps: { type: 'string', default: '2' },
    'pressure-mb': { type: 'string', default: '32' },
    lru: { type: 'string', default: 'mglru,classic' },
    /** Add the diagnostic arm (accessed bits cleared, no advice) to every repetition. */
    'clear-refs': { type: 'boolean', default: false },
    /** The libvirt-domain experiment (lab/guest/madvise-cold-domain.ts) instead: --reps on/off pairs in one lab boot. */
    domain: { type: 'boolean', default: false },
    /** With --domain: the controlled variant (page cache dropped, demand = cold memory + pressure). */
    controlled: { type: 'boolean', default: false },
    /** With --domain: no advice while the hog runs (policy PUT with madviseCold false first). */
    'freeze-advice': { type: 'boolean', default: false },
  },
});
const reps = Number(values.reps);
const progress = (l: string) => process.stderr.write(`${l}\n`);

function pct(n: number, d: number): string {
  return d === 0 ? 'n/a' : `${((100 * n) / d).toFixed(1)} %`;
}

function summarize(arms: ArmResult[]): { hot: number; oldHot: number; once: number; pages: { hot: number; oldHot: number; once: number } } {
  const s = { hot: 0, oldHot: 0, once: 0, pages: { hot: 0, oldHot: 0, once: 0 } };
  for (const a of arms) {
    for (const k of ['hot', 'oldHot', 'once'] as const) {
      s[k] += a.after[k].node1;
      s.pages[k] += a.after[k].pages;
    }
  }
  return s;
}

async function domainBench(): Promise<void> {
  const lab = await LabSession.start({ cpu: 'EPYC,+svm,+npt', append: ['maxcpus=1'], onProgress: progress });
  try {
    const virt = await startLabLibvirt(lab);
    await lab.check('echo 1 >/sys/kernel/mm/numa/demotion_enabled && echo y >/sys/kernel/mm/lru_gen/enabled', { timeoutMs: 30_000 });
    const serve = new LabServe(lab);
    await serve.start(progress);
    const arms: DomainArmResult[] = [];
    try {
      for (let i = 0; i < reps; i++) {
        for (const on of i % 2 === 0 ? [true, false] : [false, true]) {
          const a = await runDomainArm(lab, virt, serve, on, Number(values['pressure-mb']), progress, { controlled: values.controlled, freezeAdvice: values['freeze-advice'] });
          arms.push(a);
          // One JSON line per arm, so a long run can be read while it goes on.
          console.log(`arm ${JSON.stringify({ rep: i, ...a })}`);
        }
      }
    } finally {
      await serve.stop();
    }
    console.log(`\nlab (TCG), libvirt domain (${virt.domainType}), pressure ${values['pressure-mb']} MiB beyond node 0's free memory${values.controlled ? ' plus the cold memory, page cache dropped' : ''}, ${reps} on/off pair(s) in one boot`);
    console.log('arm        | hot demoted | cold demoted        | pgdemote | hog (s) | node 0 before hog: anon act/inact, file act/inact (MiB) | gens (oldest first, anon+file MiB)');
    const mb = (kb: number | undefined) => ((kb ?? 0) / 1024).toFixed(0);
    for (const a of arms) {
      const m = a.node0.meminfoKB;
      const gens = a.node0.lruGenBefore.map((g) => `${((g.anonPages + g.filePages) / 256).toFixed(0)}`).join('/');
      console.log(`${(a.madviseCold ? 'MADV_COLD' : 'no advice').padEnd(10)} | ${`${a.after.hot.node1}/${a.after.hot.pages}`.padEnd(11)} | ` +
        `${`${a.after.cold.node1}/${a.after.cold.pages} (${pct(a.after.cold.node1, a.after.cold.pages)})`.padEnd(19)} | ` +
        `${String(a.vmstat.pgdemote_kswapd! + a.vmstat.pgdemote_direct!).padEnd(8)} | ${a.seconds.hog.toFixed(0).padEnd(7)} | ` +
        `${mb(m.Activeanon)}/${mb(m.Inactiveanon)}, ${mb(m.Activefile)}/${mb(m.Inactivefile)} | ${gens}`);
    }
  } finally {
    await lab.close();
  }
}

ensureWorkload();
if (values.domain) {
  await domainBench();
  process.exit(0);
}
const lab = await LabSession.start({ topology: 'tiered', onProgress: progress });
try {
  // Alternating order, so what one arm leaves behind does not always favour the same side.
  const arms = Array.from({ length: reps }, (_, i) => (i % 2 === 0 ? 'off,on' : 'on,off') + (values['clear-refs'] ? ',clearrefs' : '')).join(',');
  for (const lru of values.lru!.split(',')) {
    const out = await lab.run(['node', 'dist/lab/guest/madvise-cold-lab.js', '--arms', arms, '--lru', lru, '--pressure-mb', values['pressure-mb']!], {
      timeoutMs: 1_800_000, onStderr: (c) => process.stderr.write(c),
    });
    if (out.status !== 0) throw new Error(`madvise-cold-lab exited ${out.status}: ${out.stderr.slice(-2000)}`);
    const run = JSON.parse(out.stdout.trim().split('\n').pop()!) as MadviseColdRun;
    console.log(`\nlab (TCG), kernel ${run.kernel}, LRU ${run.lru}, demotion_enabled=${run.demotion}, pressure ${run.pressureMB} MiB beyond node 0's free memory, ${reps} rep(s) per arm`);
    console.log('arm            | hot set demoted | old hot set demoted | once-touched demoted | advised (MiB) | pgdemote kswapd+direct | hog pages demoted | hog time (s)');
    for (const a of run.arms) {
      const f = (k: 'hot' | 'oldHot' | 'once') => `${a.after[k].node1}/${a.after[k].pages}`.padEnd(k === 'hot' ? 15 : 19);
      console.log(`${(a.madviseCold ? 'MADV_COLD' : a.clearRefs ? 'clear_refs' : 'no madvise').padEnd(14)} | ${f('hot')} | ${f('oldHot')} | ${f('once').padEnd(20)} | ${a.lastRound.madvisedColdMB.toFixed(1).padEnd(13)} | ${String(a.vmstat.pgdemote_kswapd! + a.vmstat.pgdemote_direct!).padEnd(22)} | ${`${a.hogDemotedPages}/${a.hogMB * 256}`.padEnd(17)} | ${a.seconds.hog.toFixed(0)}`);
    }
    const on = summarize(run.arms.filter((a) => a.madviseCold));
    const off = summarize(run.arms.filter((a) => !a.madviseCold && !a.clearRefs));
    const cold = (s: typeof on) => (s.oldHot + s.once) / (s.pages.oldHot + s.pages.once);
    const hot = (s: typeof on) => s.hot / s.pages.hot;
    const ratio = (a: number, b: number) => (b === 0 ? (a === 0 ? 'n/a (none in either arm)' : 'unbounded (none without)') : (a / b).toFixed(2));
    console.log(`demoted fraction, MADV_COLD vs none: hot set ${pct(on.hot, on.pages.hot)} vs ${pct(off.hot, off.pages.hot)} (ratio ${ratio(hot(on), hot(off))}); ` +
      `cold (old hot + once-touched) ${(100 * cold(on)).toFixed(1)} % vs ${(100 * cold(off)).toFixed(1)} % (ratio ${ratio(cold(on), cold(off))}); ` +
      `old hot set ${pct(on.oldHot, on.pages.oldHot)} vs ${pct(off.oldHot, off.pages.oldHot)}`);
  }
} finally {
  await lab.close();
}
