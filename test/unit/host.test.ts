import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { readHostTopology, nodesOfClass } from '../../src/host/topology.js';
import { parseList, formatList } from '../../src/host/lists.js';
import { labTwoTierHost, threeTierHost, untieredKernelHost } from '../helpers/host-fixture.js';

const repoRoot = join(import.meta.dirname, '..', '..', '..');

test('kernel lists parse and format round trip', () => {
  assert.deepEqual(parseList('0-3,8,10-11\n'), [0, 1, 2, 3, 8, 10, 11]);
  assert.deepEqual(parseList('\n'), []);
  assert.equal(formatList([5, 0, 1, 2, 2]), '0-2,5');
  assert.throws(() => parseList('0-x'), { code: 'INVALID_INPUT' });
  assert.throws(() => parseList('3-1'), { code: 'INVALID_INPUT' });
});

test('fixture: the lab two-tier host classes node 0 top and node 1 slow from the kernel tiers', (t) => {
  const fx = labTwoTierHost();
  t.after(fx.cleanup);
  const h = readHostTopology({ sysRoot: fx.sysRoot, procRoot: fx.procRoot });
  assert.equal(h.nodes.length, 2);
  const [n0, n1] = h.nodes;
  assert.deepEqual(n0, {
    node: 0, cpus: '0-1', memTotalBytes: 2_097_152 * 1024, memFreeBytes: 1_500_000 * 1024,
    distances: { '0': 10, '1': 28 }, tier: { kernelTier: 4, class: 'top', source: 'kernel' },
  });
  assert.equal(n1.cpus, null);
  assert.deepEqual(n1.distances, { '0': 28, '1': 10 });
  assert.deepEqual(n1.tier, { kernelTier: 67, class: 'slow', source: 'kernel' });
  assert.deepEqual(h.tiers, [{ tier: 4, nodes: [0], class: 'top' }, { tier: 67, nodes: [1], class: 'slow' }]);
  assert.deepEqual(h.dax, [{ device: 'dax0.0', mode: 'system-ram', targetNode: 1, sizeBytes: 1075838976 }]);
  assert.deepEqual(h.kernel, { numaBalancing: { value: 2, mode: 'tiering' }, demotionEnabled: true, promoteRateLimitMBps: 65536 });
  // The kernel tiers the same memory: both coexistence warnings are raised.
  assert.equal(h.warnings.length, 2);
  assert.match(h.warnings[0], /numa_balancing=2/);
  assert.match(h.warnings[1], /demotion/);
});

test('fixture: three tiers — only the fastest populated tier is top; devdax reported as such', (t) => {
  const fx = threeTierHost();
  t.after(fx.cleanup);
  const h = readHostTopology({ sysRoot: fx.sysRoot, procRoot: fx.procRoot });
  assert.deepEqual(h.nodes.map((n) => [n.node, n.cpus, n.tier.kernelTier, n.tier.class]), [
    [0, '0-3,8-11', 4, 'top'],
    [1, '4-7,12-15', 4, 'top'],
    [2, null, 22, 'slow'],
    [3, null, 67, 'slow'],
  ]);
  assert.deepEqual(nodesOfClass(h, 'top'), [0, 1]);
  assert.deepEqual(nodesOfClass(h, 'slow'), [2, 3]);
  assert.deepEqual(h.tiers.map((x) => [x.tier, x.nodes, x.class]), [[4, [0, 1], 'top'], [22, [2], 'slow'], [67, [3], 'slow']]);
  assert.deepEqual(h.nodes[2].distances, { '0': 14, '1': 24, '2': 10, '3': 30 });
  assert.deepEqual(h.dax, [{ device: 'dax1.0', mode: 'devdax', targetNode: 3, sizeBytes: 17179869184 }]);
  assert.deepEqual(h.kernel, { numaBalancing: { value: 0, mode: 'off' }, demotionEnabled: null, promoteRateLimitMBps: null });
  assert.deepEqual(h.warnings, []);
});

test('fixture: without kernel tiers, CPU-less nodes are slow; a config override has the last word', (t) => {
  const fx = untieredKernelHost();
  t.after(fx.cleanup);
  const h = readHostTopology({ sysRoot: fx.sysRoot, procRoot: fx.procRoot });
  assert.deepEqual(h.nodes.map((n) => n.tier), [
    { kernelTier: null, class: 'top', source: 'cpuless' },
    { kernelTier: null, class: 'slow', source: 'cpuless' },
  ]);
  assert.deepEqual(h.tiers, []);
  assert.equal(h.kernel.numaBalancing, null);
  const o = readHostTopology({ sysRoot: fx.sysRoot, procRoot: fx.procRoot, tierOverrides: { '1': 'top' } });
  assert.deepEqual(o.nodes[1].tier, { kernelTier: null, class: 'top', source: 'config' });

  const lab = labTwoTierHost();
  t.after(lab.cleanup);
  const k = readHostTopology({ sysRoot: lab.sysRoot, procRoot: lab.procRoot, tierOverrides: { '0': 'slow' } });
  assert.deepEqual(k.nodes[0].tier, { kernelTier: 4, class: 'slow', source: 'config' });
  assert.deepEqual(k.nodes[1].tier, { kernelTier: 67, class: 'slow', source: 'kernel' });
});

test('a tree without NUMA nodes is UNSUPPORTED, not a crash', (t) => {
  const fx = untieredKernelHost();
  t.after(fx.cleanup);
  assert.throws(() => readHostTopology({ sysRoot: join(fx.root, 'nothing'), procRoot: fx.procRoot }), { code: 'UNSUPPORTED' });
});

test('vmtier host --json on the lab fixture prints node 0 top and node 1 slow', (t) => {
  const fx = labTwoTierHost();
  t.after(fx.cleanup);
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'host', '--json', '--sys-root', fx.sysRoot, '--proc-root', fx.procRoot], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const h = JSON.parse(r.stdout);
  assert.deepEqual(h.nodes.map((n: { node: number; tier: { class: string } }) => [n.node, n.tier.class]), [[0, 'top'], [1, 'slow']]);
  const text = spawnSync(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'host', '--sys-root', fx.sysRoot, '--proc-root', fx.procRoot], { encoding: 'utf8' });
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /memory_tier67=\[1\] slow/);
  assert.match(text.stdout, /warning: kernel NUMA balancing/);
});
