// The module's real encoder (kmod/vmtier_idle_enc.c), compiled for user space with a few
// stand-in kernel headers, against the TypeScript decoder: random walks of every shape the
// walkers produce (4 KiB runs, aligned and unaligned 2 MiB and 1 GiB ranges, whole and partial
// PTE tables, skipped gaps) must decode to exactly the per-page states that were encoded.
// Needs gcc (the kernel build needs it too); skipped without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeKmodStream, PageState } from '../../src/scan/kmod-stream.js';
import { rng } from '../helpers/rng.js';

const root = resolve(fileURLToPath(import.meta.url), '../../../..');
const hasGcc = spawnSync('gcc', ['--version']).status === 0;

const SHIMS: Record<string, string> = {
  'linux/types.h': '#include <stdint.h>\n#include <stdbool.h>\n#include <stddef.h>\ntypedef int32_t __s32; typedef uint32_t __u32; typedef uint64_t __u64;\n' +
    'typedef uint8_t u8; typedef uint32_t u32; typedef uint64_t u64;\n',
  'linux/kernel.h': '#include <linux/types.h>\n#include <stdio.h>\n#include <stdlib.h>\n' +
    '#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))\n#define IS_ALIGNED(x, a) (((x) & ((typeof(x))(a) - 1)) == 0)\n',
  'linux/bug.h': '#define WARN_ON_ONCE(c) ({ int __c = !!(c); if (__c) { fprintf(stderr, "WARN_ON_ONCE %s\\n", #c); abort(); } __c; })\n',
  'linux/mm.h': '#define PAGE_SHIFT 12\n#define PAGE_SIZE (1UL << PAGE_SHIFT)\n#define PMD_SHIFT 21\n#define PMD_SIZE (1UL << PMD_SHIFT)\n' +
    '#define PUD_SHIFT 30\n#define PTRS_PER_PTE 512\n',
  'linux/mm_types.h': 'struct mm_struct;\n',
  'linux/ioctl.h': '#define _IOW(t, n, s) 0\n#define _IOR(t, n, s) 0\n',
};

// Lines on stdin: "I start" | "R start end shift state" | "P start n s0 s1 ..." | "F stop" (prints hex).
const DRIVER = `
#include <linux/kernel.h>
#include "vmtier_idle.h"
int main(void)
{
	static u8 buf[1 << 20], states[512];
	struct vti_enc e;
	char op;
	unsigned long a, b, c, d;
	while (scanf(" %c", &op) == 1) {
		if (op == 'I') { scanf("%lu", &a); vti_enc_init(&e, buf, sizeof(buf), a); }
		else if (op == 'R') { scanf("%lu %lu %lu %lu", &a, &b, &c, &d); vti_enc_range(&e, a, b, c, d); }
		else if (op == 'P') {
			scanf("%lu %lu", &a, &b);
			for (unsigned long i = 0; i < b; i++) { scanf("%lu", &c); states[i] = c; }
			vti_enc_ptes(&e, a, states, b);
		} else if (op == 'F') {
			scanf("%lu", &a);
			size_t n = vti_enc_finish(&e, a);
			for (size_t i = 0; i < n; i++) printf("%02x", buf[i]);
			printf("\\n");
		}
	}
	return 0;
}
`;

const K = 4096;
const M2 = 2 * 1024 * 1024;
const G1 = 1024 * 1024 * 1024;
const BASE = 0x7f0000000000;


interface Walk { script: string[]; state: Uint8Array; shift: Uint8Array; stop: number }

