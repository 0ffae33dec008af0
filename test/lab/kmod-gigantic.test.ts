// The vmtier_idle module on 1 GiB leaves, in a lab that can hold a 1 GiB page: the 'gigantic'
// topology (qemu-profiles/lab-gigantic.yaml, a 4 GiB DRAM node) booted with `hugepagesz=1G
// hugepages=1`. Process mode on a private 1 GiB hugetlb mapping (test/lab/kmod-target.c
// "gigantic"): one 1 GiB record with the right accessed state, reads of the documented minimum
// size making progress from the leaf's start and from inside it, and `vmtier scan --tracker kmod`
// reporting the hot set per 1 GiB unit. KVM mode (nested kvm_amd, NPT): a VM whose RAM is one
// 1 GiB hugetlb page (test/lab/kmod-vmm.c "gigantic") is mapped by a 1 GiB NPT leaf, read as one
// 1 GiB record. One boot for every case; the machine holds one 1 GiB page, so each case waits
// for its target to exit (and free the page) before the next starts. Every case ends with the
// guest's dmesg checked.
import { before, after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LabSession, ensureLabBinary } from '../../lab/index.js';
import { BAD_DMESG, buildKmod, namedJson } from '../helpers/kmod-lab.js';

const GIB = 2 ** 30;
const PAGES_PER_GIB = GIB / 4096;
/** kmod/vmtier_idle.h VTI_MIN_READ, the documented minimum read (kmod/README.md). */
const MIN_READ = 32;
// Flags of struct vmtier_idle_target (kmod/vmtier_idle_uapi.h).
const F_CLEAR = 1;
const F_KVM = 4;
const F_PROCESS = 8;
// Boots took over 120 s with the 2 cores shared by several lab guests.
const BOOT_MS = 400_000;
const NEEDS_CLEAR = '6.1 has no CONFIG_PAGE_IDLE_FLAG: the module refuses to clear A bits there (test/lab/kmod.test.ts); runs on 6.12';
const KERNELS = (process.env.VMTIER_KMOD_GIGANTIC_KERNELS ?? '6.12').split(',') as Array<'6.12' | '6.1'>;

const hex = (expr: string): string => `$(printf '0x%x' $((${expr})))`;

