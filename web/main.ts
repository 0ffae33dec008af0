/**
 * vmtier's dashboard: plain DOM, uPlot for time series, a canvas for the heatmap. Every number
 * comes from the REST API with the tab's bearer token (asked once, kept in sessionStorage).
 * Pages are hash routes: #/host, #/vms, #/vm/<uuid>, #/vm/<uuid>/heat.
 */
import uPlot from 'uplot';
import { RANGES, fmtBytes, heatColour } from './format.js';

const TOKEN_KEY = 'vmtier.token';
const POLL_MS = 5000;
/** Cleared on every page change: the poll timer and charts of the page being left. */
let cleanup: Array<() => void> = [];

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

async function api(path: string, init: RequestInit = {}): Promise<Json> {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers: Record<string, string> = { ...(init.headers as Record<string, string>) };
  if (token) headers.authorization = `Bearer ${token}`;
  if (init.body) headers['content-type'] = 'application/json';
  const r = await fetch(path, { ...init, headers });
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const e = new ApiError(r.status, body?.error?.code ?? 'HTTP_ERROR', body?.error?.message ?? `HTTP ${r.status}`);
    if (r.status === 401) showTokenForm(e.message);
    throw e;
  }
  return body;
}

function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | number | boolean> = {}, ...kids: Array<Node | string | null>): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of kids) if (c !== null) el.append(c);
  return el;
}

const main = () => document.getElementById('main')!;

function setStatus(text: string): void {
  document.getElementById('status')!.textContent = text;
}

function showTokenForm(why: string): void {
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', placeholder: 'bearer token' });
  const form = h('form', { id: 'token-form', class: 'card' }, h('h1', {}, 'Token'), h('p', { class: 'warn' }, why), input, ' ', h('button', { type: 'submit' }, 'Use for this tab'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    void route();
  });
  main().replaceChildren(form);
  input.focus();
}

function bytesCell(v: number, field: string): HTMLTableCellElement {
  return h('td', { class: 'num', 'data-field': field, 'data-value': v }, fmtBytes(v));
}

function errorBox(e: unknown): HTMLElement {
  return h('p', { class: 'warn' }, e instanceof Error ? e.message : String(e));
}

// ---- Host ---------------------------------------------------------------------------------

