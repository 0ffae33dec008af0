// Bundles the dashboard (web/) into dist/ui: app.js (esbuild, minified, uPlot included),
// app.css (uPlot's stylesheet + ours) and index.html. No CDN: `vmtier serve` serves these files.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync, copyFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'ui');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(root, 'web', 'main.ts')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2020',
  outfile: join(out, 'app.js'),
  logLevel: 'warning',
});
const require = createRequire(import.meta.url);
const uplotCss = readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8');
writeFileSync(join(out, 'app.css'), `${uplotCss}\n${readFileSync(join(root, 'web', 'style.css'), 'utf8')}`);
copyFileSync(join(root, 'web', 'index.html'), join(out, 'index.html'));
const kib = (f) => (statSync(join(out, f)).size / 1024).toFixed(1);
if (process.argv.includes('--sizes')) console.log(`dist/ui: app.js ${kib('app.js')} KiB, app.css ${kib('app.css')} KiB, index.html ${kib('index.html')} KiB`);
