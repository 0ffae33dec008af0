// `npm start`: the service on its embedded defaults (SQLite under ./var, qemu:///system,
// 127.0.0.1). Extra arguments go to `vmtier serve`.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { prepare, root } from './prepare.mjs';

prepare({ host: true });
const r = spawnSync(process.execPath, [join(root, 'bin', 'vmtier.js'), 'serve', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