for (const kernel of KERNELS) describe(`kmod on 1 GiB leaves in the lab (Debian ${kernel}, lab-gigantic, hugepagesz=1G)`, { timeout: 1_800_000 }, () => {
  let lab: LabSession;
  let target = '';
  let vmm = '';
  let abi = '';
  const canClear = kernel === '6.12';

  async function assertCleanDmesg(): Promise<void> {
    const bad = (await lab.dmesg()).split('\n').filter((l) => BAD_DMESG.test(l));
    assert.deepEqual(bad, [], 'kernel warnings in the lab guest');
  }

  /**
   * Starts `command` (which prints {"base":"0x.."} first), waits for its base address, runs
   * `body` (shell, $p = pid, $b = base), then kills it and waits until it is gone, so that its
   * 1 GiB page is free for the next case.
   */
  async function withTarget(name: string, command: string, body: string[], timeoutMs = 300_000): Promise<Record<string, any>> {
    return namedJson(await lab.check([
      `rm -f /tmp/g-${name}.json /tmp/g-${name}.err`,
      `${command} > /tmp/g-${name}.json 2>/tmp/g-${name}.err & p=$!`,
      `while ! grep -q '"base"' /tmp/g-${name}.json 2>/dev/null; do kill -0 $p 2>/dev/null || { cat /tmp/g-${name}.err >&2; exit 1; }; sleep 0.1; done`,
      `b=$(sed -n 's/.*"base":"\\(0x[0-9a-f]*\\)".*/\\1/p' /tmp/g-${name}.json)`,
      `printf 'base {"base":"%s"}\\n' "$b"`,
      ...body,
      'kill -9 $p 2>/dev/null; wait $p 2>/dev/null; true',
    ].join('\n'), { timeoutMs }));
  }

  before(async () => {
    const ko = buildKmod(kernel);
    target = ensureLabBinary('kmod-target', 'test/lab/kmod-target.c');
    vmm = ensureLabBinary('kmod-vmm', 'test/lab/kmod-vmm.c');
    abi = ensureLabBinary('kmod-abi', 'test/lab/kmod-abi.c');
    // Nested kvm_amd needs the EPYC model with SVM/NPT (it has pdpe1gb, so 1 GiB pages too) and
    // one lab CPU (kmod.test.ts says why).
    lab = await LabSession.start({
      kernel, topology: 'gigantic', cpu: 'EPYC,+svm,+npt', bootTimeoutMs: BOOT_MS,
      append: ['no_timer_check', 'maxcpus=1', 'hugepagesz=1G', 'hugepages=1'],
    });
    await lab.check(['insmod', ko]);
    await lab.check(['test', '-c', '/dev/vmtier_idle']);
  });

  after(async () => {
    await lab?.close();
  });

  test('the gigantic lab holds one 1 GiB hugetlb page on node 0, with the slow node of the tiered lab', async () => {
    const out = await lab.check([
      'cat /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages',
      'cat /sys/devices/system/node/node0/hugepages/hugepages-1048576kB/nr_hugepages',
      'cat /sys/devices/system/node/online',
    ].join('\n'));
    assert.deepEqual(out.trim().split('\n'), ['1', '1', '0-1']);
    await assertCleanDmesg();
  });

  test(`process mode: a 1 GiB hugetlb mapping is one 1 GiB record${canClear ? '; accessed, idle after a clearing pass, accessed once touched again' : ', accessed'}`, async () => {
    const end = hex('b + (1 << 30)');
    const body = [
      `echo "fresh $(${abi} walk $p 0 $b ${end} 65536)"`,
    ];
    if (canClear) {
      body.push(
        `echo "clearing $(${abi} walk $p ${F_CLEAR} $b ${end} 65536)"`,
        `echo "untouched $(${abi} walk $p 0 $b ${end} 65536)"`,
        // SIGHUP: the target writes every page again and says "touched" on stderr.
        'kill -HUP $p',
        `while ! grep -q touched /tmp/g-proc.err; do sleep 0.1; done`,
        `echo "touched $(${abi} walk $p 0 $b ${end} 65536)"`,
      );
    }
    const out = await withTarget('proc', `${target} 1024 gigantic`, body);
    const base = Number.parseInt(out.base.base, 16);
    assert.equal(base % GIB, 0, `hugetlb mapping at ${out.base.base}, not 1 GiB aligned`);
    const one = (w: Record<string, any>, accessed: boolean, what: string) => {
      assert.equal(w.errno, 0, what);
      assert.equal(w.reads, 1, `${what}: one read`);
      assert.equal(w.gigantic, 1, `${what}: one 1 GiB record`);
      assert.equal(w.huge, PAGES_PER_GIB, what);
      assert.equal(w.present, PAGES_PER_GIB, what);
      assert.equal(w.accessed, accessed ? PAGES_PER_GIB : 0, `${what}: ${accessed ? 'accessed' : 'idle'}`);
    };
    one(out.fresh, true, 'after the first touch');
    if (canClear) {
      one(out.clearing, true, 'the clearing pass');
      assert.equal(out.clearing.cleared, 1, 'one A bit cleared: the PUD leaf');
      one(out.untouched, false, 'not touched since the clearing pass');
      one(out.touched, true, 'touched again');
    }
    await assertCleanDmesg();
  });

  test(`reads of the documented minimum (${MIN_READ} bytes) make progress over a 1 GiB leaf, from its start and from inside it${canClear ? '; the leaf is cleared once, by the read reaching its end' : ''}`, async (t) => {
    // The unaligned range starts 1 MiB + 4 KiB into the leaf: it is described per 4 KiB page
    // (huge records are aligned), and a 32-byte read holds few of those.
    const inside = 'b + (1 << 20) + 4096';
    const end = hex('b + (1 << 30)');
    const out = await withTarget('minread', `${target} 1024 gigantic`, [
      `echo "aligned $(${abi} walk $p 0 $b ${end} ${MIN_READ})"`,
      `echo "inside $(${abi} walk $p ${canClear ? F_CLEAR : 0} ${hex(inside)} ${end} ${MIN_READ})"`,
      `echo "after $(${abi} walk $p 0 $b ${end} ${MIN_READ})"`,
    ]);
    const base = Number.parseInt(out.base.base, 16);
    const insidePages = (GIB - (1 << 20) - 4096) / 4096;
    t.diagnostic(`kmod 1 GiB lab (TCG), process mode, ${MIN_READ}-byte reads: ${out.aligned.reads} read(s) from the leaf's start, ${out.inside.reads} from 1 MiB + 4 KiB inside it (errno ${out.aligned.errno}/${out.inside.errno})`);
    assert.equal(out.aligned.errno, 0);
    assert.equal(Number.parseInt(out.aligned.reached, 16), base + GIB, `stopped at ${out.aligned.reached} after ${out.aligned.reads} reads`);
    assert.equal(out.aligned.gigantic, 1, 'from the leaf\'s start: one 1 GiB record');
    assert.equal(out.aligned.reads, 1);
    assert.equal(out.inside.errno, 0);
    assert.equal(Number.parseInt(out.inside.reached, 16), base + GIB, `from inside the leaf: stopped at ${out.inside.reached} after ${out.inside.reads} reads`);
    assert.equal(out.inside.present, insidePages, 'every 4 KiB of the rest of the leaf described');
    assert.equal(out.inside.accessed, insidePages);
    assert.equal(out.inside.gigantic, 0, 'a range cut inside the leaf is described per 4 KiB page');
    assert.ok(out.inside.reads > 1, `${out.inside.reads} reads`);
    if (canClear) {
      assert.equal(out.inside.cleared, 1, 'cleared once, by the read that reached the leaf\'s end');
      assert.equal(out.after.accessed, 0, 'idle after that pass');
    } else {
      assert.equal(out.after.accessed, PAGES_PER_GIB);
    }
    assert.equal(out.after.gigantic, 1);
    await assertCleanDmesg();
  });

  test('a 1 GiB leaf cut by two adjacent ranges reads accessed in both; only the read reaching its end clears it', { skip: canClear ? false : NEEDS_CLEAR }, async () => {
    const half = hex('b + (512 << 20)');
    const end = hex('b + (1 << 30)');
    const out = await withTarget('split', `${target} 1024 gigantic`, [
      `echo "first $(${abi} walk $p ${F_CLEAR} $b ${half} 65536)"`,
      `echo "second $(${abi} walk $p ${F_CLEAR} ${half} ${end} 65536)"`,
      `echo "after $(${abi} walk $p 0 $b ${end} 65536)"`,
    ]);
    const halfPages = PAGES_PER_GIB / 2;
    assert.deepEqual([out.first.accessed, out.first.present, out.first.cleared], [halfPages, halfPages, 0], 'the first half reports it accessed and leaves the A bit');
    assert.deepEqual([out.second.accessed, out.second.present, out.second.cleared], [halfPages, halfPages, 1], 'the second half still sees it accessed, and clears it');
    assert.deepEqual([out.after.accessed, out.after.gigantic], [0, 1], 'cleared once per pass: the next read sees the leaf idle');
    await assertCleanDmesg();
  });

  test(`\`vmtier scan --tracker kmod --json\` reports a 1 GiB mapping per 1 GiB unit: one byte written per 20 ms makes the whole GiB hot, an untouched one reads idle${canClear ? '' : ' (6.1: refuses)'}`, { timeout: 600_000 }, async (t) => {
    // The CLI prints pretty JSON: joined into one line for namedJson; stderr without quotes.
    const scan = (name: string) => [
      't0=$(date +%s%N)',
      `node bin/vmtier.js scan --pid $p --tracker kmod --scans 3 --interval-ms 500 --range "$b-${hex('b + (1 << 30)')}" --json >/tmp/g-${name}.scan 2>/tmp/g-${name}.scanerr; s=$?`,
      `echo "${name}Status {\\"status\\":$s,\\"err\\":\\"$(tr -d '\\n"\\\\' </tmp/g-${name}.scanerr | cut -c1-400)\\"}"`,
      `echo "${name}Ms {\\"ms\\":$((($(date +%s%N) - t0) / 1000000))}"`,
      `[ $s -eq 0 ] && echo "${name} $(tr -d '\\n' </tmp/g-${name}.scan)"`,
      'true',
    ];
    const hot = await withTarget('clihot', `${target} 1024 gigantic-hot`, scan('hot'));
    const idle = await withTarget('cliidle', `${target} 1024 gigantic`, scan('idle'));
    t.diagnostic(`kmod 1 GiB lab (TCG): vmtier scan (3 scans 500 ms apart, node start included) ${hot.hotMs.ms} ms hot, ${idle.idleMs.ms} ms idle`);
    if (!canClear) {
      assert.notEqual(hot.hotStatus.status, 0);
      assert.match(hot.hotStatus.err, /CONFIG_PAGE_IDLE_FLAG/);
      return;
    }
    for (const [r, count] of [[hot, 3], [idle, 0]] as const) {
      const name = count ? 'hot' : 'idle';
      assert.equal(r[`${name}Status`].status, 0, r[`${name}Status`].err);
      const base = Number.parseInt(r.base.base, 16);
      assert.equal(r[name].tracker, 'kmod');
      assert.deepEqual(r[name].ranges, [{ start: `0x${base.toString(16)}`, end: `0x${(base + GIB).toString(16)}`, count }], name);
    }
    await assertCleanDmesg();
  });

  test(`KVM mode: a VM backed by a 1 GiB page is mapped by a 1 GiB NPT leaf, read as one 1 GiB record${canClear ? ', cleared and seen accessed again by the guest\'s writes while the process page tables stay idle' : ''}; ${MIN_READ}-byte reads make progress over it`, { timeout: 600_000 }, async (t) => {
    await lab.check(['modprobe', 'kvm_amd']);
    assert.equal((await lab.check(['cat', '/sys/module/kvm_amd/parameters/npt'])).trim(), 'Y');
    const end = hex('b + (1 << 30)');
    const body = [
      // Until the guest's first write faulted its RAM in.
      't=0',
      `while w=$(${abi} walk $p ${F_KVM} $b ${end} 65536); ! echo "$w" | grep -q '"present":${PAGES_PER_GIB},'; do t=$((t + 1)); [ $t -gt 600 ] && break; sleep 0.2; done`,
      `echo "warm $w"`,
      `echo "minAligned $(${abi} walk $p ${F_KVM} $b ${end} ${MIN_READ})"`,
      `echo "minInside $(${abi} walk $p ${F_KVM} ${hex('b + (1 << 20) + 4096')} ${end} ${MIN_READ})"`,
    ];
    if (canClear) {
      body.push(
        `echo "first $(${abi} walk $p ${F_KVM | F_CLEAR} $b ${hex('b + (512 << 20)')} 65536)"`,
        `echo "second $(${abi} walk $p ${F_KVM | F_CLEAR} ${hex('b + (512 << 20)')} ${end} 65536)"`,
        `echo "processClear $(${abi} walk $p ${F_PROCESS | F_CLEAR} $b ${end} 65536)"`,
        'sleep 1',
        `echo "kvmClear $(${abi} walk $p ${F_KVM | F_CLEAR} $b ${end} 65536)"`,
        'sleep 1',
        `echo "kvmAgain $(${abi} walk $p ${F_KVM} $b ${end} 65536)"`,
        `echo "process $(${abi} walk $p ${F_PROCESS} $b ${end} 65536)"`,
      );
    }
    // 1 GiB of guest RAM, its hot loop over 4 MiB at 512 MiB.
    const out = await withTarget('kvm', `${vmm} 1024 512 4 gigantic`, body, 400_000);
    assert.equal(Number.parseInt(out.base.base, 16) % GIB, 0);
    const w = out.warm;
    assert.equal(w.errno, 0);
    assert.equal(w.present, PAGES_PER_GIB, `guest RAM present in the NPT: ${JSON.stringify(w)}`);
    assert.ok(w.lockTakes >= 1, 'read through the TDP tables (mmu_lock taken)');
    assert.equal(w.gigantic, 1, `a 1 GiB NPT leaf: ${JSON.stringify(w)}`);
    assert.equal(w.accessed, PAGES_PER_GIB);
    t.diagnostic(`kmod 1 GiB lab (TCG), NPT, ${MIN_READ}-byte reads: ${out.minAligned.reads} read(s) from the leaf's start, ${out.minInside.reads} from 1 MiB + 4 KiB inside it`);
    const base = Number.parseInt(out.base.base, 16);
    assert.deepEqual([out.minAligned.errno, Number.parseInt(out.minAligned.reached, 16), out.minAligned.gigantic], [0, base + GIB, 1]);
    assert.deepEqual([out.minInside.errno, Number.parseInt(out.minInside.reached, 16), out.minInside.present], [0, base + GIB, (GIB - (1 << 20) - 4096) / 4096]);
    if (canClear) {
      // The guest writes at 512 MiB all the time, so only "the first half did not clear" tells.
      assert.deepEqual([out.first.accessed, out.first.cleared], [PAGES_PER_GIB / 2, 0], 'a read stopping inside the NPT leaf leaves its A bit');
      assert.deepEqual([out.second.accessed, out.second.cleared], [PAGES_PER_GIB / 2, 1], 'the read reaching its end clears it');
      assert.equal(out.processClear.gigantic, 1, 'the host maps it with one PUD leaf too');
      assert.equal(out.kvmClear.cleared, 1, 'one NPT A bit cleared');
      assert.equal(out.kvmAgain.gigantic, 1);
      assert.equal(out.kvmAgain.accessed, PAGES_PER_GIB, 'the guest\'s writes set the NPT leaf\'s A bit again');
      assert.equal(out.process.accessed, 0, 'the guest\'s writes never reach the process page tables');
    }
    await assertCleanDmesg();
  });
});
