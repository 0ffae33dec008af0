// The layering issue 13 asks for, read from the source: range/unit types on the ground floor
// (src/units.ts imports nothing; src/vm takes them from there, not from src/scan), no import
// cycle inside src/scan, and the composition root outside src/api.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Relative imports of a source file (static and dynamic), as src-relative .ts paths. */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'(\.[^']+)'|import\('(\.[^']+)'\)|(?:^|\n)\s*import\s+'(\.[^']+)'/g)) {
    const spec = (m[1] ?? m[2] ?? m[3])!;
    out.push(relative(SRC, normalize(join(dirname(file), spec.replace(/\.js$/, '.ts')))));
  }
  return out;
}

const graph = new Map(files(SRC).map((f) => [relative(SRC, f), imports(f)]));

function cycles(within: string): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string) => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (!m.startsWith(within)) continue;
      if (state.get(m) === 'open') found.push(stack.slice(stack.indexOf(m)));
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const n of graph.keys()) if (n.startsWith(within) && !state.has(n)) visit(n);
  return found;
}

test('src/units.ts is the ground floor: it imports nothing', () => {
  assert.deepEqual(graph.get('units.ts'), []);
});

test('src/vm takes ranges and page sizes from the ground floor, not from src/scan', () => {
  const offenders = [...graph].filter(([f, deps]) => f.startsWith('vm/') && deps.some((d) => d.startsWith('scan/'))).map(([f]) => f);
  assert.deepEqual(offenders, []);
});

test('no import cycle inside src/scan', () => {
  assert.deepEqual(cycles('scan/'), []);
});

test('the composition root is outside src/api; src/api/service.ts only re-exports it', () => {
  assert.ok(existsSync(join(SRC, 'service', 'service.ts')));
  assert.deepEqual(graph.get('api/service.ts'), ['service/service.ts']);
  const apiDeps = [...graph].filter(([f]) => f.startsWith('api/') && f !== 'api/service.ts').flatMap(([, d]) => d);
  assert.ok(!apiDeps.includes('daemon/engine.ts'), 'src/api builds no engine');
});
