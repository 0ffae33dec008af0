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
import type { MoveCounts } from '../../src/migrate/counts.js';
import type { RoundSummary } from '../../src/daemon/status.js';

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
    promotionPaused: false, skipped: {}, madvisedColdBytes: 4096, unmovablePages: 0, longestSyscallMs: 1, planReason: 'hold', recurrencePeriodRounds: 0, decidedWithVms: 1, shareBytes: 1 << 29,
  };
  m.round('6f1d4c3a-1111-4222-8333-944455556666', 'web', round);
  m.moves('6f1d4c3a-1111-4222-8333-944455556666', 'web', 'demote', round.moves.demote, 4096);
  m.tracker('6f1d4c3a-1111-4222-8333-944455556666', 'web', 'kmod', true);
  m.roundFailed('6f1d4c3a-1111-4222-8333-944455556666', 'web', 1);
  m.workerHeap('6f1d4c3a-1111-4222-8333-944455556666', 'web', { usedBytes: 8 << 20, totalBytes: 12 << 20, externalBytes: 1 << 20 });
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
    // The per-VM gauges are written as text straight from the store.
    const perVm = [...api.perVmHelp().matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
    return new Set([...[...registry.getMetricsAsArray(), ...api.registry.getMetricsAsArray()].map((x) => x.name), ...perVm]);
  } finally {
    store.close();
  }
}

/** All of /metrics as `vmtier serve` writes it after one round of one VM: engine, loop sampler, API registry, per-VM store gauges. */
async function fullExposition(): Promise<string> {
  const { text: engine } = await engineExposition();
  const store = Store.open(':memory:');
  try {
    const uuid = '6f1d4c3a-1111-4222-8333-944455556666';
    store.recordVmSeen(uuid, 'web', 1_000);
    store.insertSamples([
      { t: 2_000, vmUuid: uuid, guestNode: 0, hostNode: 1, hostTier: 'slow', hotBytes: 4096, warmBytes: 0, coldBytes: 8192, scannedBytes: 12288, scanMs: 3, movedBytes: 4096, failures: 1 },
    ]);
    const inventory = { connected: () => true, list: async () => [] } as unknown as VmInventory;
    const api = createMetrics({ store, inventory });
    api.httpRequests.inc({ method: 'GET', route: '/metrics', status: '200' });
    return engine + (await api.registry.metrics()) + api.perVmText();
  } finally {
    store.close();
  }
}

