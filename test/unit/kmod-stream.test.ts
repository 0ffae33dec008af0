// The vmtier_idle stream decoder on every record type, and on truncated and corrupt input:
// a stream it accepts must describe each page once; anything else is STREAM_CORRUPT.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeKmodStream, KmodRecord, KmodStreamWriter, PageState, CMD_SET_ADDR } from '../../src/scan/kmod-stream.js';
import { isVmtierError } from '../../src/errors.js';

const K = 4096;
const M2 = 2 * 1024 * 1024;
const G1 = 1024 * 1024 * 1024;
const BASE = 0x7f0000000000; // 1 GiB aligned

interface Run { start: number; end: number; state: PageState; shift: number }

function decode(buf: Uint8Array, start = BASE, limit = BASE + 16 * G1): { runs: Run[]; end: number } {
  const runs: Run[] = [];
  const end = decodeKmodStream(buf, start, limit, (s, e, state, shift) => runs.push({ start: s, end: e, state, shift }));
  return { runs, end };
}

function corrupt(buf: Uint8Array | number[], start = BASE, limit = BASE + 16 * G1): void {
  assert.throws(() => decode(Uint8Array.from(buf), start, limit), (e: unknown) => isVmtierError(e, 'STREAM_CORRUPT'));
}

function setAddr(a: number): number[] {
  const out = [CMD_SET_ADDR];
  for (let k = 7; k >= 0; k--) out.push(Math.floor(a / 2 ** (8 * k)) % 256);
  return out;
}

test('each record type decodes to its state, unit and mapping size', () => {
  const cases: [number, PageState, number, number][] = [
    [KmodRecord.PTE_ACCESSED, PageState.Accessed, K, 12],
    [KmodRecord.PMD_ACCESSED, PageState.Accessed, M2, 21],
    [KmodRecord.PUD_ACCESSED, PageState.Accessed, G1, 30],
    [KmodRecord.PTE_IDLE, PageState.Idle, K, 12],
    [KmodRecord.PMD_IDLE, PageState.Idle, M2, 21],
    [KmodRecord.PMD_IDLE_PTES, PageState.Idle, M2, 12],
    [KmodRecord.PTE_HOLE, PageState.NotPresent, K, 0],
    [KmodRecord.PMD_HOLE, PageState.NotPresent, M2, 0],
    [KmodRecord.PUD_IDLE, PageState.Idle, G1, 30],
  ];
  for (const [type, state, unit, shift] of cases) {
    for (const n of [1, 7, 15]) {
      const bytes = [(type << 4) | n, ...setAddr(BASE + n * unit)];
      const { runs, end } = decode(Uint8Array.from(bytes));
      assert.deepEqual(runs, [{ start: BASE, end: BASE + n * unit, state, shift }], `type ${type} n ${n}`);
      assert.equal(end, BASE + n * unit);
    }
  }
});

test('SET_ADDR skips a gap (not described = not present) and the end mark gives the next offset', () => {
  const w = new KmodStreamWriter(BASE);
  w.put(BASE, KmodRecord.PTE_ACCESSED, 3).put(BASE + 10 * K, KmodRecord.PTE_IDLE, 2);
  const { runs, end } = decode(w.finish(BASE + M2));
  assert.deepEqual(runs, [
    { start: BASE, end: BASE + 3 * K, state: PageState.Accessed, shift: 12 },
    { start: BASE + 10 * K, end: BASE + 12 * K, state: PageState.Idle, shift: 12 },
  ]);
  assert.equal(end, BASE + M2);
});

test('runs longer than 15 units are split over several bytes and decode back whole', () => {
  const w = new KmodStreamWriter(BASE);
  w.put(BASE, KmodRecord.PTE_ACCESSED, 100).put(BASE + 100 * K, KmodRecord.PTE_HOLE, 412).put(BASE + M2, KmodRecord.PMD_ACCESSED, 40);
  const buf = w.finish();
  assert.equal(buf.length, Math.ceil(100 / 15) + Math.ceil(412 / 15) + Math.ceil(40 / 15) + 9 + 0);
  let accessed = 0;
  let hole = 0;
  const end = decodeKmodStream(buf, BASE, BASE + G1, (s, e, st) => {
    if (st === PageState.Accessed) accessed += (e - s) / K;
    if (st === PageState.NotPresent) hole += (e - s) / K;
  });
  assert.equal(accessed, 100 + 40 * 512);
  assert.equal(hole, 412);
  assert.equal(end, BASE + M2 + 40 * M2);
});

test('an empty range is a lone end mark', () => {
  const { runs, end } = decode(Uint8Array.from(setAddr(BASE + G1)));
  assert.deepEqual(runs, []);
  assert.equal(end, BASE + G1);
});

