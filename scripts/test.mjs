// `npm test`: every test — unit, integration (real libvirtd + QEMU on this machine) and the
// lab (a QEMU/TCG guest with a tiered 6.12 kernel). Set VMTIER_TEST_ONLY=unit|integration|lab
// to run one suite while developing; CI runs all.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { prepare, root } from './prepare.mjs';

prepare({ host: true });

const only = process.env.VMTIER_TEST_ONLY;
const suites = ['unit', 'integration', 'lab'].filter((s) => !only || only.split(',').includes(s));
// Explicit *.test.js files: node 20 would also run helper modules found under a `test` folder.
function testFiles(dir) {
  if (!existsSync(join(root, dir))) return [];
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? testFiles(join(dir, e.name)) : e.name.endsWith('.test.js') ? [join(dir, e.name)] : []);
}
const files = suites.flatMap((s) => testFiles(join('dist', 'test', s)).sort());
const extra = process.argv.slice(2);
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=900000', ...extra, ...files], {
  cwd: root,
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
