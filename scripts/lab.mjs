// `npm run lab -- [options] <command...>`: boots the lab (an emulated tiered host, see README
// "## The lab"), runs the command inside as root in the repository directory, prints its output
// and exits with its status. Options:
//   --topology tiered|three-tier|gigantic  the memory layout (default tiered; gigantic: 4 GiB node 0,
//                                  room for --append hugepagesz=1G --append hugepages=1)
//   --kernel 6.12|6.1              the Debian kernel the lab boots (default 6.12, bookworm-backports)
//   --cpu MODEL                    QEMU -cpu model; 'EPYC,+svm,+npt' gives nested KVM (AMD NPT)
//   --append WORD                  a kernel command-line word (repeatable), e.g. --append maxcpus=1,
//                                  which nested KVM needs (two lab CPUs panic in KVM's text patching)
//   --kvm                          shorthand for --cpu EPYC,+svm,+npt --append maxcpus=1
//   --kmod                         builds kmod/ for the lab kernel here and loads it before the command
//   --timeout SECONDS              for the command (default 3600)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { root } from './prepare.mjs';

const USAGE = 'usage: npm run lab -- [--topology tiered|three-tier|gigantic] [--kernel 6.12|6.1] [--cpu MODEL] [--append WORD]... [--kvm] [--kmod] [--timeout SECONDS] <command...>';
const argv = process.argv.slice(2);
const opts = { topology: 'tiered', kernel: '6.12', cpu: undefined, append: [], kmod: false, timeoutMs: 3_600_000 };
function fail(msg) { console.error(`lab: ${msg}`); console.error(USAGE); process.exit(2); }
while (argv.length && argv[0].startsWith('--')) {
  const flag = argv.shift();
  if (flag === '--') break;
  if (flag === '--kmod') { opts.kmod = true; continue; }
  if (flag === '--kvm') { opts.cpu = 'EPYC,+svm,+npt'; opts.append.push('maxcpus=1'); continue; }
  const value = argv.shift();
  if (value === undefined) fail(`${flag} needs a value`);
  if (flag === '--topology') opts.topology = value;
  else if (flag === '--kernel') opts.kernel = value;
  else if (flag === '--cpu') opts.cpu = value;
  else if (flag === '--append') opts.append.push(...value.split(/\s+/).filter(Boolean));
  else if (flag === '--timeout') {
    opts.timeoutMs = Number(value) * 1000;
    if (!(opts.timeoutMs > 0)) fail(`--timeout takes a number of seconds, not "${value}"`);
  } else fail(`unknown option ${flag}`);
}
if (argv.length === 0) fail('no command given');
if (!['tiered', 'three-tier', 'gigantic'].includes(opts.topology)) fail(`unknown topology ${opts.topology}`);
if (!['6.12', '6.1'].includes(opts.kernel)) fail(`unknown kernel ${opts.kernel} (6.12 or 6.1)`);

// The guest runs the host's dist/ (run `npm run build` after changes). Only a missing build is made here.
const entry = join(root, 'dist', 'lab', 'index.js');
if (!existsSync(entry)) spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
if (!existsSync(entry)) { console.error('lab: dist/lab/index.js is missing: run `npm run build`'); process.exit(1); }

let ko = null;
if (opts.kmod) {
  // Built here (the guest has no compiler it could write with: its root is this machine's, read-only).
  const b = spawnSync('bash', [join(root, 'scripts', 'build-kmod.sh'), '--debian', opts.kernel], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  ko = b.status === 0 ? b.stdout.trim().split('\n').pop() : null;
  if (!ko) { console.error(`lab: building the kernel module failed (scripts/build-kmod.sh --debian ${opts.kernel})`); process.exit(1); }
}

const { withLab } = await import(pathToFileURL(entry).href);
try {
  // One argument is a shell line (so `npm run lab -- 'numactl -H | head'` works); several are an argv.
  const command = argv.length === 1 ? argv[0] : argv;
  const status = await withLab({
    topology: opts.topology,
    kernel: opts.kernel,
    cpu: opts.cpu,
    append: opts.append,
    onProgress: (l) => process.stderr.write(`${l}\n`),
  }, async (lab) => {
    if (ko) {
      const ins = await lab.run(['insmod', ko], { timeoutMs: 60_000 });
      if (ins.status !== 0) throw Object.assign(new Error(`insmod ${ko} failed: ${ins.stderr.trim()}`), { code: 'LAB_ERROR' });
      process.stderr.write(`lab: loaded ${ko}\n`);
    }
    const r = await lab.run(command, {
      timeoutMs: opts.timeoutMs,
      onStdout: (s) => process.stdout.write(s),
      onStderr: (s) => process.stderr.write(s),
    });
    return r.status;
  });
  process.exitCode = status;
} catch (e) {
  console.error(`${e.code ?? 'ERROR'}: ${e.message}`);
  process.exitCode = 1;
}
