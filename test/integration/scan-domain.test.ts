// `vmtier scan --domain` on a real TCG domain under this machine's libvirtd: the tracked
// ranges are the VM's guest RAM HVA ranges from the libvirt inventory. No kernel tracker
// can run here (no module, DAMON busy with the platform kdamond), so the replay tracker
// plays a trace over those ranges; the DAMON refusal path is checked read-only.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { destroyDomains, startDomain, type TestDomain } from '../helpers/domains.js';
import { createLibvirtInventory } from '../../src/vm/libvirt-inventory.js';
import type { HvaRange } from '../../src/units.js';

const PREFIX = 'vmtier-test-g-';
const root = fileURLToPath(new URL('../../../', import.meta.url));
const bin = join(root, 'bin', 'vmtier.js');

function vmtier(args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, 'scan', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

let dom: TestDomain;
let dir: string;
let guestRam: HvaRange[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmtier-scan-domain-'));
  dom = await startDomain('two-cells-memfd.xml', PREFIX);
  const inv = createLibvirtInventory({ events: false });
  try {
    const map = await inv.numaMap(dom.uuid);
    guestRam = map.nodes.flatMap((n) => n.hva).sort((a, b) => a.start - b.start);
  } finally {
    await inv.close();
  }
});

after(async () => {
  await destroyDomains(PREFIX);
  rmSync(dir, { recursive: true, force: true });
});

test('--domain tracks the guest RAM ranges of the VM (replayed trace over them)', () => {
  assert.ok(guestRam.length >= 2, 'two guest nodes mapped');
  // Pages 0..3 accessed in every epoch, the last page of all guest RAM known but idle.
  const pages = guestRam.reduce((a, r) => a + (r.end - r.start) / 4096, 0);
  const lines = ['epoch,page,accesses'];
  for (let e = 0; e < 3; e++) for (let p = 0; p < 4; p++) lines.push(`${e},${p},1`);
  lines.push(`0,${pages - 1},0`);
  const trace = join(dir, 'dom.csv');
  writeFileSync(trace, lines.join('\n') + '\n');
  for (const who of [dom.name, dom.uuid]) {
    const r = vmtier(['--domain', who, '--tracker', 'replay', '--trace', trace, '--scans', '3', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    const hex = (n: number) => `0x${n.toString(16)}`;
    const last = guestRam[guestRam.length - 1]!;
    assert.deepEqual(out.ranges, [
      { start: hex(guestRam[0]!.start), end: hex(guestRam[0]!.start + 4 * 4096), count: 3 },
      { start: hex(last.end - 4096), end: hex(last.end), count: 0 },
    ]);
  }
});

test('--domain with the DAMON tracker refuses read-only on this machine; an unknown domain is VM_NOT_FOUND', () => {
  const r = vmtier(['--domain', dom.name, '--tracker', 'damon', '--run-dir', dir, '--json']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^TRACKER_BUSY: /, r.stderr);
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('damon-kdamond')), [], 'no ownership file left');
  const nf = vmtier(['--domain', `${PREFIX}does-not-exist`, '--tracker', 'damon', '--json']);
  assert.equal(nf.status, 1);
  assert.match(nf.stderr, /^VM_NOT_FOUND: /);
});
