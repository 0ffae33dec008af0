/**
 * The web dashboard in a real browser: Debian's headless Chromium (playwright-core, system
 * executable) against a real `vmtier serve` process over real HTTP, on a SQLite file filled
 * through the store's own API (100 VMs x 24 h of history, heat frames for one VM) and a real TCG
 * domain on this machine's libvirtd.
 *
 * VMTIER_UPDATE_SCREENSHOTS=1 writes the page screenshots into docs/screenshots/ (for the README);
 * otherwise they go to the test's temporary folder.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { fmtBytes } from '../../web/format.js';
import { heatFrameOf, heatHistoryOf, HEAT_CELL_MS } from '../../src/store/heat-history.js';
import { Store, type HotnessSample } from '../../src/store/store.js';
import { TIER_DRAM, TIER_SLOW } from '../../src/policy/types.js';
import { destroyDomains, startDomain, type TestDomain } from '../helpers/domains.js';

/** The browser's globals, inside page.evaluate / waitForFunction callbacks (this file compiles without the DOM lib). */
const document = (globalThis as any).document;

const PREFIX = 'vmtier-test-u-';
const TOKEN = 'dashboard-test-token-0123456789';
const CHROMIUM = '/usr/bin/chromium';
const repoRoot = join(import.meta.dirname, '..', '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'vmtier-dashboard-'));
const shotDir = process.env.VMTIER_UPDATE_SCREENSHOTS === '1' ? join(repoRoot, 'docs', 'screenshots') : join(dir, 'screenshots');
const VMS = 100;
/** serve's host-wide migration rate: not the default, so the Host page must show what serve was given. */
const HOST_MBPS = 300;
const HOUR = 3600_000;
const GiB = 2 ** 30;
const now = Date.now();

let child: ChildProcess | null = null;
let url = '';
let browser: Browser | null = null;
let domain: TestDomain | null = null;
const uuidOf = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
const HEAT_VM = uuidOf(0);

/** Rounds of the filled history (the store's insert path dominates the test's setup time). */
const ROUND_MS = 2 * 60_000;

/** 100 VMs, a round every 2 min for 24 h: DRAM and slow series per VM, moves; heat frames for VM 0. */
function fill(dbPath: string): void {
  const store = Store.open(dbPath);
  try {
    for (let i = 0; i < VMS; i++) {
      const uuid = uuidOf(i);
      store.recordVmSeen(uuid, `vm-${String(i).padStart(3, '0')}`, now - 24 * HOUR);
      store.recordVmSeen(uuid, `vm-${String(i).padStart(3, '0')}`, now);
    }
    store.replaceGuestNodes(HEAT_VM, [
      { node: 0, cpus: '0', sizeBytes: GiB, backing: { kind: 'memfd', path: null, id: 'ram-node0', migratable: true }, hva: [] },
      { node: 1, cpus: null, sizeBytes: GiB, backing: { kind: 'file', path: '/dev/shm/slow', id: 'ram-node1', migratable: true }, hva: [] },
    ] as never, now);
    const rounds = (24 * HOUR) / ROUND_MS;
    for (let r = rounds - 1; r >= 0; r--) {
      const t = now - r * ROUND_MS;
      const batch: HotnessSample[] = [];
      for (let i = 0; i < VMS; i++) {
        const wave = (Math.sin((r + i) / 15) + 1) / 2;
        const hot = Math.round((64 + i + 128 * wave) * 2 ** 20);
        const base = { t, vmUuid: uuidOf(i), guestNode: 0, scanMs: 5 + (i % 7), scannedBytes: 2 * GiB, failures: r % 47 === 0 ? i % 3 : 0 };
        batch.push({ ...base, hostNode: 0, hostTier: 'top', hotBytes: hot, warmBytes: 256 * 2 ** 20, coldBytes: GiB - hot, movedBytes: (r % 5) * 2 ** 20 });
        batch.push({ ...base, hostNode: 1, hostTier: 'slow', hotBytes: 0, warmBytes: 0, coldBytes: GiB - 256 * 2 ** 20, movedBytes: (i % 5) * 2 ** 20 });
      }
      store.insertSamples(batch);
    }
    // VM 0's memory: the first quarter hot in DRAM, the second cold in DRAM, and on the slow half
    // a hot band not promoted yet that sweeps through [1/2, 3/4) over the day, the rest cold.
    const pages = (2 * GiB) / 4096;
    const segments = [{ firstPage: 0, pages: pages / 2, guestNode: 0 }, { firstPage: pages / 2, pages: pages / 2, guestNode: 1 }];
    const variants = Array.from({ length: 16 }, (_, v) => {
      const counts = new Uint8Array(pages);
      const tiers = new Uint8Array(pages);
      const band = pages / 2 + (v * pages) / 64;
      for (let p = 0; p < pages; p++) {
        const inBand = p >= band && p < band + pages / 64;
        counts[p] = p < pages / 4 || inBand ? 4 : 0;
        tiers[p] = p < pages / 2 ? TIER_DRAM : TIER_SLOW;
      }
      return heatFrameOf({ segments, totalPages: pages, pageSize: 4096, counts, scans: 4, tiers }, 0);
    });
    const heat = heatHistoryOf(store);
    for (let t = now - 24 * HOUR; t < now; t += HEAT_CELL_MS) heat.record(HEAT_VM, { ...variants[Math.floor(t / (HOUR / 4)) % 16]!, t });
  } finally {
    store.close();
  }
}

async function serve(dbPath: string): Promise<void> {
  // The engine manages this test's domain only. Its tracker is kmod, which cannot run here (no
  // module): rounds record placement only, which is what a real daemon round gives this machine.
  const args = ['serve', '--listen', '127.0.0.1:0', '--db', dbPath, '--manage', `^${PREFIX}`, '--tracker', 'kmod', '--host-mbps', String(HOST_MBPS)];
  child = spawn(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), ...args], {
    env: { ...process.env, VMTIER_TOKEN: TOKEN, VMTIER_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (b) => (out += b));
  child.stderr!.on('data', (b) => (out += b));
  const deadline = Date.now() + 30_000;
  while (!/"msg":"vmtier serving"/.test(out)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`serve did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  url = /"url":"(http:[^"]+)"/.exec(out)![1]!;
}

async function apiGet(path: string): Promise<any> {
  const r = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  return r.json();
}

/** A fresh tab that records console errors and uncaught exceptions. */
async function newPage(): Promise<{ page: Page; errors: string[] }> {
  const ctx = await browser!.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await ctx.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  return { page, errors };
}

async function login(page: Page, hash: string): Promise<void> {
  await page.goto(`${url}/ui/${hash}`);
  await page.waitForSelector('#token-form');
  await page.fill('#token-form input', TOKEN);
  await page.click('#token-form button');
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(shotDir, { recursive: true });
  await page.screenshot({ path: join(shotDir, `${name}.png`) });
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install chromium`);
  const dbPath = join(dir, 'vmtier.db');
  let t = performance.now();
  const lap = (what: string) => {
    console.log(`dashboard setup: ${what} ${Math.round(performance.now() - t)} ms`);
    t = performance.now();
  };
  fill(dbPath);
  lap('fill 100 VMs x 24 h');
  domain = await startDomain('two-cells-memfd.xml', PREFIX);
  lap('TCG domain');
  await serve(dbPath);
  lap('serve');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // playwright gives every launch a fresh --user-data-dir of its own (it refuses one in args).
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  await destroyDomains(PREFIX);
  rmSync(dir, { recursive: true, force: true });
});