test('promtool check metrics finds nothing to say about the engine\'s metrics; per-VM series carry vm_uuid and vm_name', async () => {
  const { text } = await engineExposition();
  const r = promtool(['check', 'metrics'], text);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal((r.stdout + r.stderr).trim(), '');
  for (const line of text.split('\n').filter((l) => l.startsWith('vmtier_engine_'))) {
    assert.match(line, /\{vm_uuid="6f1d4c3a-[^"]+",vm_name="web"/, line);
  }
  // The linter does fail on a convention break (a counter without _total).
  const bad = promtool(['check', 'metrics'], '# HELP vmtier_engine_rounds a counter\n# TYPE vmtier_engine_rounds counter\nvmtier_engine_rounds 1\n');
  assert.notEqual(bad.status, 0);
  assert.match(bad.stdout + bad.stderr, /_total/);
});

/**
 * Prometheus's naming practice, as far as a program can check it: everything under vmtier_,
 * counters and only counters end in _total, base units only (seconds, bytes) and named,
 * per-VM series labelled vm_uuid and vm_name. Returns one message per break.
 */
function conventionBreaks(text: string): string[] {
  const out: string[] = [];
  const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  const helps = new Set([...text.matchAll(/^# HELP (\S+) /gm)].map((m) => m[1]!));
  for (const [name, type] of types) {
    const words = name.split('_');
    if (!/^vmtier_[a-z][a-z0-9_]*[a-z0-9]$/.test(name)) out.push(`${name}: not a lower-case name under vmtier_`);
    if (!helps.has(name)) out.push(`${name}: no HELP`);
    if (type === 'counter' && !name.endsWith('_total')) out.push(`${name}: a counter without _total`);
    if (type !== 'counter' && name.endsWith('_total')) out.push(`${name}: a ${type} ending in _total (kept for counters)`);
    const nonBase = words.find((w) => /^(ms|msec|millis|milliseconds|us|usec|microseconds|ns|nanoseconds|minutes?|hours?|days?|kb|kib|mb|mib|gb|gib|percent|pct)$/.test(w));
    if (nonBase) out.push(`${name}: unit "${nonBase}" is not a base unit (use seconds, bytes, ratios)`);
    if (words.some((w) => /^(duration|latency|lag|time|timestamp|elapsed|uptime|delay|blocked)$/.test(w)) && !words.includes('seconds')) out.push(`${name}: a time not in _seconds`);
    if (words.some((w) => /^(bytes?|memory|size|heap|rss)$/.test(w)) && !words.includes('bytes') && !words.includes('fds')) out.push(`${name}: a size not in _bytes`);
  }
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (!m) continue;
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)].map((x) => x[1]!);
    if (labels.includes('vm') || labels.includes('name')) out.push(`${line}: labels vm/name (use vm_uuid, vm_name)`);
    if (/^vmtier_(vm|engine)_/.test(m[1]!) && !(labels.includes('vm_uuid') && labels.includes('vm_name'))) out.push(`${line}: a per-VM series without vm_uuid and vm_name`);
  }
  return out;
}

test('every exported metric follows Prometheus naming: _total on counters only, seconds and bytes, vm_uuid/vm_name labels', async () => {
  const text = await fullExposition();
  const names = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
  // The whole exposition: engine, loop sampler, process, HTTP, store, per-VM gauges.
  for (const n of ['vmtier_engine_rounds_total', 'vmtier_event_loop_stalls_total', 'vmtier_process_cpu_seconds_total', 'vmtier_http_requests_total', 'vmtier_vm_hot_bytes', 'vmtier_vm_scan_duration_seconds']) {
    assert.ok(names.includes(n), `${n} missing from the exposition`);
  }
  assert.match(text, /^vmtier_vm_hot_bytes\{vm_uuid="6f1d4c3a-[^"]+",vm_name="web",guest_node="0",host_node="1",host_tier="slow"\} 4096$/m);
  assert.deepEqual(conventionBreaks(text), []);
  const lint = promtool(['check', 'metrics'], text);
  assert.equal(lint.status, 0, lint.stdout + lint.stderr);
  // The checker itself catches each kind of break.
  const bad = (type: string, line: string) => conventionBreaks(`# HELP ${line.split(/[{ ]/)[0]} x\n# TYPE ${line.split(/[{ ]/)[0]} ${type}\n${line}\n`);
  assert.match(bad('counter', 'vmtier_engine_rounds{vm_uuid="u",vm_name="n"} 1').join(), /counter without _total/);
  assert.match(bad('gauge', 'vmtier_vm_scan_ms{vm_uuid="u",vm_name="n"} 1').join(), /not a base unit/);
  assert.match(bad('gauge', 'vmtier_vm_scan_duration{vm_uuid="u",vm_name="n"} 1').join(), /not in _seconds/);
  assert.match(bad('gauge', 'vmtier_vm_round_failures_total{vm_uuid="u",vm_name="n"} 1').join(), /ending in _total/);
  assert.match(bad('gauge', 'vmtier_store_size 1').join(), /not in _bytes/);
  assert.match(bad('gauge', 'vmtier_vm_hot_bytes{vm="u",name="n"} 1').join(), /labels vm\/name/);
  assert.match(bad('gauge', 'vmtier_engine_tracker_up{tracker="kmod"} 1').join(), /without vm_uuid and vm_name/);
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
