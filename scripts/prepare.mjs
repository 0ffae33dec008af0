// Shared by `npm start` and `npm test`: installs what is missing (npm dependencies,
// the build, Debian packages and libvirt services), so both work on a fresh machine.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, statSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Runs one set-up step; on failure names the step and stops. */
function run(step, cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
  if (r.error || r.status !== 0) {
    console.error(`prepare: ${step} failed: \`${cmd} ${args.join(' ')}\` ${r.error ? r.error.message : `exited ${r.status ?? r.signal}`}`);
    process.exit(r.status || 1);
  }
}

function newestMtime(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}

export function prepare({ host = true, tests = false } = {}) {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 20) {
    console.error(`prepare: Node.js ${process.versions.node} is too old: vmtier needs Node.js 20 or newer`);
    process.exit(1);
  }
  const lock = join(root, 'package-lock.json');
  if (!existsSync(join(root, 'node_modules', '.package-lock.json')) ||
      statSync(lock).mtimeMs > statSync(join(root, 'node_modules', '.package-lock.json')).mtimeMs) {
    console.error('prepare: installing npm dependencies');
    run('installing npm dependencies', 'npm', ['ci', '--no-audit', '--no-fund']);
  }
  const stamp = join(root, 'dist', 'src', 'cli.js');
  const srcT = Math.max(newestMtime(join(root, 'src')), newestMtime(join(root, 'test')), newestMtime(join(root, 'bench')), newestMtime(join(root, 'lab')));
  if (!existsSync(stamp) || statSync(stamp).mtimeMs < srcT || process.env.CI) {
    console.error('prepare: building');
    run('the build', 'npm', ['run', 'build', '--silent']);
  }
  if (host) run('host set-up (Debian packages, libvirtd)', 'bash', [join(root, 'scripts', 'ensure-host.sh'), ...(tests ? ['--tests'] : [])]);
}

export { execFileSync };