async function hostPage(): Promise<void> {
  const [host, engine, overview] = await Promise.all([api('/v1/host'), api('/v1/dashboard/engine').then((r) => r.engine), api('/v1/dashboard/vms')]);
  const nodes = h('table', { id: 'host-nodes' },
    h('thead', {}, h('tr', {}, h('th', {}, 'node'), h('th', {}, 'tier'), h('th', {}, 'kernel tier'), h('th', {}, 'cpus'), h('th', { class: 'num' }, 'total'), h('th', { class: 'num' }, 'free'), h('th', {}, 'used'))));
  const body = h('tbody');
  for (const n of [...host.nodes].sort((a: Json, b: Json) => (a.tier.class === b.tier.class ? a.node - b.node : a.tier.class === 'top' ? -1 : 1))) {
    const used = n.memTotalBytes > 0 ? (n.memTotalBytes - n.memFreeBytes) / n.memTotalBytes : 0;
    const tr = h('tr', { 'data-node': n.node },
      h('td', {}, String(n.node)),
      h('td', {}, h('span', { class: `tag ${n.tier.class}` }, n.tier.class === 'top' ? 'DRAM (top)' : 'slow'), ' ', h('span', { class: 'muted' }, `(${n.tier.source})`)),
      h('td', {}, n.tier.kernelTier === null ? '–' : String(n.tier.kernelTier)),
      h('td', {}, n.cpus ?? 'none'),
      bytesCell(n.memTotalBytes, 'memTotalBytes'),
      bytesCell(n.memFreeBytes, 'memFreeBytes'),
      h('td', {}, h('div', { class: `bar ${n.tier.class}` }, h('span', { style: `width:${(used * 100).toFixed(1)}%` }))),
    );
    body.append(tr);
  }
  nodes.append(body);
  const k = host.kernel;
  const kernel = h('table', { id: 'kernel-state' },
    h('tr', {}, h('th', {}, 'numa_balancing'), h('td', {}, k.numaBalancing ? `${k.numaBalancing.value} (${k.numaBalancing.mode})` : 'unknown')),
    h('tr', {}, h('th', {}, 'demotion_enabled'), h('td', {}, k.demotionEnabled === null ? 'unknown' : String(k.demotionEnabled))),
    h('tr', {}, h('th', {}, 'promote rate limit'), h('td', {}, k.promoteRateLimitMBps === null ? 'unknown' : `${k.promoteRateLimitMBps} MB/s`)));
  const warnings = [...new Set<string>([...host.warnings, ...(engine?.warnings ?? [])])];
  const movedHour = overview.vms.reduce((s: number, v: Json) => s + v.movedLastHourBytes, 0);
  const tiers = { top: 0, slow: 0 } as Record<string, number>;
  for (const n of host.nodes) tiers[n.tier.class] += n.memTotalBytes;
  main().replaceChildren(
    h('h1', {}, 'Host'),
    h('div', { class: 'grid' },
      h('div', { class: 'card' }, h('h2', {}, 'NUMA nodes by tier'), nodes,
        h('p', { class: 'muted' }, `DRAM ${fmtBytes(tiers.top)} · slow tier ${fmtBytes(tiers.slow)}`)),
      h('div', { class: 'card' }, h('h2', {}, "Kernel's own tiering"), kernel,
        h('h2', {}, `Warnings (${warnings.length})`),
        warnings.length === 0 ? h('p', { class: 'muted', id: 'warnings' }, 'none') : h('ul', { id: 'warnings', class: 'warn' }, ...warnings.map((w) => h('li', {}, w))))),
    h('div', { class: 'grid' }, h('div', { class: 'card', id: 'engine-card' }, h('h2', {}, 'Engine'),
      engine === null
        ? h('p', { class: 'muted' }, 'The tiering engine is not running in this service (serve --no-engine).')
        : h('p', {}, `running: ${engine.running} · tracker override: ${engine.trackerOverride ?? 'none (each policy chooses)'} · VMs managed: ${engine.vms.length}`),
      h('p', { id: 'moved-hour' }, `Moved in the last hour, all VMs (history): ${fmtBytes(movedHour)} (${(movedHour / 3600 / 2 ** 20).toFixed(2)} MiB/s on average)`)),
    budgetCard(engine, overview.vms)),
  );
  // The budget changes with every lease: refreshed like the VM page's charts.
  const timer = setInterval(() => {
    api('/v1/dashboard/engine')
      .then((r) => document.getElementById('budget-card')?.replaceWith(budgetCard(r.engine, overview.vms)))
      .catch((e) => setStatus(`update failed: ${(e as Error).message}`));
  }, POLL_MS);
  cleanup.push(() => clearInterval(timer));
}

/** A fraction as a bar with its label; `over` marks more than the whole (an overrun is paid by waiting). */
function gauge(id: string, fraction: number, label: string): HTMLElement {
  const f = Math.max(0, Math.min(1, fraction));
  return h('div', { class: 'gauge', id },
    h('div', { class: `bar budget${fraction > 1 ? ' over' : ''}` }, h('span', { style: `width:${(f * 100).toFixed(1)}%` })),
    h('span', { class: 'muted' }, label));
}