test('truncated streams are STREAM_CORRUPT, or (cut right after a SET_ADDR) an exact prefix that says where it ends', () => {
  const w = new KmodStreamWriter(BASE);
  w.put(BASE, KmodRecord.PTE_ACCESSED, 20).put(BASE + M2, KmodRecord.PMD_IDLE, 3);
  const full = w.finish();
  const whole = decode(full);
  assert.equal(whole.end, BASE + M2 + 3 * M2);
  let prefixes = 0;
  for (let cut = 0; cut < full.length; cut++) {
    // Bytes 0..1 are runs, 2..10 the SET_ADDR to BASE + 2 MiB: a cut at 11 is a complete shorter stream.
    if (cut === 11) {
      const p = decode(full.subarray(0, cut));
      assert.equal(p.end, BASE + M2); // the reader continues from here, so nothing is lost or double counted
      assert.deepEqual(p.runs, whole.runs.slice(0, p.runs.length));
      prefixes++;
      continue;
    }
    corrupt(full.subarray(0, cut));
  }
  assert.equal(prefixes, 1);
});

test('corrupt bytes are STREAM_CORRUPT', () => {
  const end = setAddr(BASE + 16 * K);
  corrupt([0x00, ...end]); // empty run of a data type
  corrupt([0x30 | 1, ...end]); // reserved (seed's PTE_DIRTY)
  corrupt([0x40 | 1, ...end]); // reserved (seed's PMD_DIRTY)
  for (const t of [0xc, 0xd, 0xe, 0xf]) corrupt([(t << 4) | 1, ...end]);
  corrupt([0xa1, ...end]); // unknown command
  corrupt([0x01, ...setAddr(BASE), ...end]); // SET_ADDR backwards
  corrupt([...setAddr(BASE + 123), ...end]); // SET_ADDR not page aligned
  corrupt([...setAddr(2 ** 60)]); // beyond any user address
  corrupt([...setAddr(BASE + K), 0x11, ...end]); // 2 MiB record at an unaligned address
  corrupt([...setAddr(BASE + M2), 0x21, ...end]); // 1 GiB record at an unaligned address
  corrupt([0x0f, ...setAddr(BASE + 15 * K)], BASE, BASE + 8 * K); // run past the limit
  corrupt([...setAddr(BASE + 16 * K)], BASE, BASE + 8 * K); // end mark past the limit
  corrupt([0x01]); // no end mark
});

test('a stream from the module written by the writer round-trips into per-page states', () => {
  // Mixed 4 KiB states then a PMD_IDLE_PTES table and a THP: the shapes the module emits.
  const states = [PageState.Accessed, PageState.Idle, PageState.NotPresent];
  const w = new KmodStreamWriter(BASE);
  const expect: PageState[] = [];
  for (let i = 0; i < 512; i++) {
    const s = states[(i * 7) % 3]!;
    expect.push(s);
    w.put(BASE + i * K, s === PageState.Accessed ? KmodRecord.PTE_ACCESSED : s === PageState.Idle ? KmodRecord.PTE_IDLE : KmodRecord.PTE_HOLE, 1);
  }
  w.put(BASE + M2, KmodRecord.PMD_IDLE_PTES, 1).put(BASE + 2 * M2, KmodRecord.PMD_ACCESSED, 1);
  for (let i = 0; i < 1024; i++) expect.push(i < 512 ? PageState.Idle : PageState.Accessed);
  const got = new Array<PageState>(3 * 512).fill(PageState.NotPresent);
  const end = decodeKmodStream(w.finish(), BASE, BASE + 3 * M2, (s, e, st) => {
    for (let a = s; a < e; a += K) got[(a - BASE) / K] = st;
  });
  assert.equal(end, BASE + 3 * M2);
  assert.deepEqual(got, expect);
});

test('a bad start address is INVALID_INPUT', () => {
  assert.throws(() => decode(Uint8Array.from(setAddr(BASE)), BASE + 1), (e: unknown) => isVmtierError(e, 'INVALID_INPUT'));
});

test('the example stream of kmod/README.md decodes as documented', () => {
  const base = 0x7f0000000000;
  const bytes = [0x03, ...new Array<number>(33).fill(0x5f), 0x5e, 0xa0, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x20, 0x00, 0x00];
  let accessed = 0;
  let idle = 0;
  const end = decodeKmodStream(Uint8Array.from(bytes), base, base + M2, (s, e, st) => {
    if (st === PageState.Accessed) accessed += (e - s) / K;
    if (st === PageState.Idle) idle += (e - s) / K;
  });
  assert.equal(accessed, 3);
  assert.equal(idle, 509);
  assert.equal(end, base + M2);
  // And the writer (the module's encoding rules) produces exactly those bytes.
  const w = new KmodStreamWriter(base).put(base, KmodRecord.PTE_ACCESSED, 3).put(base + 3 * K, KmodRecord.PTE_IDLE, 509);
  assert.deepEqual([...w.finish()], bytes);
});
