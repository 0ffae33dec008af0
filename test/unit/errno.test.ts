// One errno table (src/errno.ts, on the ground floor): its numbers are Linux x86-64's — checked
// against the numbers written out here and against the platform's own (node's os.constants.errno)
// — and no other file in src defines an errno number (a named constant, a table entry, a literal
// compared with an errno, or a literal errno given to KernelError).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { SRC, sourceFiles } from '../helpers/source-files.js';
import { ERRNO, errnoName, errnoNumber } from '../../src/errno.js';

// asm-generic/errno-base.h and errno.h, as Linux uses them on x86-64.
const LINUX_X86_64: Record<string, number> = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EINTR: 4, EIO: 5, E2BIG: 7, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14,
  EBUSY: 16, EEXIST: 17, ENODEV: 19, EINVAL: 22, ENOTTY: 25, ENOSPC: 28, EROFS: 30, ENOSYS: 38, EOPNOTSUPP: 95,
};

test('the errno table holds the Linux x86-64 numbers of every errno vmtier names', () => {
  assert.deepEqual({ ...ERRNO }, LINUX_X86_64);
  if (process.platform === 'linux' && process.arch === 'x64') {
    for (const [name, n] of Object.entries(ERRNO)) assert.equal(n, (constants.errno as Record<string, number>)[name], name);
  }
  assert.equal(new Set(Object.values(ERRNO)).size, Object.keys(ERRNO).length, 'one name per number');
});

test('names and numbers both ways; move_pages reports errnos negated', () => {
  assert.equal(errnoName(16), 'EBUSY');
  assert.equal(errnoName(-16), 'EBUSY');
  assert.equal(errnoName(95), 'EOPNOTSUPP');
  assert.equal(errnoName(200), 'errno 200');
  assert.equal(errnoNumber('ESRCH'), 3);
  assert.equal(errnoNumber('toString'), undefined);
  assert.equal(errnoNumber('EWHAT'), undefined);
});


/** Where a source text defines or hard-codes an errno number, as "pattern: excerpt". */
function errnoDefinitions(text: string): string[] {
  const names = Object.keys(constants.errno).join('|');
  const patterns: Array<[string, RegExp]> = [
    ['named constant or table entry', new RegExp(`\\b(?:${names})\\s*[:=]\\s*-?\\d+`, 'g')],
    ['number-to-name table', /\b\d+\s*:\s*'E[A-Z0-9]+'/g],
    ['literal compared with an errno', /\berrno\s*[!=]==?\s*-?\d+/g],
    ['literal errno given to KernelError', /new KernelError\(\s*[^,()]+,\s*\d+/g],
    ['literal case named in a comment', /\bcase\s+-?\d+\s*:\s*\/\/\s*E[A-Z]/g],
  ];
  return patterns.flatMap(([what, re]) => [...text.matchAll(re)].map((m) => `${what}: ${m[0]}`));
}

test('no file in src but src/errno.ts defines an errno number', () => {
  const found = sourceFiles()
    .filter((f) => relative(SRC, f) !== 'errno.ts')
    .flatMap((f) => errnoDefinitions(readFileSync(f, 'utf8')).map((d) => `${relative(SRC, f)}: ${d}`));
  assert.deepEqual(found, []);
});

test('the check sees each form it forbids', () => {
  const forms = ['const ESRCH = 3;', "{ EBUSY: 16 }", "{ 16: 'EBUSY' }", 'if (e.errno === 12) x();', "new KernelError('x', 13, 'm')", 'case 16: // EBUSY'];
  for (const f of forms) assert.equal(errnoDefinitions(f).length, 1, f);
  assert.deepEqual(errnoDefinitions("import { ESRCH } from '../errno.js'; if (e.errno === ESRCH) throw new KernelError('x', ESRCH);"), []);
});
