/**
 * `vmtier serve` for real: the CLI process, real HTTP, the real LibvirtInventory on this
 * machine's libvirtd with TCG domains, a SQLite file, and a private libvirtd that the test
 * stops and restarts for the 503 → recovery case.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { destroyDomains, hmp, startDomain } from '../helpers/domains.js';
import { startPrivateLibvirtd, type PrivateLibvirtd } from '../helpers/libvirtd.js';

const PREFIX = 'vmtier-test-b-';
const TOKEN = 'serve-test-token-0123456789';
const repoRoot = join(import.meta.dirname, '..', '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'vmtier-serve-'));
const children = new Set<ChildProcess>();

interface Served {
  url: string;
  child: ChildProcess;
  output: () => string;
  stop: () => Promise<number | null>;
}

/** Starts `vmtier serve` on a free loopback port and waits for its "vmtier serving" line. */
async function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  // API only: the tiering engine would act on every domain of this shared machine; it has its own tests.
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'serve', '--no-engine', '--listen', '127.0.0.1:0', ...args], {
    env: { ...process.env, VMTIER_TOKEN: TOKEN, VMTIER_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (b) => (out += b));
  child.stderr!.on('data', (b) => (out += b));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { children.delete(child); resolve(code); }));
  const deadline = Date.now() + 30_000;
  while (!/"msg":"vmtier serving"/.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`serve did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const url = /"url":"(http:[^"]+)"/.exec(out)![1];
  return {
    url,
    child,
    output: () => out,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

async function get(s: Served, path: string, auth = true): Promise<{ status: number; body: any }> {
  const r = await fetch(`${s.url}${path}`, { headers: auth ? { authorization: `Bearer ${TOKEN}` } : {} });
  const text = await r.text();
  return { status: r.status, body: text.startsWith('{') ? JSON.parse(text) : text };
}

/** Polls until `pred` holds; returns ms waited. */
async function within(ms: number, what: string, pred: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await pred()) return Date.now() - t0;
    if (Date.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  await destroyDomains(PREFIX);
});

after(async () => {
  await destroyDomains(PREFIX);
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('serve on the real libvirtd: a TCG domain appears within 2 s of start and leaves within 2 s of destroy', async () => {
  const db = join(dir, 'live.db');
  const s = await serve(['--db', db]);
  try {
    assert.equal((await get(s, '/v1/vms', false)).status, 401);
    const health = await get(s, '/healthz', false);
    assert.equal(health.status, 200);
    assert.equal(health.body.libvirt.connected, true);

    const dom = await startDomain('two-cells-memfd.xml', PREFIX);
    const tStart = await within(2000, 'domain listed after start', async () =>
      (await get(s, '/v1/vms')).body.vms.some((v: { uuid: string }) => v.uuid === dom.uuid));
    // The lifecycle event reaches the store: first/last seen recorded.
    await within(2000, 'sighting recorded', async () => (await get(s, `/v1/vms/${dom.uuid}`)).body.firstSeen !== null);
    const detail = (await get(s, `/v1/vms/${dom.uuid}`)).body;
    assert.equal(detail.name, dom.name);
    assert.equal(detail.running, true);
    assert.equal(detail.state, 'running');

    const numa = await get(s, `/v1/vms/${dom.uuid}/numa`);
    assert.equal(numa.status, 200, JSON.stringify(numa.body));
    assert.equal(numa.body.domain.uuid, dom.uuid);
    assert.deepEqual(numa.body.nodes.map((n: { node: number; cpus: string | null; sizeBytes: number }) => [n.node, n.cpus, n.sizeBytes]), [
      [0, '0-1', 256 * 2 ** 20],
      [1, null, 128 * 2 ** 20],
    ]);
    // Independent answer for where each node's RAM starts: HMP gpa2hva through virsh.
    for (const [node, gpa] of [[0, 0], [1, 256 * 2 ** 20]] as const) {
      const m = /is 0x([0-9a-f]+)/.exec(await hmp(dom.name, `gpa2hva 0x${gpa.toString(16)}`));
      assert.ok(m);
      assert.equal(numa.body.nodes[node].hva[0].start, `0x${m[1]}`);
      for (const r of numa.body.nodes[node].hva) assert.match(r.start + r.end, /^0x[0-9a-f]+0x[0-9a-f]+$/);
    }

    const pl = await get(s, `/v1/vms/${dom.uuid}/placement`);
    assert.equal(pl.status, 200, JSON.stringify(pl.body));
    for (const n of pl.body.nodes) {
      const resident = Object.values(n.pagesByHostNode as Record<string, number>).reduce((a, b) => a + b, 0);
      const errs = Object.values(n.errors as Record<string, number>).reduce((a, b) => a + b, 0);
      assert.equal(resident + n.notPresentPages + errs, n.totalPages);
      // One host node here, in the top tier: every resident page is top tier.
      assert.deepEqual(n.pagesByTier, { top: resident, slow: 0 });
    }
    assert.equal(pl.body.nodes[0].totalPages, (256 * 2 ** 20) / 4096);

    const put = await fetch(`${s.url}/v1/vms/${dom.uuid}/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ mode: 'tier' }),
    });
    assert.equal(put.status, 200);
    assert.equal(((await put.json()) as { version: number }).version, 1);

    await dom.destroy();
    const tStop = await within(2000, 'domain gone after destroy', async () =>
      !(await get(s, '/v1/vms')).body.vms.some((v: { uuid: string }) => v.uuid === dom.uuid));
    const gone = await get(s, `/v1/vms/${dom.uuid}`);
    assert.equal(gone.status, 200);
    assert.equal(gone.body.running, false);
    assert.equal((await get(s, `/v1/vms/${dom.uuid}/numa`)).status, 404);
    console.log(`# listed ${tStart} ms after start, gone ${tStop} ms after destroy (host)`);

    const code = await s.stop();
    assert.equal(code, 0, s.output());
    assert.match(s.output(), /"signal":"SIGTERM"/);
    // What serve recorded is in the SQLite file.
    const raw = new BetterSqlite3(db, { readonly: true });
    const vm = raw.prepare('SELECT name, first_seen, last_seen FROM vms WHERE uuid = ?').get(dom.uuid) as { name: string; first_seen: number; last_seen: number };
    assert.equal(vm.name, dom.name);
    assert.ok(vm.last_seen >= vm.first_seen);
    const pol = raw.prepare('SELECT version, policy FROM policies WHERE vm_uuid = ?').all(dom.uuid) as Array<{ version: number; policy: string }>;
    assert.deepEqual(pol.map((p) => [p.version, JSON.parse(p.policy).mode]), [[1, 'tier']]);
    assert.equal((raw.prepare('SELECT COUNT(*) AS n FROM guest_nodes WHERE vm_uuid = ?').get(dom.uuid) as { n: number }).n, 2);
    raw.close();
  } finally {
    if (s.child.exitCode === null) await s.stop();
  }
});

