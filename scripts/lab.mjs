// `npm run lab -- [--topology tiered|three-tier] [--cpu MODEL] [--timeout SECONDS] <command...>`:
// boots the lab (an emulated tiered host on Linux 6.12, see README "## The lab"), runs the command
// inside as root in the repository directory, prints its output and exits with its status.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './prepare.mjs';
import { pathToFileURL } from 'node:url';

const argv = process.argv.slice(2);
const opts = { topology: 'tiered', cpu: undefined, timeoutMs: 3_600_000 };
while (argv.length && argv[0].startsWith('--')) {
  const flag = argv.shift();
  if (flag === '--') break;
  const value = argv.shift();
  if (value === undefined) { console.error(`lab: ${flag} needs a value`); process.exit(2); }
  if (flag === '--topology') opts.topology = value;
  else if (flag === '--cpu') opts.cpu = value;
  else if (flag === '--timeout') opts.timeoutMs = Number(value) * 1000;
  else { console.error(`lab: unknown option ${flag}`); process.exit(2); }
}
if (argv.length === 0) {
  console.error('usage: npm run lab -- [--topology tiered|three-tier] [--cpu MODEL] [--timeout SECONDS] <command...>');
  process.exit(2);
}
if (!['tiered', 'three-tier'].includes(opts.topology)) { console.error(`lab: unknown topology ${opts.topology}`); process.exit(2); }

// The guest runs the host's dist/ (run `npm run build` after changes). Only a missing build is made
// here, and tsc's exit status is not fatal: it emits even while another file has a type error.
const entry = join(root, 'dist', 'lab', 'index.js');
if (!existsSync(entry)) spawnSync('npx', ['tsc', '-p', root], { cwd: root, stdio: 'inherit' });
if (!existsSync(entry)) { console.error('lab: dist/lab/index.js is missing: run `npm run build`'); process.exit(1); }
const { runInLab } = await import(pathToFileURL(entry).href);
try {
  // One argument is a shell line (so `npm run lab -- 'numactl -H | head'` works); several are an argv.
  const command = argv.length === 1 ? argv[0] : argv;
  const r = await runInLab({
    ...opts,
    command,
    onProgress: (l) => process.stderr.write(`${l}\n`),
    onStdout: (s) => process.stdout.write(s),
    onStderr: (s) => process.stderr.write(s),
  });
  process.exitCode = r.status;
} catch (e) {
  console.error(`${e.code ?? 'ERROR'}: ${e.message}`);
  process.exitCode = 1;
}
