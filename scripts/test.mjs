// `npm test`: every test — unit, integration (real libvirtd + QEMU on this machine) and the
// lab (a QEMU/TCG guest with a tiered 6.12 kernel). Set VMTIER_TEST_ONLY=unit|integration|lab
// (comma-separated for several) to run some suites while developing; CI runs all.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { prepare, root } from './prepare.mjs';

const SUITES = ['unit', 'integration', 'lab'];

// Checked before any set-up: a typo must not fall back to running something else.
const only = process.env.VMTIER_TEST_ONLY;
let suites = SUITES;
if (only !== undefined && only !== '') {
  const asked = only.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = asked.filter((s) => !SUITES.includes(s));
  if (unknown.length > 0 || asked.length === 0) {
    console.error(`test: unknown VMTIER_TEST_ONLY value "${only}" (use ${SUITES.join(', ')}, comma-separated)`);
    process.exit(2);
  }
  suites = SUITES.filter((s) => asked.includes(s));
}

prepare({ host: true, tests: true });

// Explicit *.test.js files: node 20 would also run helper modules found under a `test` folder.
function testFiles(dir) {
  if (!existsSync(join(root, dir))) return [];
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? testFiles(join(dir, e.name)) : e.name.endsWith('.test.js') ? [join(dir, e.name)] : []);
}
// One `node --test` run per suite, each with its own per-file limit: a lab file boots a kernel
// and runs several minutes of TCG work (the engine file took over 15 min under CI's load), while a
// unit file that runs minutes is hung. Every suite runs even after one fails, so CI reports all.
const FILE_TIMEOUT_MS = { unit: 300_000, integration: 900_000, lab: 2_400_000 };
const runs = [];
for (const s of suites) {
  const found = testFiles(join('dist', 'test', s)).sort();
  // A suite that builds to nothing (a broken build, a moved folder) must not pass silently.
  if (found.length === 0) {
    console.error(`test: suite "${s}" has no test files under dist/test/${s} (is test/${s} there, and did the build emit it?)`);
    process.exit(1);
  }
  runs.push({ suite: s, files: found });
}
const extra = process.argv.slice(2);
let status = 0;
for (const { suite, files } of runs) {
  console.log(`# test: suite ${suite}, ${files.length} files, ${FILE_TIMEOUT_MS[suite] / 1000} s per file at most`);
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', `--test-timeout=${FILE_TIMEOUT_MS[suite]}`, ...extra, ...files], {
    cwd: root,
    stdio: 'inherit',
  });
  const code = r.status ?? 1;
  if (code !== 0) console.error(`test: suite ${suite} failed (exit ${code})`);
  if (status === 0) status = code;
}
process.exit(status);