test('libvirtd unreachable gives 503, and the API recovers when it returns (private libvirtd)', async (t) => {
  const d: PrivateLibvirtd = await startPrivateLibvirtd();
  t.after(() => d.cleanup());
  const s = await serve(['--db', join(dir, 'outage.db'), '--uri', d.uri]);
  try {
    await within(10_000, 'first listing', async () => (await get(s, '/v1/vms')).status === 200);
    await d.stop();
    await within(10_000, '503 while libvirtd is down', async () => {
      const r = await get(s, '/v1/vms');
      return r.status === 503 && r.body.error.code === 'LIBVIRT_UNAVAILABLE';
    });
    assert.equal((await get(s, '/healthz', false)).body.status, 'degraded');
    // Routes answered from the store keep working; the host is independent of libvirt.
    assert.equal((await get(s, '/v1/host')).status, 200);
    await d.start();
    const ms = await within(30_000, 'recovery after libvirtd returns', async () => (await get(s, '/v1/vms')).status === 200);
    console.log(`# recovered ${ms} ms after the private libvirtd came back (host)`);
    assert.equal((await get(s, '/healthz', false)).body.status, 'ok');
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

test('serve refuses a non-loopback address without a token, and a database from a newer schema', async () => {
  const run = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const c = spawn(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(c);
      let out = '';
      c.stdout!.on('data', (b) => (out += b));
      c.stderr!.on('data', (b) => (out += b));
      c.once('exit', (code) => { children.delete(c); resolve({ code, out }); });
    });
  const open = await run(['--listen', '0.0.0.0:0', '--db', join(dir, 'never.db')], { VMTIER_TOKEN: '' });
  assert.equal(open.code, 1);
  assert.match(open.out, /^CONFIG_ERROR: refusing to listen on 0\.0\.0\.0 without a token/m);

  const newer = join(dir, 'newer.db');
  const raw = new BetterSqlite3(newer);
  raw.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL); INSERT INTO schema_migrations VALUES (999, \'future\', 0);');
  raw.close();
  const r = await run(['--listen', '127.0.0.1:0', '--db', newer], {});
  assert.equal(r.code, 1);
  assert.match(r.out, /^SCHEMA_TOO_NEW: /m);
});