/** The engine's host-wide migration budget (token bucket): configuration, what it holds, its last hour, who waits for it. */
function budgetCard(engine: Json, vms: Json[]): HTMLElement {
  const card = h('div', { class: 'card', id: 'budget-card' }, h('h2', {}, 'Host migration budget'));
  if (engine === null) {
    card.append(h('p', { class: 'muted' }, 'No engine: no budget in use.'));
    return card;
  }
  const b = engine.budget;
  const hourBytes = b.rateBytesPerSec * 3600;
  const used = hourBytes > 0 ? b.lastHour.settledBytes / hourBytes : 0;
  const held = b.capacityBytes > 0 ? b.availableBytes / b.capacityBytes : 0;
  const row = (label: string, field: string, value: number, text: string) =>
    h('tr', {}, h('th', {}, label), h('td', { class: 'num', 'data-field': field, 'data-value': value }, text));
  const name = (uuid: string) => vms.find((v) => v.uuid === uuid)?.name ?? engine.vms.find((v: Json) => v.uuid === uuid)?.name ?? uuid;
  card.append(
    gauge('budget-hour', used, `last hour: ${fmtBytes(b.lastHour.settledBytes)} moved of ${fmtBytes(hourBytes)} allowed (${(used * 100).toFixed(2)} %)`),
    gauge('budget-bucket', held, `bucket now: ${fmtBytes(b.availableBytes)} of ${fmtBytes(b.capacityBytes)} available`),
    h('table', { id: 'budget' },
      row('rate (--host-mbps)', 'rateBytesPerSec', b.rateBytesPerSec, `${fmtBytes(b.rateBytesPerSec)}/s`),
      row('bucket capacity (largest lease)', 'capacityBytes', b.capacityBytes, fmtBytes(b.capacityBytes)),
      row('available now', 'availableBytes', b.availableBytes, fmtBytes(b.availableBytes)),
      row('leases in flight', 'outstanding.leases', b.outstanding.leases, String(b.outstanding.leases)),
      row('bytes they hold', 'outstanding.reservedBytes', b.outstanding.reservedBytes, fmtBytes(b.outstanding.reservedBytes)),
      row('leases, last hour', 'lastHour.leases', b.lastHour.leases, String(b.lastHour.leases)),
      row('asked, last hour', 'lastHour.wantedBytes', b.lastHour.wantedBytes, fmtBytes(b.lastHour.wantedBytes)),
      row('reserved, last hour', 'lastHour.reservedBytes', b.lastHour.reservedBytes, fmtBytes(b.lastHour.reservedBytes)),
      row('attempted (settled), last hour', 'lastHour.settledBytes', b.lastHour.settledBytes, fmtBytes(b.lastHour.settledBytes)),
      row('leases short of what they asked, last hour', 'lastHour.shortLeases', b.lastHour.shortLeases, String(b.lastHour.shortLeases)),
      row('promotion pauses below free DRAM', 'dramFreeWatermarkBytes', b.dramFreeWatermarkBytes, fmtBytes(b.dramFreeWatermarkBytes))),
    h('h2', {}, `VMs short of budget (${b.waiting.length})`),
    b.waiting.length === 0
      ? h('p', { class: 'muted', id: 'budget-waiting' }, 'none: every latest lease got what it asked')
      : h('ul', { id: 'budget-waiting' }, ...b.waiting.map((w: Json) =>
        h('li', { 'data-vm': w.vm }, h('a', { href: `#/vm/${w.vm}` }, name(w.vm)),
          ` asked ${fmtBytes(w.wantedBytes)}, got ${fmtBytes(w.reservedBytes)} — limited by ${w.limitedBy === 'host' ? 'the host budget' : w.limitedBy === 'vm' ? 'its own migration.maxMBps' : 'DRAM room for promotion'}`))),
  );
  return card;
}

// ---- VMs ----------------------------------------------------------------------------------

interface VmColumn {
  key: string;
  label: string;
  num?: boolean;
  cell: (v: Json) => HTMLTableCellElement;
  sortValue: (v: Json) => number | string;
}

const VM_COLUMNS: VmColumn[] = [
  { key: 'name', label: 'name', cell: (v) => h('td', { 'data-field': 'name' }, h('a', { href: `#/vm/${v.uuid}` }, v.name), v.running ? '' : h('span', { class: 'muted' }, ' (not running)')), sortValue: (v) => v.name },
  { key: 'mode', label: 'mode', cell: (v) => h('td', { 'data-field': 'mode' }, v.mode), sortValue: (v) => v.mode },
  {
    key: 'tracker', label: 'tracker',
    cell: (v) => h('td', { 'data-field': 'tracker', title: v.tracker?.error ?? '' }, v.tracker ? (v.tracker.available ? v.tracker.name : h('span', { class: 'tag bad' }, `${v.tracker.name}: ${v.tracker.error ?? 'unavailable'}`)) : h('span', { class: 'muted' }, '–')),
    sortValue: (v) => (v.tracker ? `${v.tracker.available ? 0 : 1}${v.tracker.name}` : '2'),
  },
  ...(['dramBytes', 'slowBytes', 'hotBytes', 'warmBytes', 'coldBytes', 'movedLastHourBytes'] as const).map((k): VmColumn => ({
    key: k,
    label: { dramBytes: 'DRAM', slowBytes: 'slow', hotBytes: 'hot', warmBytes: 'warm', coldBytes: 'cold', movedLastHourBytes: 'moved 1 h' }[k],
    num: true,
    cell: (v) => bytesCell(v[k], k),
    sortValue: (v) => v[k],
  })),
  { key: 'moveFailuresLastHour', label: 'failed pages 1 h', num: true, cell: (v) => h('td', { class: 'num', 'data-field': 'moveFailuresLastHour', 'data-value': v.moveFailuresLastHour }, String(v.moveFailuresLastHour)), sortValue: (v) => v.moveFailuresLastHour },
  { key: 'roundFailures', label: 'round failures', num: true, cell: (v) => h('td', { class: 'num', 'data-field': 'roundFailures', 'data-value': v.roundFailures }, String(v.roundFailures)), sortValue: (v) => v.roundFailures },
  { key: 'backoffUntil', label: 'backoff until', cell: (v) => h('td', { 'data-field': 'backoffUntil' }, v.backoffUntil ? new Date(v.backoffUntil).toLocaleTimeString() : '–'), sortValue: (v) => v.backoffUntil ?? '' },
];

