// Monitoring conventions: the engine's metrics pass Prometheus's own linter (`promtool check
// metrics`), the alert rules pass `promtool check rules` and their unit tests (`promtool test
// rules`), and the rules and the Grafana dashboard use only metric names vmtier exports.
// promtool comes from Debian's prometheus package.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { EngineMetrics } from '../../src/daemon/metrics.js';
import { LoopStallSampler, exportLoopStallMetrics } from '../../src/daemon/loop-stall.js';
import { createMetrics } from '../../src/api/metrics.js';
import { Store } from '../../src/store/store.js';
import type { VmInventory } from '../../src/vm/inventory.js';
import type { MoveCounts, RoundSummary } from '../../src/daemon/status.js';

const repoRoot = join(import.meta.dirname, '..', '..', '..');
const RULES = join(repoRoot, 'deploy/prometheus/vmtier.rules.yml');

function promtool(args: string[], input?: string) {
  const r = spawnSync('promtool', args, { encoding: 'utf8', input });
  assert.notEqual(r.error?.message.includes('ENOENT'), true, 'promtool is missing: install Debian package prometheus (scripts/ensure-host.sh)');
  return r;
}

const counts = (moved: number, noMemory = 0): MoveCounts => ({
  requested: moved + noMemory,
  byClass: { moved, busy: 0, notPresent: 0, noMemory, fault: 0, other: 0 },
});

/** The engine's metrics after one round of a VM, as /metrics serves them. */
async function engineExposition(): Promise<{ text: string; registry: Registry }> {
  const registry = new Registry();
  const m = new EngineMetrics(registry);
  const round: RoundSummary = {
    round: 1, t: Date.now(), mode: 'tier', scans: 4, intervalMs: 100, scanMs: 12, durationMs: 40,
    trackedBytes: 1 << 30, residentBytes: 1 << 29, hotBytes: 1 << 27, warmBytes: 1 << 26, coldBytes: 1 << 28,
    decided: { promotePages: 10, demotePages: 20 }, moves: { promote: counts(10), demote: counts(18, 2) },
    promotionPaused: false, skipped: {}, madvisedColdBytes: 4096, unmovablePages: 0, longestSyscallMs: 1,
  };
  m.round('6f1d4c3a-1111-4222-8333-944455556666', 'web', round);
  m.moves('6f1d4c3a-1111-4222-8333-944455556666', 'web', 'demote', round.moves.demote, 4096);
  m.tracker('6f1d4c3a-1111-4222-8333-944455556666', 'web', 'kmod', true);
  m.roundFailed('6f1d4c3a-1111-4222-8333-944455556666', 'web', 1);
  exportLoopStallMetrics(registry, new LoopStallSampler());
  return { text: await registry.metrics(), registry };
}

/** Every metric name vmtier's /metrics can serve: the engine's, the loop sampler's and the API's. */
async function exportedNames(): Promise<Set<string>> {
  const { registry } = await engineExposition();
  const store = Store.open(':memory:');
  try {
    // Only the names are read: no collect() runs, so the inventory is never asked.
    const api = createMetrics({ store, inventory: {} as VmInventory });
    // The per-VM gauges are written as text straight from the store (their TYPE lines come even
    // with no VM recorded).
    const perVm = [...api.perVmText().matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
    return new Set([...[...registry.getMetricsAsArray(), ...api.registry.getMetricsAsArray()].map((x) => x.name), ...perVm]);
  } finally {
    store.close();
  }
}

test('promtool check metrics finds nothing to say about the engine\'s metrics; per-VM series carry vm and name', async () => {
  const { text } = await engineExposition();
  const r = promtool(['check', 'metrics'], text);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal((r.stdout + r.stderr).trim(), '');
  for (const line of text.split('\n').filter((l) => l.startsWith('vmtier_engine_'))) {
    assert.match(line, /\{vm="6f1d4c3a-[^"]+",name="web"/, line);
  }
  // The linter does fail on a convention break (a counter without _total).
  const bad = promtool(['check', 'metrics'], '# HELP vmtier_engine_rounds a counter\n# TYPE vmtier_engine_rounds counter\nvmtier_engine_rounds 1\n');
  assert.notEqual(bad.status, 0);
  assert.match(bad.stdout + bad.stderr, /_total/);
});

test('promtool check rules and promtool test rules pass on deploy/prometheus/vmtier.rules.yml', () => {
  const check = promtool(['check', 'rules', RULES]);
  assert.equal(check.status, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /SUCCESS: \d+ rules found/);
  const unit = promtool(['test', 'rules', join(repoRoot, 'test/fixtures/prometheus/vmtier.rules.test.yml')]);
  assert.equal(unit.status, 0, unit.stdout + unit.stderr);
});

test('the rules and the Grafana dashboard name only metrics vmtier exports', async () => {
  const names = await exportedNames();
  const used = (text: string) => new Set([...text.matchAll(/\b(vmtier_[a-z0-9_]+)\b/g)].map((m) => m[1]));
  const rules = used(readFileSync(RULES, 'utf8'));
  const dash = JSON.parse(readFileSync(join(repoRoot, 'deploy/grafana/vmtier-dashboard.json'), 'utf8')) as {
    panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
  };
  const exprs = dash.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n');
  const panelsUsing = used(exprs);
  assert.ok(rules.size >= 5 && panelsUsing.size >= 8, `${rules.size} rule metrics, ${panelsUsing.size} dashboard metrics`);
  for (const n of [...rules, ...panelsUsing]) assert.ok(names.has(n), `${n} is not exported (exported: ${[...names].sort().join(', ')})`);
  for (const p of dash.panels) assert.ok(p.targets.length > 0 && p.targets.every((t) => t.expr.trim() !== ''), p.title);
});