test('assets are public, data is not: /ui loads without a token, /v1 answers 401', async () => {
  const ui = await fetch(`${url}/ui/`);
  assert.equal(ui.status, 200);
  assert.match(await ui.text(), /<script src="\/ui\/app.js">/);
  const js = await fetch(`${url}/ui/app.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type') ?? '', /javascript/);
  for (const p of ['/v1/dashboard/vms', `/v1/vms/${HEAT_VM}/heat`, '/v1/dashboard/policy-schema']) {
    assert.equal((await fetch(`${url}${p}`)).status, 401, p);
  }
  assert.equal((await fetch(`${url}/ui/nope.js`)).status, 404);
  // A client's mistake in the heat query is a typed 400, never a 500.
  for (const q of ['frames=0', 'frames=x', 'from=yesterday', `from=${now}&to=${now - 1}`, 'colour=red']) {
    const r = await fetch(`${url}/v1/vms/${HEAT_VM}/heat?${q}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 400, q);
    assert.match(((await r.json()) as any).error.code, /INVALID_INPUT|VALIDATION/, q);
  }
});

test('VMs page: 100 VMs x 24 h load to interactive; every number equals the API; sort and filter work', async () => {
  const { page, errors } = await newPage();
  await login(page, '#/vms');
  await page.waitForSelector('#vm-table tbody tr');
  // Time to interactive with the token already in the tab: a fresh load of the page.
  const t0 = Date.now();
  await page.reload();
  await page.waitForSelector(`#vm-table tbody tr[data-uuid="${uuidOf(VMS - 1)}"]`);
  const loadMs = Date.now() - t0;
  console.log(`dashboard: VMs page with ${VMS} VMs x 24 h history interactive in ${loadMs} ms (host, real HTTP, headless Chromium)`);
  const ta = performance.now();
  const api = await apiGet('/v1/dashboard/vms');
  console.log(`dashboard: GET /v1/dashboard/vms (${api.vms.length} VMs) answered in ${Math.round(performance.now() - ta)} ms`);
  const fields = ['dramBytes', 'slowBytes', 'hotBytes', 'warmBytes', 'coldBytes', 'movedLastHourBytes'];
  const shown = await page.$$eval('#vm-table tbody tr', (trs) =>
    trs.map((tr) => ({
      uuid: tr.getAttribute('data-uuid'),
      cells: Object.fromEntries([...tr.querySelectorAll('td[data-field]')].map((td) => [td.getAttribute('data-field'), { value: td.getAttribute('data-value'), text: td.textContent }])),
    })),
  );
  assert.equal(shown.length, api.vms.length);
  assert.ok(api.vms.length >= VMS + 1, 'the 100 recorded VMs and the running TCG domain');
  assert.ok(api.vms.some((v: any) => v.uuid === domain!.uuid && v.running));
  for (const v of api.vms) {
    const row = shown.find((r) => r.uuid === v.uuid);
    assert.ok(row, `row for ${v.name}`);
    for (const f of fields) {
      assert.equal(Number(row.cells[f]!.value), v[f], `${v.name} ${f}`);
      assert.equal(row.cells[f]!.text, fmtBytes(v[f]), `${v.name} ${f} text`);
    }
    assert.equal(row.cells.mode!.text, v.mode);
  }
  // The recorded figures are not all zero (the check above would pass on an empty page otherwise).
  assert.ok(api.vms.filter((v: any) => v.hotBytes > 0 && v.movedLastHourBytes > 0).length >= VMS);
  await shot(page, 'vms');

  // Sort by hot bytes (descending on the first click): the first row is the hottest VM.
  await page.click('#vm-table th[data-key="hotBytes"]');
  const firstHot = Number(await page.getAttribute('#vm-table tbody tr:first-child td[data-field="hotBytes"]', 'data-value'));
  assert.equal(firstHot, Math.max(...api.vms.map((v: any) => v.hotBytes)));
  await page.fill('#vm-filter', 'vm-01');
  assert.equal(await page.locator('#vm-table tbody tr').count(), 10); // vm-010 … vm-019
  assert.match((await page.textContent('#vm-count'))!, /^10 of /);
  assert.deepEqual(errors.filter((e) => !/401 \(Unauthorized\)/.test(e)), []);
  await page.context().close();
});