/** A random walk over up to 5 GiB, built the way the walkers call the encoder. */
function randomWalk(seed: number): Walk {
  const r = rng(seed);
  const int = (n: number): number => Math.floor(r() * n);
  const span = 5 * G1;
  const state = new Uint8Array(span / K).fill(PageState.NotPresent);
  const shift = new Uint8Array(span / K);
  const script = [`I ${BASE}`];
  let cur = BASE;
  const mark = (s: number, e: number, st: number, sh: number): void => {
    for (let a = s; a < e; a += K) {
      state[(a - BASE) / K] = st;
      shift[(a - BASE) / K] = st === PageState.NotPresent ? 0 : sh;
    }
  };
  for (let step = 0; step < 40 && cur < BASE + span - 2 * G1 - 64 * M2; step++) {
    const kind = int(7);
    const st = int(3);
    if (kind === 0) {
      cur += (1 + int(600)) * K; // a gap: nothing said, SET_ADDR follows
    } else if (kind === 1) {
      const n = 1 + int(100);
      script.push(`R ${cur} ${cur + n * K} 12 ${st}`);
      mark(cur, cur + n * K, st, 12);
      cur += n * K;
    } else if (kind === 2 || kind === 3) {
      // A 2 MiB leaf or run of leaves; unaligned or partial ones fall back to 4 KiB units.
      const aligned = kind === 2;
      const s = aligned ? Math.ceil(cur / M2) * M2 : cur;
      const e = aligned ? s + (1 + int(20)) * M2 : s + (1 + int(700)) * K;
      script.push(`R ${s} ${e} 21 ${st}`);
      mark(s, e, st, aligned || (s % M2 === 0 && e % M2 === 0) ? 21 : 12);
      cur = e;
    } else if (kind === 4 && int(4) === 0) {
      const s = Math.ceil(cur / G1) * G1;
      script.push(`R ${s} ${s + G1} 30 ${st}`);
      // 1 GiB holes are not spelled out: the pages stay not present either way.
      mark(s, s + G1, st, 30);
      cur = s + G1;
    } else {
      // A PTE table: whole (aligned, 512 entries; sometimes uniform) or the tail of one.
      const whole = int(2) === 0;
      const s = whole ? Math.ceil(cur / M2) * M2 : cur;
      const n = whole ? 512 : Math.min(1 + int(300), (Math.floor(s / M2) * M2 + M2 - s) / K);
      const uniform = int(3);
      const states = Array.from({ length: n }, () => (uniform === 0 ? PageState.Idle : uniform === 1 ? PageState.NotPresent : int(3)));
      script.push(`P ${s} ${n} ${states.join(' ')}`);
      states.forEach((x, i) => mark(s + i * K, s + (i + 1) * K, x, 12));
      cur = s + n * K;
    }
  }
  const stop = cur + int(3) * K;
  script.push(`F ${stop}`);
  return { script, state, shift, stop };
}

test('the C encoder and the TS decoder agree on 150 random walks', { skip: !hasGcc && 'no gcc' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-kmod-enc-'));
  try {
    for (const [name, text] of Object.entries(SHIMS)) {
      mkdirSync(join(dir, 'inc', 'linux'), { recursive: true });
      writeFileSync(join(dir, 'inc', name), text);
    }
    writeFileSync(join(dir, 'driver.c'), DRIVER);
    const bin = join(dir, 'enc');
    const cc = spawnSync('gcc', ['-O1', '-Wall', '-Werror', '-Wno-unused-result', '-I', join(dir, 'inc'), '-I', join(root, 'kmod'),
      '-o', bin, join(dir, 'driver.c'), join(root, 'kmod', 'vmtier_idle_enc.c')], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const walks = Array.from({ length: 150 }, (_, i) => randomWalk(i + 1));
    const run = spawnSync(bin, { input: walks.map((w) => w.script.join('\n')).join('\n') + '\n', encoding: 'utf8', maxBuffer: 1 << 28 });
    assert.equal(run.status, 0, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines.length, walks.length);
    const kinds = new Set<number>();
    walks.forEach((w, wi) => {
      const bytes = Uint8Array.from(Buffer.from(lines[wi]!, 'hex'));
      for (let i = 0; i < bytes.length; i += bytes[i] === 0xa0 ? 9 : 1) kinds.add(bytes[i]! >> 4);
      const gotState = new Uint8Array(w.state.length).fill(PageState.NotPresent);
      const gotShift = new Uint8Array(w.state.length);
      const end = decodeKmodStream(bytes, BASE, BASE + w.state.length * K, (s, e, st, sh) => {
        for (let a = s; a < e; a += K) {
          gotState[(a - BASE) / K] = st;
          gotShift[(a - BASE) / K] = sh;
        }
      });
      assert.equal(end, w.stop, `walk ${wi + 1}: end`);
      for (let i = 0; i < (w.stop - BASE) / K; i++) {
        if (gotState[i] !== w.state[i] || gotShift[i] !== w.shift[i]) {
          assert.fail(`walk ${wi + 1}: page 0x${(BASE + i * K).toString(16)}: state ${gotState[i]} shift ${gotShift[i]}, encoded ${w.state[i]} shift ${w.shift[i]}`);
        }
      }
    });
    // Every record type the module can emit showed up (0xa = SET_ADDR).
    assert.deepEqual([...kinds].sort((a, b) => a - b), [0x0, 0x1, 0x2, 0x5, 0x6, 0x7, 0x8, 0x9, 0xa, 0xb]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
