// Part of `npm run build`: links node_modules/.bin/vmtier to bin/vmtier.js, so `npx vmtier` finds the
// project's own command locally. Without the link npx installs the project into its cache
// (~/.npm/_npx) and chmods bin/vmtier.js there, which fails where the tree is read-only (the lab).
import { existsSync, lstatSync, mkdirSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const binDir = join(root, 'node_modules', '.bin');
const link = join(binDir, 'vmtier');
const target = join('..', '..', 'bin', 'vmtier.js');
if (!existsSync(join(root, 'node_modules'))) process.exit(0); // nothing installed yet: npm ci comes first
mkdirSync(binDir, { recursive: true });
let current = null;
try { current = lstatSync(link).isSymbolicLink() ? readlinkSync(link) : 'not a link'; } catch { /* absent */ }
if (current !== target) {
  if (current !== null) rmSync(link, { force: true });
  symlinkSync(target, link);
}