test('Host page: nodes by tier with total/free equal to /v1/host, kernel state and warnings', async () => {
  const { page, errors } = await newPage();
  // Node memory figures move (this shared host's MemTotal too): the page must show a value
  // between what the API said just before and just after it rendered.
  const before = await apiGet('/v1/host');
  await login(page, '#/host');
  await page.waitForSelector('#host-nodes tbody tr');
  const host = await apiGet('/v1/host');
  assert.deepEqual(host.nodes.map((n: any) => n.node), before.nodes.map((n: any) => n.node));
  assert.equal(await page.locator('#host-nodes tbody tr').count(), host.nodes.length);
  for (const [i, n] of host.nodes.entries()) {
    for (const f of ['memTotalBytes', 'memFreeBytes']) {
      const cell = `#host-nodes tr[data-node="${n.node}"] td[data-field="${f}"]`;
      const v = Number(await page.getAttribute(cell, 'data-value'));
      const lo = Math.min(n[f], before.nodes[i][f]);
      const hi = Math.max(n[f], before.nodes[i][f]);
      // Free memory changes between any two reads; total only when the host changes it.
      const slack = f === 'memFreeBytes' ? n.memTotalBytes * 0.05 : 0;
      assert.ok(v >= lo - slack && v <= hi + slack, `node ${n.node} ${f}: page ${v}, API ${lo}..${hi}`);
      assert.equal(await page.textContent(cell), fmtBytes(v));
    }
  }
  const nb = host.kernel.numaBalancing;
  const kernelText = (await page.textContent('#kernel-state'))!;
  assert.ok(kernelText.includes(nb ? `${nb.value} (${nb.mode})` : 'unknown'));
  assert.equal(await page.locator('#warnings li').count(), host.warnings.length);
  const engine = (await apiGet('/v1/engine')) as any;
  assert.match((await page.textContent('#engine-card'))!, new RegExp(`VMs managed: ${engine.vms.length}`));
  assert.equal(engine.vms.length, 1);
  // The engine's host budget: every figure on the page is the API's (value and text).
  const b = engine.budget;
  assert.equal(b.rateBytesPerSec, HOST_MBPS * 2 ** 20, 'serve --host-mbps reaches the engine status');
  const budgetCells = Object.fromEntries(
    await page.$$eval('#budget td[data-field]', (tds) => tds.map((td) => [td.getAttribute('data-field'), { value: td.getAttribute('data-value'), text: td.textContent }])),
  ) as Record<string, { value: string; text: string }>;
  const apiBudget: Record<string, number> = {
    rateBytesPerSec: b.rateBytesPerSec, capacityBytes: b.capacityBytes, availableBytes: b.availableBytes,
    'outstanding.leases': b.outstanding.leases, 'outstanding.reservedBytes': b.outstanding.reservedBytes,
    'lastHour.leases': b.lastHour.leases, 'lastHour.wantedBytes': b.lastHour.wantedBytes, 'lastHour.reservedBytes': b.lastHour.reservedBytes,
    'lastHour.settledBytes': b.lastHour.settledBytes, 'lastHour.shortLeases': b.lastHour.shortLeases, dramFreeWatermarkBytes: b.dramFreeWatermarkBytes,
  };
  assert.deepEqual(Object.keys(budgetCells).sort(), Object.keys(apiBudget).sort());
  for (const [f, v] of Object.entries(apiBudget)) {
    assert.equal(Number(budgetCells[f]!.value), v, `budget ${f}`);
    const text = f === 'rateBytesPerSec' ? `${fmtBytes(v)}/s` : /leases$|Leases$/.test(f) ? String(v) : fmtBytes(v);
    assert.equal(budgetCells[f]!.text, text, `budget ${f} text`);
  }
  assert.equal(budgetCells.rateBytesPerSec!.text, '300 MiB/s');
  assert.match((await page.textContent('#budget-hour'))!, new RegExp(`of ${fmtBytes(b.rateBytesPerSec * 3600).replace('.', '\\.')} allowed`));
  assert.equal(await page.locator('#budget-waiting li').count(), b.waiting.length);
  await shot(page, 'host');
  assert.deepEqual(errors.filter((e) => !/401 \(Unauthorized\)/.test(e)), []);
  await page.context().close();
});