let vmSort = { key: 'name', dir: 1 };
let vmFilter = '';

async function vmsPage(): Promise<void> {
  const data = await api('/v1/dashboard/vms');
  const filter = h('input', { type: 'search', id: 'vm-filter', placeholder: 'filter by name, uuid, mode, tracker', value: vmFilter, size: 40 });
  const table = h('table', { id: 'vm-table' });
  const count = h('span', { class: 'muted', id: 'vm-count' });
  const draw = () => {
    const col = VM_COLUMNS.find((c) => c.key === vmSort.key) ?? VM_COLUMNS[0]!;
    const f = vmFilter.toLowerCase();
    const rows = (data.vms as Json[])
      .filter((v) => !f || [v.name, v.uuid, v.mode, v.tracker?.name ?? ''].some((s) => s.toLowerCase().includes(f)))
      .sort((a, b) => {
        const x = col.sortValue(a);
        const y = col.sortValue(b);
        return (x < y ? -1 : x > y ? 1 : 0) * vmSort.dir;
      });
    const head = h('tr', {}, ...VM_COLUMNS.map((c) => {
      const th = h('th', { class: `sortable${c.num ? ' num' : ''}${c.key === vmSort.key ? (vmSort.dir > 0 ? ' sorted-asc' : ' sorted-desc') : ''}`, 'data-key': c.key }, c.label);
      th.addEventListener('click', () => {
        vmSort = { key: c.key, dir: vmSort.key === c.key ? -vmSort.dir : c.num ? -1 : 1 };
        draw();
      });
      return th;
    }));
    table.replaceChildren(h('thead', {}, head), h('tbody', {}, ...rows.map((v) => h('tr', { 'data-uuid': v.uuid }, ...VM_COLUMNS.map((c) => c.cell(v))))));
    count.textContent = `${rows.length} of ${data.vms.length} VMs`;
  };
  filter.addEventListener('input', () => {
    vmFilter = filter.value;
    draw();
  });
  draw();
  main().replaceChildren(h('h1', {}, 'VMs'), h('p', {}, filter, ' ', count, data.libvirt.connected ? '' : h('span', { class: 'warn' }, ' libvirtd unreachable: showing recorded VMs')), h('div', { class: 'card' }, table));
}

// ---- one VM -------------------------------------------------------------------------------

let vmRange = RANGES[0]!;

function chart(el: HTMLElement, title: string, series: Array<{ label: string; stroke: string; fill?: string }>, data: uPlot.AlignedData, yBytes: boolean): uPlot {
  const opts: uPlot.Options = {
    title,
    width: Math.max(360, el.clientWidth - 20),
    height: 220,
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, fill: s.fill, width: 1, value: (_u: uPlot, v: number | null) => (v === null ? '–' : yBytes ? fmtBytes(v) : v.toFixed(1)) }))],
    axes: [{}, { size: 70, values: (_u, vals) => vals.map((v) => (yBytes ? fmtBytes(v) : String(v))) }],
  };
  return new uPlot(opts, data, el);
}

/** Stacked: series are drawn cumulatively, largest first, so each band shows its own part. */
function stack(rows: number[][]): number[][] {
  const out: number[][] = [];
  let acc = rows[0] ? rows[0].map(() => 0) : [];
  for (const r of rows) {
    acc = acc.map((a, i) => a + (r[i] ?? 0));
    out.push(acc);
  }
  return out.reverse();
}

