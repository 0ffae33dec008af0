// scripts/test.mjs (what `npm test` runs) refuses what would make a run pass without testing:
// an unknown VMTIER_TEST_ONLY value, and a suite that builds to no test files. The real script runs
// in a scratch copy of the tree whose prepare step is a stub (set-up is proven by the fresh root).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** A scratch tree: scripts/test.mjs (the real one), a stub prepare.mjs, and the given dist test files. */
function scratch(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-test-runner-'));
  mkdirSync(join(dir, 'scripts'));
  copyFileSync(join(repoRoot, 'scripts', 'test.mjs'), join(dir, 'scripts', 'test.mjs'));
  writeFileSync(join(dir, 'scripts', 'prepare.mjs'),
    "import { join, dirname } from 'node:path'; import { fileURLToPath } from 'node:url';\n" +
    "export const root = join(dirname(fileURLToPath(import.meta.url)), '..');\n" +
    "export function prepare() { console.error('stub prepare ran'); }\n");
  for (const [path, body] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), body);
  }
  return dir;
}

const passing = "import { test } from 'node:test'; test('ok', () => {});\n";
const all = { 'dist/test/unit/a.test.js': passing, 'dist/test/integration/b.test.js': passing, 'dist/test/lab/c.test.js': passing };

function runTests(dir: string, only?: string) {
  const env = { ...process.env };
  delete env.VMTIER_TEST_ONLY;
  // Under `node --test` this is set, and a nested runner would report to us in its binary protocol.
  delete env.NODE_TEST_CONTEXT;
  if (only !== undefined) env.VMTIER_TEST_ONLY = only;
  return spawnSync(process.execPath, [join(dir, 'scripts', 'test.mjs')], { cwd: dir, env, encoding: 'utf8' });
}

test('an unknown VMTIER_TEST_ONLY value is an error before anything runs', () => {
  const dir = scratch(all);
  try {
    for (const bad of ['units', 'unit,lab2', ',']) {
      const r = runTests(dir, bad);
      assert.equal(r.status, 2, `VMTIER_TEST_ONLY=${bad}: ${r.stderr}`);
      assert.match(r.stderr, /unknown VMTIER_TEST_ONLY value/);
      assert.doesNotMatch(r.stderr, /stub prepare ran/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the named suites run, and only those', () => {
  const dir = scratch({ ...all, 'dist/test/lab/c.test.js': "import { test } from 'node:test'; test('lab', () => { throw new Error('lab ran'); });\n" });
  try {
    const r = runTests(dir, 'unit,integration');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    // One node --test run per suite, each with its own summary.
    assert.deepEqual([...r.stdout.matchAll(/^# test: suite (\w+)/gm)].map((m) => m[1]), ['unit', 'integration']);
    assert.equal([...r.stdout.matchAll(/^# pass 1$/gm)].length, 2, r.stdout);
    const withLab = runTests(dir, 'lab');
    assert.notEqual(withLab.status, 0, 'the lab suite ran and its failing test failed the run');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a failing suite fails the run, and the suites after it still run, each under its own per-file limit', () => {
  const failing = "import { test } from 'node:test'; test('bad', () => { throw new Error('unit failed'); });\n";
  const dir = scratch({ ...all, 'dist/test/unit/a.test.js': failing });
  try {
    const r = runTests(dir);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /suite unit failed/);
    // The integration and lab suites ran after the unit suite failed, with their own limits.
    assert.match(r.stdout, /^# test: suite integration, 1 files, 900 s per file at most$/m);
    assert.match(r.stdout, /^# test: suite lab, 1 files, 2400 s per file at most$/m);
    assert.equal([...r.stdout.matchAll(/^# pass 1$/gm)].length, 2, r.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a suite with no test files fails the run instead of passing silently', () => {
  const dir = scratch({ 'dist/test/unit/a.test.js': passing, 'dist/test/lab/c.test.js': passing, 'dist/test/integration/helper.js': '' });
  try {
    const r = runTests(dir);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /suite "integration" has no test files/);
    assert.doesNotMatch(r.stdout, /pass \d/, 'nothing ran');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