test('VM page: charts drawn from history, layout shown, policy edit round-trips, invalid edit shows the field error', async () => {
  const { page, errors } = await newPage();
  await login(page, `#/vm/${HEAT_VM}`);
  await page.waitForSelector('#chart-tiers canvas');
  await page.waitForSelector('#policy-form');
  // 1 h range at 15 s steps: one point per recorded round (every 2 min), up to the fill's `now`.
  const points = Number(await page.getAttribute('#chart-tiers', 'data-points'));
  const lagRounds = Math.ceil((Date.now() - now) / ROUND_MS);
  assert.ok(points >= 29 - lagRounds && points <= 31, `points ${points} (fill ${lagRounds} rounds ago)`);
  assert.equal(await page.locator('#guest-nodes tbody tr').count(), 2);
  assert.equal(await page.getAttribute('#guest-nodes tbody tr:first-child td[data-field="sizeBytes"]', 'data-value'), String(GiB));
  await page.click('button[data-range="24h"]');
  await page.waitForFunction(() => Number(document.querySelector('#chart-tiers')?.getAttribute('data-points')) > 200);
  assert.ok(Number(await page.getAttribute('#chart-tiers', 'data-points')) <= 241);
  await shot(page, 'vm');
  // 30 days at 3 h steps: the 24 h of history fill 8 or 9 of its 240 points.
  await page.click('button[data-range="30d"]');
  await page.waitForSelector('button[data-range="30d"].active');
  await page.waitForFunction(() => {
    const n = Number(document.querySelector('#chart-tiers')?.getAttribute('data-points'));
    return n >= 8 && n <= 10;
  });
  await page.click('button[data-range="1h"]');
  await page.waitForSelector('button[data-range="1h"].active');

  const before = await apiGet(`/v1/vms/${HEAT_VM}/policy`);
  await page.fill('#policy-form [name="thresholds.coldMaxFraction"]', '0.2');
  await page.selectOption('#policy-form [name="mode"]', 'tier');
  await page.click('#policy-save');
  await page.waitForFunction(() => /saved/.test(document.querySelector('#policy-version')?.textContent ?? ''));
  const afterPut = await apiGet(`/v1/vms/${HEAT_VM}/policy`);
  assert.equal(afterPut.version, before.version + 1);
  assert.equal(afterPut.policy.thresholds.coldMaxFraction, 0.2);
  assert.equal(afterPut.policy.mode, 'tier');
  assert.equal(afterPut.policy.scan.intervalMs, before.policy.scan.intervalMs, 'untouched fields keep their values');

  await page.fill('#policy-form [name="thresholds.hotMinFraction"]', '1.5');
  await page.click('#policy-save');
  const fieldErr = page.locator('label[data-path="/thresholds/hotMinFraction"] .field-error');
  await fieldErr.waitFor();
  await page.waitForFunction(() => (document.querySelector('label[data-path="/thresholds/hotMinFraction"] .field-error')?.textContent ?? '') !== '');
  assert.match((await fieldErr.textContent())!, /hotMinFraction/);
  assert.equal(await page.locator('label[data-path="/thresholds/hotMinFraction"].invalid').count(), 1);
  assert.equal((await apiGet(`/v1/vms/${HEAT_VM}/policy`)).version, afterPut.version, 'the invalid edit stored nothing');
  await shot(page, 'vm-policy-error');
  // 400 from the invalid PUT is the only expected console line.
  assert.deepEqual(errors.filter((e) => !/401 \(Unauthorized\)|400 \(Bad Request\)/.test(e)), []);
  await page.context().close();
});

