// The module's TDP leaf decoding (kmod/vmtier_idle_spte.h, the static inline functions that
// vmtier_idle_tdp.c walks NPT and EPT tables with), compiled for user space with gcc and run on
// synthetic entries. EPT cannot run on any machine here (no VMX under TCG): this is where its
// bit handling is proven — accessed/dirty bits, the memory-type bits that sit where NPT keeps
// its A bit, 2 MiB / 1 GiB leaves, and entries KVM tracks without A/D bits.
// Needs gcc (the kernel build needs it too); skipped without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(import.meta.url), '../../../..');
const hasGcc = spawnSync('gcc', ['--version']).status === 0;

// Lines on stdin: "<ept 0|1> <spte hex> <level> <me_mask hex>"; one line out per entry.
const DRIVER = `
#include <stdio.h>
#include "vmtier_idle_spte.h"
int main(void)
{
	unsigned ept, level;
	unsigned long long spte, me;
	while (scanf("%u %llx %u %llx", &ept, &spte, &level, &me) == 4) {
		unsigned a = vti_spte_a_shift(ept);
		printf("%d %d %d %d %u %u %llx %llx\\n", vti_spte_present(spte), vti_spte_leaf(spte, level),
		       vti_spte_young(spte, ept), vti_spte_clearable(spte, ept), a, vti_spte_shift(level),
		       (unsigned long long)vti_spte_pfn(spte, me), spte & ~(1ULL << a));
	}
	return 0;
}
`;

interface Decoded { present: boolean; leaf: boolean; young: boolean; clearable: boolean; aShift: number; shift: number; pfn: bigint; cleared: bigint }
interface Entry { ept: boolean; spte: bigint; level: number; me?: bigint }

