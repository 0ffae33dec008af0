/**
 * Decoder of the vmtier_idle read stream (kmod/README.md has the format byte for byte;
 * kmod/vmtier_idle_enc.c is the only producer). Every inconsistency is a STREAM_CORRUPT
 * error carrying the byte offset: a stream this decoder accepts describes each page it
 * covers exactly once, so a count built from it cannot be silently wrong.
 */
import { VmtierError } from '../errors.js';

/** Record types: the high nibble of a record byte (seed-compatible numbering). */
export const KmodRecord = {
  PTE_ACCESSED: 0x0,
  PMD_ACCESSED: 0x1,
  PUD_ACCESSED: 0x2,
  PTE_IDLE: 0x5,
  PMD_IDLE: 0x6,
  PMD_IDLE_PTES: 0x7,
  PTE_HOLE: 0x8,
  PMD_HOLE: 0x9,
  CMD: 0xa,
  PUD_IDLE: 0xb,
} as const;

export const CMD_SET_ADDR = 0xa0;
export const SET_ADDR_BYTES = 9;
export const MAX_RUN = 15;

export const enum PageState {
  Accessed = 0,
  Idle = 1,
  NotPresent = 2,
}

/** Per type: the state it reports, the log2 of its unit, and the log2 of the mapping size it reports. */
interface TypeInfo {
  state: PageState;
  unitShift: number;
  mapShift: number;
}

const TYPES: (TypeInfo | undefined)[] = [];
TYPES[KmodRecord.PTE_ACCESSED] = { state: PageState.Accessed, unitShift: 12, mapShift: 12 };
TYPES[KmodRecord.PMD_ACCESSED] = { state: PageState.Accessed, unitShift: 21, mapShift: 21 };
TYPES[KmodRecord.PUD_ACCESSED] = { state: PageState.Accessed, unitShift: 30, mapShift: 30 };
TYPES[KmodRecord.PTE_IDLE] = { state: PageState.Idle, unitShift: 12, mapShift: 12 };
TYPES[KmodRecord.PMD_IDLE] = { state: PageState.Idle, unitShift: 21, mapShift: 21 };
TYPES[KmodRecord.PMD_IDLE_PTES] = { state: PageState.Idle, unitShift: 21, mapShift: 12 };
TYPES[KmodRecord.PTE_HOLE] = { state: PageState.NotPresent, unitShift: 12, mapShift: 0 };
TYPES[KmodRecord.PMD_HOLE] = { state: PageState.NotPresent, unitShift: 21, mapShift: 0 };
TYPES[KmodRecord.PUD_IDLE] = { state: PageState.Idle, unitShift: 30, mapShift: 30 };

/** Addresses must stay exact in a double (user space is < 2^57 on x86_64 anyway). */
const MAX_ADDR = 2 ** 53;

/**
 * Called once per run: [start, end) is in `state`, mapped with pages of 2^mapShift bytes
 * (0 for not present). Runs arrive in increasing address order and never overlap.
 */
export type RunVisitor = (start: number, end: number, state: PageState, mapShift: number) => void;

function corrupt(msg: string, offset: number, extra?: Record<string, unknown>): VmtierError {
  return new VmtierError('STREAM_CORRUPT', `vmtier_idle stream: ${msg} at byte ${offset}`, { offset, ...extra });
}

/**
 * Decodes one read's stream that started at address `start`; `limit` is the exclusive end
 * the reader asked for (a record reaching past it is corrupt). Returns the address the
 * stream ends at: the file offset of the next read. A stream must end with its SET_ADDR
 * end mark; anything cut short is STREAM_CORRUPT.
 */
export function decodeKmodStream(buf: Uint8Array, start: number, limit: number, visit: RunVisitor): number {
  if (!Number.isSafeInteger(start) || start < 0 || start % 4096 !== 0) {
    throw new VmtierError('INVALID_INPUT', `stream start ${start} is not a page-aligned address`);
  }
  let cursor = start;
  let i = 0;
  let endedWithMark = false;
  while (i < buf.length) {
    const b = buf[i]!;
    const type = b >> 4;
    const n = b & 0xf;
    if (type === KmodRecord.CMD) {
      if (n !== 0) throw corrupt(`unknown command byte 0x${b.toString(16)}`, i);
      if (i + SET_ADDR_BYTES > buf.length) throw corrupt('truncated SET_ADDR', i);
      let a = 0;
      for (let k = 1; k <= 8; k++) a = a * 256 + buf[i + k]!;
      if (a >= MAX_ADDR || a % 4096 !== 0) throw corrupt(`SET_ADDR to an impossible address ${a}`, i);
      if (a < cursor) throw corrupt(`SET_ADDR 0x${a.toString(16)} goes back before 0x${cursor.toString(16)}`, i);
      if (a > limit) throw corrupt(`SET_ADDR 0x${a.toString(16)} past the limit 0x${limit.toString(16)}`, i);
      cursor = a;
      i += SET_ADDR_BYTES;
      endedWithMark = true;
      continue;
    }
    const info = TYPES[type];
    if (!info) throw corrupt(`reserved record type 0x${type.toString(16)}`, i);
    if (n === 0) throw corrupt(`empty run of type 0x${type.toString(16)}`, i);
    const unit = 2 ** info.unitShift;
    if (cursor % unit !== 0) throw corrupt(`record of ${unit}-byte units at unaligned 0x${cursor.toString(16)}`, i);
    const end = cursor + n * unit;
    if (end > limit) throw corrupt(`run to 0x${end.toString(16)} past the limit 0x${limit.toString(16)}`, i);
    visit(cursor, end, info.state, info.mapShift);
    cursor = end;
    i++;
    endedWithMark = false;
  }
  if (!endedWithMark) throw corrupt('stream does not end with its SET_ADDR end mark (truncated)', buf.length);
  return cursor;
}

/** The encoder's other half, for tests and fixtures: builds a stream from runs, as the module would. */
export class KmodStreamWriter {
  private bytes: number[] = [];
  private cursor: number;
  private runType = -1;
  private runLen = 0;

  constructor(start: number) {
    this.cursor = start;
  }

  private flushRun(): void {
    if (this.runType >= 0) this.bytes.push((this.runType << 4) | this.runLen);
    this.runType = -1;
    this.runLen = 0;
  }

  setAddr(addr: number): this {
    this.flushRun();
    this.bytes.push(CMD_SET_ADDR);
    for (let k = 7; k >= 0; k--) this.bytes.push(Math.floor(addr / 2 ** (8 * k)) % 256);
    this.cursor = addr;
    return this;
  }

  /** `units` units of `type` at `addr` (a SET_ADDR is written first when addr is not the cursor). */
  put(addr: number, type: number, units: number): this {
    const info = TYPES[type];
    if (!info) throw new Error(`no such record type ${type}`);
    if (addr !== this.cursor) this.setAddr(addr);
    for (let u = 0; u < units; u++) {
      if (this.runType === type && this.runLen < MAX_RUN) this.runLen++;
      else {
        this.flushRun();
        this.runType = type;
        this.runLen = 1;
      }
    }
    this.cursor = addr + units * 2 ** info.unitShift;
    return this;
  }

  /** Ends the stream with the SET_ADDR end mark at `stop` (default: where the records end). */
  finish(stop = this.cursor): Uint8Array {
    this.setAddr(stop);
    return Uint8Array.from(this.bytes);
  }
}