async function vmPage(uuid: string): Promise<void> {
  const [vm, policy, schema] = await Promise.all([api(`/v1/vms/${uuid}`), api(`/v1/vms/${uuid}/policy`), api('/v1/dashboard/policy-schema')]);
  const ranges = h('p', { class: 'ranges', id: 'ranges' }, ...RANGES.map((r) => {
    const b = h('button', { type: 'button', class: r === vmRange ? 'active' : '', 'data-range': r.label }, r.label);
    b.addEventListener('click', () => {
      vmRange = r;
      void route();
    });
    return b;
  }));
  const tierChart = h('div', { id: 'chart-tiers' });
  const movesChart = h('div', { id: 'chart-moves' });
  const scanChart = h('div', { id: 'chart-scan' });
  const engineBox = h('div', { id: 'engine-status' }, 'loading…');
  const layout = h('table', { id: 'guest-nodes' },
    h('thead', {}, h('tr', {}, h('th', {}, 'guest node'), h('th', {}, 'cpus'), h('th', { class: 'num' }, 'size'), h('th', {}, 'backing'), h('th', {}, 'movable'))),
    h('tbody', {}, ...vm.guestNodes.map((n: Json) => h('tr', {}, h('td', {}, String(n.node)), h('td', {}, n.cpus ?? '–'), bytesCell(n.sizeBytes, 'sizeBytes'), h('td', {}, `${n.backing.kind}${n.backing.path ? ` ${n.backing.path}` : ''}`), h('td', {}, n.backing.migratable ? 'yes' : h('span', { class: 'warn' }, 'no'))))));
  main().replaceChildren(
    h('h1', {}, `VM ${vm.name} `, h('span', { class: 'muted' }, `${vm.uuid} · ${vm.state}${vm.running ? '' : ' (not running)'}`)),
    h('p', {}, h('a', { href: `#/vm/${uuid}/heat`, id: 'heat-link' }, 'Heatmap of guest memory →')),
    ranges,
    h('div', { class: 'grid' }, h('div', { class: 'card' }, tierChart), h('div', { class: 'card' }, movesChart), h('div', { class: 'card' }, scanChart),
      h('div', { class: 'card' }, h('h2', {}, 'Engine'), engineBox)),
    h('div', { class: 'grid' }, h('div', { class: 'card' }, h('h2', {}, 'Guest NUMA layout'), vm.guestNodes.length ? layout : h('p', { class: 'muted' }, 'not mapped yet')),
      h('div', { class: 'card' }, h('h2', {}, 'Policy'), policyForm(uuid, schema.schema, policy))),
  );
  let plots: uPlot[] = [];
  const load = async () => {
    const to = Date.now();
    const step = Math.max(1000, Math.ceil(vmRange.ms / 240));
    const hist = await api(`/v1/vms/${uuid}/history?from=${to - vmRange.ms}&to=${to}&step=${step}`);
    const n = Math.ceil(vmRange.ms / step);
    const xs = Array.from({ length: n }, (_, i) => (to - vmRange.ms + i * step) / 1000);
    const z = () => new Array<number>(n).fill(0);
    const parts: Record<string, number[]> = { topHot: z(), topWarm: z(), topCold: z(), slowHot: z(), slowWarm: z(), slowCold: z(), promoted: z(), demoted: z() };
    const scanSum = z();
    const scanN = z();
    const seen = new Array<boolean>(n).fill(false);
    for (const s of hist.series) {
      const t = s.hostTier === 'top' ? 'top' : 'slow';
      for (const b of s.buckets) {
        const i = Math.floor((Date.parse(b.start) - (to - vmRange.ms)) / step);
        if (i < 0 || i >= n) continue;
        seen[i] = true;
        parts[`${t}Hot`]![i]! += b.hotBytes;
        parts[`${t}Warm`]![i]! += b.warmBytes;
        parts[`${t}Cold`]![i]! += b.coldBytes;
        parts[t === 'top' ? 'promoted' : 'demoted']![i]! += b.movedBytes;
        scanSum[i]! += b.scanMs * b.samples;
        scanN[i]! += b.samples;
      }
    }
    const gap = (a: number[]) => a.map((v, i) => (seen[i] ? v : null)) as unknown as number[];
    const stacked = stack([parts.topHot!, parts.topWarm!, parts.topCold!, parts.slowHot!, parts.slowWarm!, parts.slowCold!]).map(gap);
    for (const p of plots) p.destroy();
    tierChart.replaceChildren();
    movesChart.replaceChildren();
    scanChart.replaceChildren();
    const labels = [['slow cold', '#a5d8ff'], ['slow warm', '#4dabf7'], ['slow hot', '#1864ab'], ['DRAM cold', '#ffd8a8'], ['DRAM warm', '#ffa94d'], ['DRAM hot', '#d9480f']];
    plots = [
      chart(tierChart, 'Hot / warm / cold per tier (stacked)', labels.map(([label, c]) => ({ label: label!, stroke: c!, fill: c! })), [xs, ...stacked], true),
      chart(movesChart, 'Moved per direction', [{ label: 'promoted', stroke: '#d9480f' }, { label: 'demoted', stroke: '#1864ab' }], [xs, gap(parts.promoted!), gap(parts.demoted!)], true),
      chart(scanChart, 'Scan time (ms)', [{ label: 'scan ms', stroke: '#495057' }], [xs, scanSum.map((s, i) => (scanN[i] ? s / scanN[i]! : null)) as unknown as number[]], false),
    ];
    tierChart.dataset.points = String(seen.filter(Boolean).length);
    const e = (await api('/v1/dashboard/engine')).engine?.vms.find((v: Json) => v.uuid === uuid);
    if (!e) engineBox.replaceChildren(h('p', { class: 'muted' }, 'No tiering loop manages this VM (engine not running, VM not running, or filtered out).'));
    else {
      const lr = e.lastRound;
      engineBox.replaceChildren(h('table', {},
        h('tr', {}, h('th', {}, 'state'), h('td', { 'data-field': 'state' }, e.state)),
        h('tr', {}, h('th', {}, 'mode / policy'), h('td', {}, `${e.mode} (v${e.policyVersion})`)),
        h('tr', {}, h('th', {}, 'tracker'), h('td', {}, e.tracker ? `${e.tracker.name}${e.tracker.available ? '' : ` — unavailable: ${e.tracker.error?.message ?? ''}`}` : '–')),
        h('tr', {}, h('th', {}, 'rounds'), h('td', { 'data-field': 'rounds' }, String(e.rounds))),
        h('tr', {}, h('th', {}, 'last round'), h('td', {}, lr ? `${new Date(lr.t).toLocaleTimeString()} · ${lr.durationMs.toFixed(0)} ms · scan ${lr.scanMs.toFixed(0)} ms · hot ${fmtBytes(lr.hotBytes)}` : '–')),
        h('tr', {}, h('th', {}, 'moved (total)'), h('td', {}, `promoted ${e.totals.promote.byClass.moved} pages · demoted ${e.totals.demote.byClass.moved} pages`)),
        h('tr', {}, h('th', {}, 'failures'), h('td', {}, `${e.failures}${e.lastError ? ` — ${e.lastError.code}: ${e.lastError.message}` : ''}`)),
        h('tr', {}, h('th', {}, 'backoff until'), h('td', {}, e.backoffUntil ? new Date(e.backoffUntil).toLocaleTimeString() : '–'))));
    }
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  };
  await load();
  // Live: refetch while the page is open (one request per chart set; the server answers from rollups).
  const timer = setInterval(() => void load().catch((e) => setStatus(`update failed: ${(e as Error).message}`)), POLL_MS);
  cleanup.push(() => {
    clearInterval(timer);
    for (const p of plots) p.destroy();
  });
}