let bin = '';
function decode(entries: Entry[]): Decoded[] {
  const input = entries.map((e) => `${e.ept ? 1 : 0} ${e.spte.toString(16)} ${e.level} ${(e.me ?? 0n).toString(16)}`).join('\n') + '\n';
  const r = spawnSync(bin, { input, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split('\n').map((l) => {
    const [p, lf, y, c, a, s, pfn, cl] = l.split(' ');
    return { present: p === '1', leaf: lf === '1', young: y === '1', clearable: c === '1', aShift: Number(a), shift: Number(s), pfn: BigInt(`0x${pfn}`), cleared: BigInt(`0x${cl}`) };
  });
}

// Intel SDM EPT leaf bits: R/W/X 0-2, memory type 3-5, ignore-PAT 6, page size 7, accessed 8,
// dirty 9; bit 11 is KVM's own "present" marker, bits 52-53 its A/D-tracking type.
const R = 1n, W = 2n, X = 4n, RWX = R | W | X;
const memtype = (t: bigint): bigint => t << 3n;
const UC = 0n, WC = 1n, WT = 4n, WP = 5n, WB = 6n;
const EPT_A = 1n << 8n, EPT_D = 1n << 9n, LARGE = 1n << 7n, KVM_PRESENT = 1n << 11n, AD_DISABLED = 1n << 52n;
// AMD NPT leaves are x86 PTEs: P 0, RW 1, US 2, A 5, D 6, PS 7, NX 63.
const NPT_A = 1n << 5n, NPT_D = 1n << 6n, NX = 1n << 63n;
const pfnBits = (pfn: bigint): bigint => pfn << 12n;

test('EPT and NPT leaf decoding on synthetic entries', { skip: hasGcc ? false : 'gcc not installed' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'kmod-spte-'));
  try {
    writeFileSync(join(dir, 'driver.c'), DRIVER);
    bin = join(dir, 'driver');
    const cc = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-I', join(root, 'kmod'), '-o', bin, join(dir, 'driver.c')], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);

    const base = KVM_PRESENT | RWX | pfnBits(0x12345n);
    // Every memory type, with and without the A bit: only bit 8 decides, only bit 8 is cleared.
    for (const t of [UC, WC, WT, WP, WB]) {
      const [idle, hot] = decode([
        { ept: true, spte: base | memtype(t), level: 1 },
        { ept: true, spte: base | memtype(t) | EPT_A | EPT_D, level: 1 },
      ]);
      assert.deepEqual([idle!.present, idle!.leaf, idle!.young, idle!.clearable, idle!.shift], [true, true, false, false, 12], `EPT type ${t}, A clear`);
      assert.deepEqual([hot!.young, hot!.clearable, hot!.aShift], [true, true, 8], `EPT type ${t}, A set`);
      assert.equal(hot!.cleared, base | memtype(t) | EPT_D, 'clearing keeps the memory type and the dirty bit');
      assert.equal(hot!.pfn, 0x12345n);
    }
    // Write-back has bit 5 set: read as NPT it would look accessed, and clearing bit 5 would
    // turn WB (6) into a reserved type (2). The EPT decoder must not touch it.
    const [wbAsEpt, wbAsNpt] = decode([
      { ept: true, spte: base | memtype(WB), level: 1 },
      { ept: false, spte: base | memtype(WB), level: 1 },
    ]);
    assert.equal(wbAsEpt!.young, false);
    assert.equal(wbAsNpt!.young, true, 'the same bits read with the NPT layout (why the vendor must be right)');
    assert.equal(wbAsNpt!.cleared & memtype(7n), memtype(2n), 'NPT clearing on an EPT entry would make a reserved memory type');
    // Dirty without accessed (cannot happen with A/D on, but must not count): idle.
    assert.equal(decode([{ ept: true, spte: base | memtype(WB) | EPT_D, level: 1 }])[0]!.young, false);

    // Huge leaves: bit 7 at level 2 (2 MiB) and 3 (1 GiB); a table below that; never at 4.
    const [pmdLeaf, pmdTable, pudLeaf, pgdBit7] = decode([
      { ept: true, spte: base | memtype(WB) | LARGE | EPT_A, level: 2 },
      { ept: true, spte: base, level: 2 },
      { ept: true, spte: base | memtype(WB) | LARGE, level: 3 },
      { ept: true, spte: base | LARGE, level: 4 },
    ]);
    assert.deepEqual([pmdLeaf!.leaf, pmdLeaf!.shift, pmdLeaf!.young], [true, 21, true]);
    assert.equal(pmdTable!.leaf, false);
    assert.deepEqual([pudLeaf!.leaf, pudLeaf!.shift, pudLeaf!.young], [true, 30, false]);
    assert.equal(pgdBit7!.leaf, false);

    // KVM tracks some entries without A/D bits (EPT with A/D off): aged entries lose RWX.
    const [adOffYoung, adOffAged, adOffWithA] = decode([
      { ept: true, spte: base | memtype(WB) | AD_DISABLED, level: 1 },
      { ept: true, spte: (base & ~RWX) | memtype(WB) | AD_DISABLED, level: 1 },
      { ept: true, spte: base | memtype(WB) | AD_DISABLED | EPT_A, level: 1 },
    ]);
    assert.deepEqual([adOffYoung!.young, adOffYoung!.clearable], [true, false]);
    assert.deepEqual([adOffAged!.young, adOffAged!.clearable], [false, false]);
    assert.equal(adOffWithA!.clearable, false, 'an A/D-disabled entry is never cleared');

    // Not present: KVM's bit 11 clear (a zapped or MMIO entry).
    assert.equal(decode([{ ept: true, spte: RWX | memtype(WB) | EPT_A, level: 1 }])[0]!.present, false);

    // NPT: A is bit 5; NX and the SME C-bit are not part of the frame number.
    const cbit = 1n << 47n;
    const [nptHot, nptIdle] = decode([
      { ept: false, spte: KVM_PRESENT | 0x7n | NPT_A | NPT_D | NX | cbit | pfnBits(0xabcden), level: 1, me: cbit },
      { ept: false, spte: KVM_PRESENT | 0x7n | pfnBits(0xabcden) | LARGE, level: 2, me: cbit },
    ]);
    assert.deepEqual([nptHot!.young, nptHot!.clearable, nptHot!.aShift, nptHot!.pfn], [true, true, 5, 0xabcden]);
    assert.deepEqual([nptIdle!.young, nptIdle!.leaf, nptIdle!.shift], [false, true, 21]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
