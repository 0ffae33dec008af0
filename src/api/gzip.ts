/**
 * gzip answers assembled from pieces, without compressing the whole answer per request.
 *
 * A large answer that is mostly kept text (the history's ~225 KB series body, the same for every
 * poll until the VM's next round) is deflated once and kept; a request's own small piece (its
 * `{"uuid",…,"from","to"…` start) goes in front as a *stored* deflate block. That is valid DEFLATE
 * (RFC 1951): a block stream may mix stored and compressed blocks, every block may refer back only
 * to output already produced (the kept part was compressed with an empty history, so it refers to
 * nothing before it), and a stored block starts on a byte boundary, which the kept part guarantees
 * by ending in a sync flush. The gzip trailer's CRC-32 of the whole is combined from the pieces'
 * CRCs (zlib's crc32_combine) instead of reading the 225 KB again. Result: one ~28 KB gzip member
 * per poll for the cost of a 130-byte CRC, where writing 225 KB to the socket was a quarter of the
 * server's CPU per poll (bench:api profile, host).
 */
import zlib from 'node:zlib';

/** zlib level for kept parts: measured on a day of history at 5 m (226 KB), 3 took 0.66 ms for 28 KB, 6 took 1.6 ms for 24 KB (host). */
const KEPT_LEVEL = 3;

/** A piece deflated on its own, ending in a sync flush (byte-aligned, not final), with the CRC-32 and length of its plain text. */
export interface DeflatedPart {
  deflated: Buffer;
  crc: number;
  length: number;
}

const CRC_POLY = 0xedb88320;
let crcTable: Uint32Array | null = null;

/** CRC-32 as gzip uses it, bytewise (only where node lacks zlib.crc32, added in 20.15). */
export function crc32Bytewise(buf: Uint8Array, crc = 0): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CRC_POLY : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = ~crc >>> 0;
  for (let i = 0; i < buf.length; i++) c = crcTable[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

const nativeCrc32 = (zlib as unknown as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

export function crc32(buf: Uint8Array, crc = 0): number {
  return nativeCrc32 ? nativeCrc32(buf, crc) >>> 0 : crc32Bytewise(buf, crc);
}

/** a·b modulo the CRC polynomial, in the CRC's reflected bit order (bit 31 is x^0). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ CRC_POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) mod P for k = 0..31. */
const X2N: number[] = (() => {
  const t = [0x40000000]; // x^1
  for (let k = 1; k < 32; k++) t.push(multModP(t[k - 1]!, t[k - 1]!));
  return t;
})();

/** x^(n·2^k) mod P. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k & 31]!, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/** CRC-32 of A·B from crc(A), crc(B) and B's length (zlib's crc32_combine). */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (multModP(x2nModP(lengthB, 3), crcA) ^ crcB) >>> 0;
}

export function deflatePart(plain: Buffer, level = KEPT_LEVEL): DeflatedPart {
  const deflated = zlib.deflateRawSync(plain, { level, finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return { deflated, crc: crc32(plain), length: plain.length };
}

// ID1 ID2, CM = deflate, no flags, no mtime, XFL 0, OS 255 (unknown).
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);

/** A stored block's 5-byte header: BFINAL/BTYPE=00 padded to a byte, LEN and its complement (little-endian). */
function storedHeader(len: number, final: boolean): Buffer {
  const h = Buffer.alloc(5);
  h[0] = final ? 1 : 0;
  h.writeUInt16LE(len, 1);
  h.writeUInt16LE(~len & 0xffff, 3);
  return h;
}

/**
 * One gzip member whose plain text is `head` followed by the kept part's text, as buffers to write
 * one after the other (never write into `kept.deflated`: it is shared between answers).
 */
export function gzipParts(head: Buffer, kept: DeflatedPart): Buffer[] {
  const out: Buffer[] = [GZIP_HEADER];
  for (let off = 0; off < head.length; off += 0xffff) {
    const piece = head.subarray(off, Math.min(head.length, off + 0xffff));
    out.push(storedHeader(piece.length, false), piece);
  }
  out.push(kept.deflated);
  const trailer = Buffer.alloc(13);
  storedHeader(0, true).copy(trailer, 0);
  trailer.writeUInt32LE(crc32Combine(crc32(head), kept.crc, kept.length), 5);
  trailer.writeUInt32LE((head.length + kept.length) % 2 ** 32, 9);
  out.push(trailer);
  return out;
}

/**
 * Whether an Accept-Encoding header allows gzip (RFC 9110 §12.5.3): `gzip`, `x-gzip` or `*` with a
 * q-value above 0, an explicit `gzip;q=0` winning over `*`.
 */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  if (header === undefined) return false;
  let gzip: number | null = null;
  let star: number | null = null;
  for (const item of (Array.isArray(header) ? header.join(',') : header).split(',')) {
    const [name, ...params] = item.trim().toLowerCase().split(';');
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*(\S*)\s*$/.exec(p);
      // A malformed q-value is read as 0: never answer gzip on a header we cannot read.
      if (m) q = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(m[1]!) ? Number(m[1]) : 0;
    }
    if (name === 'gzip' || name === 'x-gzip') gzip = Math.max(gzip ?? 0, q);
    else if (name === '*') star = q;
  }
  return (gzip ?? star ?? 0) > 0;
}