// ---- policy form (built from the API's own JSON Schema) -----------------------------------

function enumOf(s: Json): string[] | null {
  const alts = s.anyOf ?? s.oneOf;
  if (Array.isArray(alts) && alts.every((a: Json) => 'const' in a)) return alts.map((a: Json) => String(a.const));
  return null;
}

function policyForm(uuid: string, schema: Json, current: Json): HTMLFormElement {
  const form = h('form', { class: 'policy', id: 'policy-form', novalidate: true });
  const inputs: Array<{ path: string[]; el: HTMLInputElement | HTMLSelectElement; kind: string }> = [];
  const fieldOf = (path: string[], s: Json, value: Json): HTMLElement => {
    const name = path.join('.');
    const en = enumOf(s);
    let el: HTMLInputElement | HTMLSelectElement;
    let kind: string;
    if (en) {
      el = h('select', { name }, h('option', { value: '' }, '(default)'), ...en.map((v) => h('option', { value: v }, v)));
      el.value = value === undefined ? '' : String(value);
      kind = 'enum';
    } else if (s.type === 'boolean') {
      el = h('input', { type: 'checkbox', name });
      (el as HTMLInputElement).checked = value === true;
      kind = 'boolean';
    } else {
      el = h('input', { type: 'text', inputmode: 'decimal', name, value: value === undefined ? '' : String(value), placeholder: 'unset' });
      kind = s.type;
    }
    inputs.push({ path, el, kind });
    const range = s.minimum !== undefined || s.maximum !== undefined ? ` [${s.minimum ?? ''}…${s.maximum ?? ''}]` : '';
    return h('label', { 'data-path': `/${path.join('/')}` }, h('span', {}, path[path.length - 1]!), el, h('span', { class: 'muted' }, `${s.description ?? ''}${range}`), h('span', { class: 'field-error' }));
  };
  const build = (s: Json, value: Json, path: string[], into: HTMLElement) => {
    for (const [k, sub] of Object.entries<Json>(s.properties ?? {})) {
      const p = [...path, k];
      if (sub.type === 'object') {
        const fs = h('fieldset', { 'data-path': `/${p.join('/')}` }, h('legend', {}, k), h('span', { class: 'field-error' }));
        build(sub, value?.[k], p, fs);
        into.append(fs);
      } else into.append(fieldOf(p, sub, value?.[k]));
    }
  };
  const version = h('p', { class: 'muted', id: 'policy-version' }, `version ${current.version}${current.updatedAt ? `, ${new Date(current.updatedAt).toLocaleString()}` : ' (defaults)'}`);
  const general = h('p', { class: 'field-error', id: 'policy-error' });
  form.append(version);
  build(schema, current.policy, [], form);
  form.append(general, h('button', { type: 'submit', id: 'policy-save' }, 'Save policy'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
    for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
    // The body is what the user typed; the server validates it against the same schema.
    const body: Json = {};
    for (const { path, el, kind } of inputs) {
      let v: Json;
      if (kind === 'boolean') v = (el as HTMLInputElement).checked;
      else if (el.value.trim() === '') continue;
      else if (kind === 'integer' || kind === 'number') v = /^-?\d+(\.\d+)?(e-?\d+)?$/i.test(el.value.trim()) ? Number(el.value.trim()) : el.value.trim();
      else v = el.value;
      let o = body;
      for (const k of path.slice(0, -1)) o = o[k] ??= {};
      o[path[path.length - 1]!] = v;
    }
    try {
      const saved = await api(`/v1/vms/${uuid}/policy`, { method: 'PUT', body: JSON.stringify(body) });
      version.textContent = `version ${saved.version}, ${new Date(saved.updatedAt).toLocaleString()} — saved`;
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      // "body/thresholds/hotMinFraction must be <= 1" (schema) or "invalid policy at /dram: ..." (cross-field rules)
      const paths = [...msg.matchAll(/(?:body|at )(\/[\w/]+)/g)].map((m) => m[1]!);
      let shown = false;
      for (const p of paths) {
        let target: Element | null = null;
        for (let q = p; q && !target; q = q.slice(0, q.lastIndexOf('/'))) target = form.querySelector(`[data-path="${q}"]`);
        if (!target) continue;
        target.classList.add('invalid');
        target.querySelector(':scope > .field-error')!.textContent = msg;
        shown = true;
      }
      if (!shown) general.textContent = msg;
    }
  });
  return form;
}

