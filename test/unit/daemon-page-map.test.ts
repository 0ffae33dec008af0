// PageMap: guest node HVA ranges (and memory devices) <-> flat page numbers <-> movability.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PageMap } from '../../src/daemon/page-map.js';
import { isVmtierError } from '../../src/errors.js';
import type { GuestNodeMap } from '../../src/vm/types.js';

const P = 4096;
const memfd = (id: string) => ({ kind: 'memfd' as const, path: null, id, migratable: true });

function map(): GuestNodeMap {
  return {
    domain: { name: 'x', uuid: 'u', pid: 1 },
    nodes: [
      // Node 0 split around a PCI hole, listed out of address order on purpose.
      { node: 0, cpus: '0', sizeBytes: 6 * P, backing: memfd('ram-node0'), hva: [{ start: 0x7000_0000, end: 0x7000_0000 + 2 * P }, { start: 0x1000_0000, end: 0x1000_0000 + 4 * P }] },
      {
        node: 1,
        cpus: null,
        sizeBytes: 3 * P,
        backing: memfd('ram-node1'),
        hva: [{ start: 0x2000_0000, end: 0x2000_0000 + 3 * P }],
        devices: [{ model: 'nvdimm', sizeBytes: 2 * P, backing: { kind: 'devdax', path: '/dev/dax0.0', id: 'memnvdimm0', migratable: false, reason: 'devdax' }, hva: [{ start: 0x3000_0000, end: 0x3000_0000 + 2 * P }] }],
      },
    ],
  };
}

test('pages are numbered over ranges sorted by address; devices included with their own backing', () => {
  const pm = PageMap.fromNumaMap(map());
  assert.equal(pm.totalPages, 4 + 3 + 2 + 2);
  assert.deepEqual(pm.segments.map((s) => [s.start.toString(16), s.firstPage, s.pages, s.guestNode, s.migratable]), [
    ['10000000', 0, 4, 0, true],
    ['20000000', 4, 3, 1, true],
    ['30000000', 7, 2, 1, false],
    ['70000000', 9, 2, 0, true],
  ]);
  assert.deepEqual(pm.ranges()[0], { start: 0x1000_0000, end: 0x1000_0000 + 4 * P });
  assert.deepEqual(pm.guestNodes(), [0, 1]);
});

test('addrOf and pageOf are inverse; addresses outside are -1 / an error', () => {
  const pm = PageMap.fromNumaMap(map());
  for (let p = 0; p < pm.totalPages; p++) assert.equal(pm.pageOf(pm.addrOf(p)), p);
  assert.equal(pm.addrOf(5), 0x2000_0000 + P);
  assert.equal(pm.pageOf(0x2000_0000 + P + 123), 5, 'an address inside a page maps to that page');
  assert.equal(pm.pageOf(0x1000_0000 + 4 * P), -1, 'end is exclusive');
  assert.equal(pm.pageOf(0), -1);
  assert.throws(() => pm.addrOf(11), (e) => isVmtierError(e, 'INVALID_INPUT'));
});

test('devdax pages are not movable; memfd pages are', () => {
  const pm = PageMap.fromNumaMap(map());
  assert.deepEqual(Array.from({ length: pm.totalPages }, (_, p) => pm.movable(p)), [true, true, true, true, true, true, true, false, false, true, true]);
});

test('overlapping or unaligned ranges are HVA_MISMATCH', () => {
  const m = map();
  m.nodes[1]!.hva = [{ start: 0x1000_0000 + P, end: 0x1000_0000 + 2 * P }];
  assert.throws(() => PageMap.fromNumaMap(m), (e) => isVmtierError(e, 'HVA_MISMATCH'));
  const u = map();
  u.nodes[1]!.hva = [{ start: 0x2000_0001, end: 0x2000_1000 }];
  assert.throws(() => PageMap.fromNumaMap(u), (e) => isVmtierError(e, 'HVA_MISMATCH'));
});