test('heatmap: drawn from the heat API; a hot DRAM region and a cold slow region differ in colour', async () => {
  const { page, errors } = await newPage();
  await login(page, `#/vm/${HEAT_VM}/heat`);
  await page.waitForFunction(() => Number(document.querySelector('#heatmap')?.getAttribute('data-columns')) > 0);
  const heat = await apiGet(`/v1/vms/${HEAT_VM}/heat?frames=480`);
  assert.equal(heat.buckets, 1024);
  assert.equal(Number(await page.getAttribute('#heatmap', 'data-columns')), heat.frames.length);
  // Right-hand part of the canvas (recent columns): y at 1/8 (hot, DRAM) and 7/8 (cold, slow).
  const px = await page.evaluate(() => {
    const c = document.querySelector('#heatmap');
    const g = c.getContext('2d')!;
    const at = (fy: number) => [...g.getImageData(Math.floor(c.width * 0.8), Math.floor(c.height * fy), 1, 1).data];
    return { hot: at(0.125), cold: at(0.875), mid: at(0.375) };
  });
  const dist = (a: number[], b: number[]) => Math.hypot(a[0]! - b[0]!, a[1]! - b[1]!, a[2]! - b[2]!);
  assert.ok(dist(px.hot, px.cold) > 100, `hot ${px.hot} vs cold ${px.cold}`);
  assert.ok(px.hot[0]! > px.hot[2]!, `hot DRAM is orange: ${px.hot}`);
  assert.ok(px.cold[2]! > px.cold[0]!, `cold slow is blue: ${px.cold}`);
  assert.ok(dist(px.hot, px.mid) > 60, `hot DRAM ${px.hot} vs cold DRAM ${px.mid}`);
  await page.click('button[data-range="24h"]');
  await page.waitForFunction(() => Number(document.querySelector('#heatmap')?.getAttribute('data-columns')) > 400);
  await shot(page, 'heatmap');
  assert.deepEqual(errors.filter((e) => !/401 \(Unauthorized\)/.test(e)), []);
  await page.context().close();
});