// ---- heatmap ------------------------------------------------------------------------------

async function heatPage(uuid: string): Promise<void> {
  const vm = await api(`/v1/vms/${uuid}`);
  const canvas = h('canvas', { class: 'heat', id: 'heatmap' });
  const info = h('p', { class: 'muted', id: 'heat-info' });
  const ranges = h('p', { class: 'ranges' }, ...RANGES.map((r) => {
    const b = h('button', { type: 'button', class: r === vmRange ? 'active' : '', 'data-range': r.label }, r.label);
    b.addEventListener('click', () => {
      vmRange = r;
      void route();
    });
    return b;
  }));
  const sw = (rgb: [number, number, number]) => h('span', { style: `background: rgb(${rgb.join(',')})` });
  main().replaceChildren(
    h('h1', {}, `Heatmap: ${vm.name}`),
    h('p', {}, h('a', { href: `#/vm/${uuid}` }, '← VM')),
    ranges,
    h('p', { class: 'legend' }, sw(heatColour(255, 255, 255)), 'hot in DRAM', sw(heatColour(0, 255, 255)), 'cold in DRAM', sw(heatColour(255, 0, 255)), 'hot on slow tier', sw(heatColour(0, 0, 255)), 'cold on slow tier', sw(heatColour(null, 255, 255)), 'DRAM, not scanned', sw(heatColour(null, 0, 255)), 'slow, not scanned', sw(heatColour(0, 0, 0)), 'not resident'),
    h('div', { class: 'card' }, canvas, info),
  );
  const load = async () => {
    const to = Date.now();
    const heat = await api(`/v1/vms/${uuid}/heat?from=${to - vmRange.ms}&to=${to}&frames=480`);
    drawHeat(canvas, heat, to - vmRange.ms, to);
    info.textContent = heat.frames.length === 0
      ? 'No heat recorded in this range.'
      : `x: time (${new Date(to - vmRange.ms).toLocaleString()} … now, ${heat.frames.length} columns of ${heat.stepMs / 1000} s) · y: guest memory, ${heat.buckets} buckets of ${fmtBytes(heat.bucketBytes)} (${fmtBytes(heat.totalBytes)}), guest nodes ${heat.nodes.map((n: Json) => `${n.guestNode}: ${fmtBytes(n.start)}–${fmtBytes(n.end)}`).join(', ')}`;
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  };
  await load();
  const timer = setInterval(() => void load().catch((e) => setStatus(`update failed: ${(e as Error).message}`)), POLL_MS * 3);
  cleanup.push(() => clearInterval(timer));
}

