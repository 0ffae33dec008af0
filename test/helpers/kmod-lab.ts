// What the kernel-module lab tests share (test/lab/kmod.test.ts, test/lab/kmod-gigantic.test.ts):
// the module's build against Debian's headers, the dmesg lines that mean the kernel complained,
// and the "name {json}" lines their guest scripts print.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../lab/paths.js';

/** A kernel warning, oops, lockup or sanitizer report: any of these in dmesg fails a case. */
export const BAD_DMESG = /WARNING:|BUG:|Oops|general protection|Call Trace|RIP:|refcount_t:|list_(add|del) corruption|sleeping function called|soft lockup|rcu_\w+ (self-)?detected stall|hung_task|UBSAN|KASAN/;

/** Builds kmod/ against Debian's `which` headers (scripts/build-kmod.sh) and returns the .ko path. */
export function buildKmod(which: '6.1' | '6.12'): string {
  const r = spawnSync('bash', [join(repoRoot, 'scripts/build-kmod.sh'), '--debian', which], { encoding: 'utf8', cwd: repoRoot });
  assert.equal(r.status, 0, `build against ${which} headers failed:\n${r.stderr.slice(-4000)}`);
  const ko = r.stdout.trim().split('\n').pop()!;
  assert.ok(existsSync(ko), `${ko} missing after the ${which} build`);
  return ko;
}

/** Lines "name {json}" printed by a guest shell script, as an object. */
/* eslint-disable-next-line @typescript-eslint/no-explicit-any */
export function namedJson(stdout: string): Record<string, any> {
  /* eslint-disable-next-line @typescript-eslint/no-explicit-any */
  const out: Record<string, any> = {};
  for (const l of stdout.trim().split('\n')) {
    const m = /^(\w+) (\{.*\})$/.exec(l.trim());
    if (m) out[m[1]!] = JSON.parse(m[2]!);
  }
  return out;
}
