// `vmtier serve`'s engine settings: flags over environment over defaults; bad values are CONFIG_ERROR.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { engineSettings } from '../../src/daemon/options.js';
import { isVmtierError } from '../../src/errors.js';

const cfgErr = (e: unknown) => isVmtierError(e, 'CONFIG_ERROR');

test('defaults: engine on, each policy picks its tracker, all domains managed', () => {
  const s = engineSettings({}, {});
  assert.equal(s.enabled, true);
  assert.equal(s.options.tracker, undefined);
  assert.equal(s.options.manage, undefined);
  assert.equal(s.options.targetNodes, undefined);
  assert.deepEqual(s.options.budget, {});
});

test('environment, overridden by flags', () => {
  const env = { VMTIER_TRACKER: 'kmod', VMTIER_MANAGE: '^prod-', VMTIER_DEMOTE_NODE: '1', VMTIER_HOST_MBPS: '200', VMTIER_DRAM_WATERMARK_MB: '64', VMTIER_RESYNC_MS: '2000' };
  const s = engineSettings({ tracker: 'damon', promoteNode: '0' }, env);
  assert.equal(s.options.tracker, 'damon');
  assert.deepEqual(s.options.targetNodes, { top: 0, slow: 1 });
  assert.deepEqual(s.options.budget, { hostMBps: 200, dramFreeWatermarkBytes: 64 * 2 ** 20 });
  assert.equal(s.options.resyncMs, 2000);
  assert.equal(s.options.manage!({ name: 'prod-db', uuid: 'x' }), true);
  assert.equal(s.options.manage!({ name: 'test-db', uuid: 'x' }), false);
});

test('--no-engine and VMTIER_ENGINE=off turn the engine off', () => {
  assert.equal(engineSettings({ engine: false }, {}).enabled, false);
  assert.equal(engineSettings({}, { VMTIER_ENGINE: 'off' }).enabled, false);
  assert.equal(engineSettings({}, { VMTIER_ENGINE: 'on' }).enabled, true);
  assert.throws(() => engineSettings({}, { VMTIER_ENGINE: 'maybe' }), cfgErr);
});

test('replay needs a trace, which is replayed in a loop', () => {
  assert.throws(() => engineSettings({ tracker: 'replay' }, {}), cfgErr);
  const s = engineSettings({ tracker: 'replay', replayTrace: '/tmp/t.csv' }, {});
  assert.deepEqual(s.options.trackerOptions, { replay: { trace: '/tmp/t.csv', loop: true } });
});

test('bad values are refused with CONFIG_ERROR', () => {
  assert.throws(() => engineSettings({ tracker: 'ebpf' }, {}), cfgErr);
  assert.throws(() => engineSettings({ manage: '(' }, {}), cfgErr);
  assert.throws(() => engineSettings({ demoteNode: '-1' }, {}), cfgErr);
  assert.throws(() => engineSettings({ promoteNode: '1.5' }, {}), cfgErr);
  assert.throws(() => engineSettings({ hostMbps: 'fast' }, {}), cfgErr);
  assert.throws(() => engineSettings({ resyncMs: '10' }, {}), cfgErr);
});