function b64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** x = time (one column per step of the range), y = address bucket (low addresses at the top). */
function drawHeat(canvas: HTMLCanvasElement, heat: Json, from: number, to: number): void {
  const cols = Math.max(1, Math.ceil((to - from) / heat.stepMs));
  const rows = Math.max(1, heat.buckets);
  const W = 960;
  const H = 512;
  canvas.width = W;
  canvas.height = H;
  canvas.dataset.columns = String(heat.frames.length);
  const ctx = canvas.getContext('2d')!;
  ctx.fillStyle = '#222';
  ctx.fillRect(0, 0, W, H);
  if (heat.frames.length === 0) return;
  const img = ctx.createImageData(cols, rows);
  for (const f of heat.frames) {
    const x = Math.floor((Date.parse(f.t) - from) / heat.stepMs);
    if (x < 0 || x >= cols) continue;
    const hot = f.hot ? b64(f.hot) : null;
    const dram = b64(f.dram);
    const res = b64(f.resident);
    for (let y = 0; y < rows; y++) {
      const [r, g, b] = heatColour(hot ? hot[y]! : null, dram[y]!, res[y]!);
      const o = (y * cols + x) * 4;
      img.data[o] = r;
      img.data[o + 1] = g;
      img.data[o + 2] = b;
      img.data[o + 3] = 255;
    }
  }
  // Drawn at data resolution, then scaled without smoothing: every bucket stays a sharp cell.
  const off = document.createElement('canvas');
  off.width = cols;
  off.height = rows;
  off.getContext('2d')!.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, W, H);
  ctx.strokeStyle = '#fff';
  ctx.fillStyle = '#fff';
  ctx.font = '12px sans-serif';
  for (const n of heat.nodes) {
    const y = Math.round((n.start / heat.totalBytes) * H);
    ctx.beginPath();
    ctx.moveTo(0, y + 0.5);
    ctx.lineTo(W, y + 0.5);
    ctx.stroke();
    ctx.fillText(`guest node ${n.guestNode}`, 4, y + 14);
  }
}

// ---- router -------------------------------------------------------------------------------

async function route(): Promise<void> {
  for (const c of cleanup) c();
  cleanup = [];
  const hash = location.hash || '#/vms';
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', hash.startsWith(a.getAttribute('href')!));
  const m = /^#\/vm\/([0-9a-fA-F-]{36})(\/heat)?$/.exec(hash);
  document.body.dataset.page = 'loading';
  try {
    if (hash === '#/host') await hostPage();
    else if (m && m[2]) await heatPage(m[1]!);
    else if (m) await vmPage(m[1]!);
    else await vmsPage();
    document.body.dataset.page = hash;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return; // the token form is showing
    main().replaceChildren(errorBox(e));
    document.body.dataset.page = 'error';
  }
}

window.addEventListener('hashchange', () => void route());
void route();
