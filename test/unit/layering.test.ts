// The layering issue 13 asks for, read from the source: range/unit types on the ground floor
// (src/units.ts imports nothing; every layer takes them from there, none through src/scan), no
// import cycle inside src/scan nor anywhere in src, each layer importing only what is below it
// (the rules of /work/shared/STYLE.md), and the composition root outside src/api.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { SRC, sourceFiles } from '../helpers/source-files.js';


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

const graph = new Map(sourceFiles().map((f) => [relative(SRC, f), imports(f)]));

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

test('src/units.ts and src/errno.ts are the ground floor: they import nothing', () => {
  assert.deepEqual(graph.get('units.ts'), []);
  assert.deepEqual(graph.get('errno.ts'), []);
});

test('src/vm takes ranges and page sizes from the ground floor, not from src/scan', () => {
  const offenders = [...graph].filter(([f, deps]) => f.startsWith('vm/') && deps.some((d) => d.startsWith('scan/'))).map(([f]) => f);
  assert.deepEqual(offenders, []);
});

test('no import cycle inside src/scan', () => {
  assert.deepEqual(cycles('scan/'), []);
});

test('no import cycle anywhere in src', () => {
  assert.deepEqual(cycles(''), []);
});

/** Names a file imports from modules under `dir` (static imports only). */
function namesFrom(file: string, dir: string): string[] {
  const text = readFileSync(join(SRC, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s+(?:type\s+)?\{([^}]*)\}\s*from\s+'(\.[^']+)'/g)) {
    const target = relative(SRC, normalize(join(dirname(join(SRC, file)), m[2]!.replace(/\.js$/, '.ts'))));
    if (target.startsWith(dir)) out.push(...m[1]!.split(',').map((n) => n.replace(/\btype\s+/, '').trim()).filter(Boolean));
  }
  return out;
}

test('the ground floor is taken from src/units.ts, never through src/scan', () => {
  const ground = ['PAGE_SIZE', 'PAGE_SHIFT', 'HvaRange'];
  const offenders = [...graph.keys()].filter((f) => namesFrom(f, 'scan/').some((n) => ground.includes(n)));
  assert.deepEqual(offenders, []);
});

/** Files under `dir` that import from any of `forbidden` (directories or files, src-relative). */
function importsInto(dir: string, forbidden: string[]): string[] {
  return [...graph].filter(([f, deps]) => f.startsWith(dir) && deps.some((d) => forbidden.some((x) => d.startsWith(x)))).map(([f]) => f);
}

test('each layer imports only the layers below it', () => {
  const interfaces = ['daemon/', 'api/', 'service/', 'cli/', 'cli.ts'];
  // Mechanism and models never reach up into the loop, the interfaces or the composition root.
  for (const dir of ['units.ts', 'errno.ts', 'errors.ts', 'sys/', 'libvirt/', 'host/hugepages.ts', 'host/topology.ts', 'scan/', 'migrate/', 'policy/', 'store/', 'vm/', 'sim/']) {
    assert.deepEqual(importsInto(dir, interfaces), [], `${dir} imports the daemon or an interface`);
  }
  // The pure decision core: nothing from libvirt, scan, migrate, store, api or daemon.
  assert.deepEqual(importsInto('policy/', ['libvirt/', 'scan/', 'migrate/', 'store/', 'vm/', 'sys/', 'host/']), []);
  // The simulator touches no host: the policy and the ground floor only.
  assert.deepEqual(importsInto('sim/', ['libvirt/', 'scan/', 'migrate/', 'store/', 'vm/', 'sys/', 'host/']), []);
  // The trackers are mechanism: no policy, no mover, no store, no domain model.
  assert.deepEqual(importsInto('scan/', ['policy/', 'migrate/', 'store/', 'vm/', 'libvirt/']), []);
  // The mover knows no tracker, store or domain model.
  assert.deepEqual(importsInto('migrate/', ['scan/', 'store/', 'vm/', 'libvirt/', 'policy/']), []);
  // libvirt knows no domain model.
  assert.deepEqual(importsInto('libvirt/', ['vm/', 'store/', 'policy/']), []);
  // The interface never knows the internals: no tracker, mover or system call from src/api.
  assert.deepEqual(importsInto('api/', ['scan/', 'migrate/', 'sys/', 'libvirt/']), []);
  // The round's stages are the daemon's: nothing below the daemon reaches into them.
  assert.deepEqual(importsInto('', ['daemon/round/']).filter((f) => !f.startsWith('daemon/')), []);
});

test('the composition root is outside src/api: src/api receives the engine, builds none, and never imports the root', () => {
  assert.ok(existsSync(join(SRC, 'service', 'service.ts')));
  assert.deepEqual(importsInto('api/', ['service/', 'daemon/engine.ts', 'daemon/vm-loop.ts', 'vm/libvirt-inventory.ts']), []);
});

test('one placement query: only src/sys/syscalls.ts reaches move_pages(2), and only queryPageNodes asks it with nodes = NULL', () => {
  // The domain model (src/vm) and the mover (src/migrate) sit side by side; both take the query from below.
  assert.deepEqual(importsInto('vm/', ['migrate/']), [], 'src/vm imports src/migrate');
  const sources = [...graph.keys()].map((f) => [f, readFileSync(join(SRC, f), 'utf8')] as const);
  // Nowhere else names the system call: no second wrapper around move_pages' number or koffi's syscall.
  assert.deepEqual(sources.filter(([f, t]) => f !== 'sys/syscalls.ts' && /SYS\.move_pages|\bmove_pages\s*:\s*\d|movePagesCall/.test(t)).map(([f]) => f), []);
  const sys = readFileSync(join(SRC, 'sys', 'syscalls.ts'), 'utf8');
  // The raw call is private; its only query (a null nodes argument) is inside queryPageNodes.
  assert.match(sys, /\nfunction movePagesCall\(/);
  const calls = [...sys.matchAll(/movePagesCall\(([^;]*)\)/g)].map((m) => m[1]!).filter((a) => !a.startsWith('pid: number'));
  const queries = calls.filter((a) => /,\s*null\s*,/.test(a));
  assert.equal(queries.length, 1, `move_pages with nodes = NULL called ${queries.length} times in src/sys/syscalls.ts`);
  const queryFn = sys.slice(sys.indexOf('export function queryPageNodes('), sys.indexOf('\n}\n', sys.indexOf('export function queryPageNodes(')));
  assert.ok(queryFn.includes('movePagesCall(') && /,\s*null\s*,/.test(queryFn), 'the query is queryPageNodes');
  // The exported move takes nodes that cannot be null, so it cannot serve as a second query.
  assert.match(sys, /export function movePagesRaw\([^)]*nodes: Int32Array,/);
  // No other file defines a function that answers "which node is this page on" from the kernel itself.
  const definers = sources.filter(([, t]) => /export function queryPageNodes\b/.test(t)).map(([f]) => f);
  assert.deepEqual(definers, ['sys/syscalls.ts']);
});

test('src/store only stores: the sightings service (listening to the inventory, timing its listings) lives in src/service', () => {
  assert.ok(existsSync(join(SRC, 'service', 'sightings.ts')));
  assert.deepEqual(importsInto('store/', ['vm/inventory.ts', 'vm/libvirt-inventory.ts', 'libvirt/', 'service/', 'daemon/']), []);
});
