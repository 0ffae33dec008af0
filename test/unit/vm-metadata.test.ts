// vmtier's elements in a domain's <metadata> (policy, hot map) and the host-independent numbering
// of the hot map's 2 MiB units.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HotUnits } from '../../src/daemon/hot-units.js';
import { PageMap } from '../../src/daemon/page-map.js';
import { isVmtierError } from '../../src/errors.js';
import { DEFAULT_POLICY, normalizePolicy } from '../../src/policy/schema.js';
import { HOT_UNIT_BYTES, hotMapElement, hotUnitList, parseHotMapElement, parsePolicyElement, policyElement } from '../../src/vm/vm-metadata.js';
import type { GuestNodeMap } from '../../src/vm/types.js';

const P = 4096;
const MiB = 2 ** 20;
const memfd = (id: string) => ({ kind: 'memfd' as const, path: null, id, migratable: true });

test('policy element: what vmtier writes reads back equal; a control plane may use its own prefix and entities', () => {
  const p = normalizePolicy({ mode: 'tier', dram: { minBytes: 64 * MiB }, migration: { maxMBps: 12 } });
  const xml = policyElement(p);
  assert.doesNotMatch(xml, /null/, 'unset limits are absent, not null');
  assert.deepEqual(parsePolicyElement(xml), p);
  // As `virsh metadata` returns it, with a prefix and escaped text.
  assert.equal(parsePolicyElement(`<ctl:policy xmlns:ctl="urn:x-vmtier:policy:1">{&quot;mode&quot;:&quot;off&quot;}</ctl:policy>\n`).mode, 'off');
  assert.deepEqual(parsePolicyElement('<policy>{}</policy>'), DEFAULT_POLICY);
});

test('policy element: every kind of bad content is INVALID_POLICY from the metadata, naming what is wrong', () => {
  const cases: Array<[string, RegExp]> = [
    ['<policy>{"mode":"fast"}</policy>', /\/mode/],
    ['<policy>{"mode": tier</policy>', /not JSON/],
    ['<policy/>', /not JSON/],
    ['<tiering>{}</tiering>', /expected a <policy> element, found <tiering>/],
    ['<policy>{}</policy><policy>{}</policy>', /not a single XML element/],
    ['<policy>{"thresholds":{"hotMinFraction":0.2,"coldMaxFraction":0.5}}</policy>', /hysteresis/],
  ];
  for (const [xml, msg] of cases) {
    assert.throws(() => parsePolicyElement(xml), (e: unknown) => isVmtierError(e, 'INVALID_POLICY') && msg.test(e.message) && e.details?.source === 'metadata', xml);
  }
});

test('hot map element: round trip; malformed maps are refused', () => {
  const pages = (10 * HOT_UNIT_BYTES) / P - 7; // the last unit is partial
  const bits = new Uint8Array([0b1000_0101, 0b10]);
  const xml = hotMapElement({ pages, unitBytes: HOT_UNIT_BYTES, bits, round: 9, t: Date.UTC(2026, 0, 1) });
  assert.match(xml, /units="10" hot="4"/);
  const back = parseHotMapElement(xml);
  assert.deepEqual([...back.bits], [...bits]);
  assert.equal(back.pages, pages);
  assert.equal(back.round, 9);
  assert.deepEqual(hotUnitList(back.bits, 10), [0, 2, 7, 9]);
  for (const bad of [
    xml.replace('unit-bytes="2097152"', 'unit-bytes="4096"'),
    xml.replace(/>[^<]+</, '>AAAA<'),
    xml.replace(/>[^<]+</, '>!!<'),
    xml.replace(/pages="\d+"/, 'pages="-1"'),
    '<policy>{}</policy>',
  ]) {
    assert.throws(() => parseHotMapElement(bad), (e: unknown) => isVmtierError(e, 'INVALID_XML'), bad);
  }
});

/** Two guest nodes of 4 MiB each; `swap` maps node 1 below node 0 (another QEMU process, another host). */
function layout(swap: boolean): GuestNodeMap {
  const lo = 0x7f00_0000_0000;
  const hi = 0x7f10_0000_0000;
  return {
    domain: { name: 'x', uuid: 'u', pid: 1 },
    nodes: [
      { node: 0, cpus: '0', sizeBytes: 4 * MiB, backing: memfd('ram-node0'), hva: [{ start: swap ? hi : lo, end: (swap ? hi : lo) + 4 * MiB }] },
      { node: 1, cpus: null, sizeBytes: 4 * MiB, backing: memfd('ram-node1'), hva: [{ start: swap ? lo : hi, end: (swap ? lo : hi) + 4 * MiB }] },
    ],
  };
}

test('hot units are numbered by guest node, not by where QEMU mapped the memory', () => {
  const a = PageMap.fromNumaMap(layout(false));
  const b = PageMap.fromNumaMap(layout(true));
  const counts = new Uint8Array(a.totalPages);
  // Hot: one page in node 0's second 2 MiB, one in node 1's first.
  const n0 = a.pageOf(0x7f00_0000_0000 + 2 * MiB + 5 * P);
  const n1 = a.pageOf(0x7f10_0000_0000 + 3 * P);
  counts[n0] = 3;
  counts[n1] = 1;
  const bits = new HotUnits(a).hotBits(counts, 1);
  assert.deepEqual(hotUnitList(bits, 4), [1, 2]);
  assert.deepEqual(hotUnitList(new HotUnits(a).hotBits(counts, 2), 4), [1], 'below the hot threshold is not hot');
  // On the other host the same units are node 0's second 2 MiB and node 1's first 2 MiB, wherever they are mapped.
  const pages = new HotUnits(b).pagesOf(bits);
  assert.equal(pages.length, 2 * (HOT_UNIT_BYTES / P));
  const addrs = Array.from(pages, (p) => b.addrOf(p));
  const inRange = (x: number, s: number) => x >= s && x < s + HOT_UNIT_BYTES;
  assert.equal(addrs.filter((x) => inRange(x, 0x7f10_0000_0000 + 2 * MiB)).length, 512, "node 0's second unit (node 0 now mapped high)");
  assert.equal(addrs.filter((x) => inRange(x, 0x7f00_0000_0000)).length, 512, "node 1's first unit (node 1 now mapped low)");
});
