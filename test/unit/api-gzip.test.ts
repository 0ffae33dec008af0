// gzip answers assembled from a stored block and a part deflated once (src/api/gzip.ts): checked
// against node's own zlib (CRC-32, gunzip) on random inputs, and the Accept-Encoding rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { acceptsGzip, crc32, crc32Bytewise, crc32Combine, deflatePart, gzipParts } from '../../src/api/gzip.js';
import { rng } from '../helpers/rng.js';

function randomBytes(rand: () => number, n: number, alphabet = 256): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * alphabet);
  return b;
}

test('gzip: CRC-32 bytewise equals zlib\'s, and crc32Combine(crc(A), crc(B), |B|) = crc(A·B)', () => {
  const rand = rng(3);
  const nativeCrc = (zlib as unknown as { crc32?: (b: Uint8Array, v?: number) => number }).crc32;
  for (let i = 0; i < 200; i++) {
    const a = randomBytes(rand, Math.floor(rand() * 300));
    const b = randomBytes(rand, i % 10 === 0 ? 70_000 + Math.floor(rand() * 200_000) : Math.floor(rand() * 3000));
    const ab = Buffer.concat([a, b]);
    const want = nativeCrc ? nativeCrc(ab) >>> 0 : crc32Bytewise(ab);
    assert.equal(crc32Bytewise(ab), want);
    assert.equal(crc32(a, crc32(b.subarray(0, 0))), crc32Bytewise(a));
    assert.equal(crc32Combine(crc32Bytewise(a), crc32Bytewise(b), b.length), want, `|A|=${a.length} |B|=${b.length}`);
  }
  // Known value: CRC-32 of "123456789".
  assert.equal(crc32Bytewise(Buffer.from('123456789')), 0xcbf43926);
});

test('gzip: a stored head before a kept deflated part is one valid gzip member of head·part (any head size, empty parts)', () => {
  const rand = rng(11);
  for (let i = 0; i < 60; i++) {
    const headLen = [0, 1, 130, 65_535, 65_536, 140_000][i % 6]!;
    const head = randomBytes(rand, headLen, 20);
    // JSON-like text, compressible, as the history body is; and sometimes empty.
    const body = i % 7 === 0 ? Buffer.alloc(0) : Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 3000) }, (_, k) => `{"start":"${k}","hot":${Math.floor(rand() * 1e9)}}`).join(','));
    const kept = deflatePart(body);
    const member = Buffer.concat(gzipParts(head, kept));
    // The kept part is shared: building an answer must not change it.
    const before = Buffer.from(kept.deflated);
    Buffer.concat(gzipParts(randomBytes(rand, 10), kept));
    assert.deepEqual(kept.deflated, before);
    assert.deepEqual(zlib.gunzipSync(member), Buffer.concat([head, body]), `head ${headLen}, body ${body.length}`);
    if (body.length > 10_000) assert.ok(kept.deflated.length < body.length / 3);
  }
});

test('gzip: a corrupted trailer is refused by a real decoder (the CRC and length are checked, not ignored)', () => {
  const kept = deflatePart(Buffer.from('{"series":[]}'.repeat(100)));
  const good = Buffer.concat(gzipParts(Buffer.from('{"uuid":"x",'), kept));
  assert.doesNotThrow(() => zlib.gunzipSync(good));
  for (const at of [good.length - 8, good.length - 1]) {
    const bad = Buffer.from(good);
    bad[at] = bad[at]! ^ 0x40;
    assert.throws(() => zlib.gunzipSync(bad));
  }
});

test('gzip: Accept-Encoding decides (RFC 9110 q-values, gzip;q=0 over *, x-gzip)', () => {
  const yes = ['gzip', 'gzip, deflate', 'deflate, gzip;q=0.5', 'br;q=1.0, gzip;q=0.8, *;q=0.1', 'x-gzip', '*', 'GZIP', ['identity', 'gzip']];
  const no = [undefined, '', 'identity', 'deflate, br', 'gzip;q=0', 'gzip;q=0.000', '*;q=0', 'gzip;q=0, *', 'gzipx', 'gzip;q=abc'];
  for (const h of yes) assert.equal(acceptsGzip(h), true, String(h));
  for (const h of no) assert.equal(acceptsGzip(h), false, String(h));
});
