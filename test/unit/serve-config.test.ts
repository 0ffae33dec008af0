import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_RETENTION, isLoopback, loadConfig, parseListen } from '../../src/config.js';

test('config: embedded defaults', () => {
  const c = loadConfig({}, {});
  assert.deepEqual(c, {
    db: './var/vmtier.db', uri: 'qemu:///system', listen: { host: '127.0.0.1', port: 8477 }, token: null,
    tierOverrides: {}, retention: DEFAULT_RETENTION,
  });
  assert.equal(DEFAULT_RETENTION.fullResolutionMs, 24 * 3600_000);
  assert.equal(DEFAULT_RETENTION.maxAgeMs, 30 * 24 * 3600_000);
  assert.equal(DEFAULT_RETENTION.intervalMs, 3600_000);
});

test('config: file < environment < flags', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'vmtier.yaml');
  writeFileSync(file, 'db: /srv/file.db\nuri: qemu+ssh://h/system\nlisten: "[::1]:9000"\ntoken: file-token-0123456789\ntiers:\n  "1": slow\n  "2": top\nretention:\n  fullResolutionHours: 6\n  coarseStepSeconds: 60\n  maxAgeDays: 7\n  intervalSeconds: 90\n');
  const fromFile = loadConfig({ config: file }, {});
  assert.equal(fromFile.db, '/srv/file.db');
  assert.deepEqual(fromFile.listen, { host: '::1', port: 9000 });
  assert.equal(fromFile.token, 'file-token-0123456789');
  assert.deepEqual(fromFile.tierOverrides, { '1': 'slow', '2': 'top' });
  assert.deepEqual(fromFile.retention, { fullResolutionMs: 6 * 3600_000, coarseStepMs: 60_000, maxAgeMs: 7 * 86_400_000, intervalMs: 90_000 });
  const env = { VMTIER_DB: '/env.db', VMTIER_TOKEN: 'env-token-0123456789', VMTIER_LISTEN: '127.0.0.2:1' };
  const fromEnv = loadConfig({ config: file }, env);
  assert.equal(fromEnv.db, '/env.db');
  assert.equal(fromEnv.token, 'env-token-0123456789');
  assert.equal(fromEnv.uri, 'qemu+ssh://h/system');
  const fromFlags = loadConfig({ config: file, db: '/flag.db', listen: '127.0.0.1:0' }, env);
  assert.equal(fromFlags.db, '/flag.db');
  assert.deepEqual(fromFlags.listen, { host: '127.0.0.1', port: 0 });
  // VMTIER_CONFIG names the file when no flag does.
  assert.equal(loadConfig({}, { VMTIER_CONFIG: file }).db, '/srv/file.db');
});

test('config: bad input is CONFIG_ERROR naming what is wrong', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmtier-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bad = (yaml: string) => {
    const f = join(dir, `c${Math.random()}.yaml`);
    writeFileSync(f, yaml);
    return () => loadConfig({ config: f }, {});
  };
  assert.throws(bad('tiers:\n  "1": medium\n'), { code: 'CONFIG_ERROR' });
  assert.throws(bad('listn: 1.2.3.4:5\n'), { code: 'CONFIG_ERROR' });
  assert.throws(bad('db: [unterminated\n'), { code: 'CONFIG_ERROR' });
  assert.throws(bad('retention:\n  fullResolutionHours: 48\n  maxAgeDays: 1\n'), { code: 'CONFIG_ERROR' });
  for (const v of ['0', '1.5', '-3', '"60"', '86401']) assert.throws(bad(`retention:\n  intervalSeconds: ${v}\n`), { code: 'CONFIG_ERROR' }, v);
  assert.throws(() => loadConfig({ config: join(dir, 'missing.yaml') }, {}), { code: 'CONFIG_ERROR' });
  assert.throws(() => loadConfig({ token: 'short' }, {}), { code: 'CONFIG_ERROR' });
  for (const l of ['8477', 'host:', 'h:70000', '1.2.3.4:5:6']) assert.throws(() => parseListen(l), { code: 'CONFIG_ERROR' }, l);
  assert.deepEqual(parseListen(':8080'), { host: '127.0.0.1', port: 8080 });
});

test('loopback detection decides whether a token is required', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) assert.equal(isLoopback(h), true, h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.org', '128.0.0.1']) assert.equal(isLoopback(h), false, h);
});