test("the real TCG domain: the engine's rounds record heat (placement only here), shown on its pages with the tracker's error", async () => {
  const { page, errors } = await newPage();
  const uuid = domain!.uuid;
  let heat: any = null;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    heat = await apiGet(`/v1/vms/${uuid}/heat?from=${now - HOUR}`);
    if (heat.frames.length > 0) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  assert.ok(heat.frames.length > 0, 'a heat frame from the daemon');
  const vm = await apiGet(`/v1/vms/${uuid}`);
  assert.deepEqual(heat.nodes.map((n: any) => n.guestNode), vm.guestNodes.map((n: any) => n.node));
  assert.ok(heat.buckets > 0 && heat.buckets <= 1024);
  const f = heat.frames[heat.frames.length - 1];
  assert.equal(f.hot, null, 'no tracker ran: no hotness');
  const resident = Buffer.from(f.resident, 'base64');
  assert.equal(resident.length, heat.buckets);
  assert.ok(resident.some((b) => b > 0), 'the booted guest has resident memory');

  await login(page, `#/vm/${uuid}`);
  await page.waitForSelector('#engine-status table');
  assert.match((await page.textContent('#engine-status'))!, /kmod — unavailable: /);
  // Live: the engine's round count grows on the open page, without a reload.
  const roundsAt = async () => Number(await page.textContent('#engine-status td[data-field="rounds"]'));
  const firstRounds = await roundsAt();
  await page.waitForFunction((n) => Number(document.querySelector('#engine-status td[data-field="rounds"]')?.textContent) > n, firstRounds, { timeout: 30_000 });
  assert.equal((await apiGet(`/v1/vms/${uuid}/engine`)).rounds >= (await roundsAt()), true);
  assert.match((await page.textContent('h1'))!, new RegExp(domain!.name));
  assert.equal(await page.locator('#guest-nodes tbody tr').count(), vm.guestNodes.length);
  await page.goto(`${url}/ui/#/vms`);
  await page.waitForSelector(`#vm-table tr[data-uuid="${uuid}"]`);
  assert.match((await page.textContent(`#vm-table tr[data-uuid="${uuid}"] td[data-field="tracker"]`))!, /^kmod: /);
  await page.goto(`${url}/ui/#/vm/${uuid}/heat`);
  await page.waitForFunction(() => Number(document.querySelector('#heatmap')?.getAttribute('data-columns')) > 0);
  await shot(page, 'heatmap-tcg-domain');
  assert.deepEqual(errors.filter((e) => !/401 \(Unauthorized\)/.test(e)), []);
  await page.context().close();
});
