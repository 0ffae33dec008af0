// `npm test`: every test — unit, integration (real libvirtd + QEMU on this machine) and the
// lab (a QEMU/TCG guest with a tiered 6.12 kernel). Set VMTIER_TEST_ONLY=unit|integration|lab
// to run one suite while developing; CI runs all.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { prepare, root } from './prepare.mjs';

prepare({ host: true });

const only = process.env.VMTIER_TEST_ONLY;
const suites = ['unit', 'integration', 'lab'].filter((s) => !only || only.split(',').includes(s));
const dirs = suites.map((s) => join('dist', 'test', s)).filter((d) => existsSync(join(root, d)));
const extra = process.argv.slice(2);
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=900000', ...extra, ...dirs], {
  cwd: root,
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
