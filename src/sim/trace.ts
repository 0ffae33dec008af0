/**
 * Access traces: CSV `epoch,page,accesses` (optionally a leading `vm` column), plain or gzip.
 * Rows must come in non-decreasing epoch order, so a trace of any size streams in two passes:
 * the first learns the distinct pages (which sizes DRAM) and the epoch count, the second feeds the
 * engine one epoch at a time. Pages become dense ids: VMs in order of first appearance, pages of a
 * VM in ascending page number (or page number itself with --pages).
 */
import { createReadStream, openSync, readSync, closeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { VmtierError } from '../errors.js';

export interface TraceMeta {
  /** VM names in order of first appearance; [''] when the trace has no vm column. */
  vms: string[];
  hasVmColumn: boolean;
  /** Dense id of VM v's first page; vmOffsets[vms.length] = total pages. */
  vmOffsets: Int32Array;
  /** Dense id → page number within its VM. */
  pageNumbers: Float64Array;
  /** Dense id → VM index. */
  vmOfPage: Int32Array;
  pages: number;
  epochs: number;
  rows: number;
}

/** The rows of one epoch, in trace order; pages are dense ids. */
export interface EpochBatch {
  epoch: number;
  pages: Int32Array;
  accesses: Float64Array;
  length: number;
}

interface Row {
  vm: string;
  epoch: number;
  page: number;
  accesses: number;
}

function openLines(path: string): AsyncIterable<string> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new VmtierError('INVALID_TRACE', `cannot open trace ${path}: ${(e as Error).message}`, { path });
  }
  const magic = Buffer.alloc(2);
  const n = readSync(fd, magic, 0, 2, 0);
  closeSync(fd);
  let stream: Readable = createReadStream(path);
  if (n === 2 && magic[0] === 0x1f && magic[1] === 0x8b) {
    const gunzip = createGunzip();
    stream.on('error', (e) => gunzip.destroy(e));
    stream = stream.pipe(gunzip);
  }
  return createInterface({ input: stream, crlfDelay: Infinity });
}

const INT = /^\d+$/;

/** Streams validated rows; every error names file and line. */
async function* readRows(path: string): AsyncGenerator<Row & { line: number; hasVm: boolean }> {
  let lineNo = 0;
  let hasVm = false;
  let lastEpoch = -1;
  const bad = (msg: string): VmtierError => new VmtierError('INVALID_TRACE', `${path}:${lineNo}: ${msg}`, { path, line: lineNo });
  try {
    for await (const raw of openLines(path)) {
      lineNo++;
      const line = raw.trim();
      if (lineNo === 1) {
        const h = line.split(',').map((s) => s.trim().toLowerCase()).join(',');
        if (h === 'epoch,page,accesses') hasVm = false;
        else if (h === 'vm,epoch,page,accesses') hasVm = true;
        else throw bad(`header must be "epoch,page,accesses" or "vm,epoch,page,accesses", got "${line.slice(0, 80)}"`);
        continue;
      }
      if (line === '') continue;
      const f = line.split(',');
      if (f.length !== (hasVm ? 4 : 3)) throw bad(`expected ${hasVm ? 4 : 3} fields, got ${f.length}`);
      const o = hasVm ? 1 : 0;
      const vm = hasVm ? f[0]!.trim() : '';
      if (hasVm && vm === '') throw bad('empty vm');
      const nums = [f[o]!.trim(), f[o + 1]!.trim(), f[o + 2]!.trim()];
      const names = ['epoch', 'page', 'accesses'];
      for (let i = 0; i < 3; i++) {
        if (!INT.test(nums[i]!) || !Number.isSafeInteger(Number(nums[i]))) throw bad(`${names[i]} must be a non-negative integer, got "${nums[i]!.slice(0, 40)}"`);
      }
      const epoch = Number(nums[0]);
      if (epoch < lastEpoch) throw bad(`epoch ${epoch} after epoch ${lastEpoch}: rows must be in non-decreasing epoch order`);
      lastEpoch = epoch;
      yield { vm, epoch, page: Number(nums[1]), accesses: Number(nums[2]), line: lineNo, hasVm };
    }
  } catch (e) {
    if (e instanceof VmtierError) throw e;
    throw new VmtierError('INVALID_TRACE', `${path}:${lineNo + 1}: cannot read: ${(e as Error).message}`, { path, line: lineNo + 1 });
  }
  if (lineNo === 0) throw new VmtierError('INVALID_TRACE', `${path}:1: empty trace (no header)`, { path, line: 1 });
}

/** Pass 1: distinct pages, VMs and epochs. `pagesPerVm` fixes each VM's page count (--pages). */
export async function scanTrace(path: string, pagesPerVm?: number): Promise<TraceMeta> {
  const vmIndex = new Map<string, number>();
  const vmPages: Set<number>[] = [];
  let epochs = 0;
  let rows = 0;
  let hasVmColumn = false;
  for await (const r of readRows(path)) {
    hasVmColumn = r.hasVm;
    rows++;
    let v = vmIndex.get(r.vm);
    if (v === undefined) {
      v = vmIndex.size;
      vmIndex.set(r.vm, v);
      vmPages.push(new Set());
    }
    if (pagesPerVm !== undefined) {
      if (r.page >= pagesPerVm) throw new VmtierError('INVALID_TRACE', `${path}:${r.line}: page ${r.page} is not below --pages ${pagesPerVm}`, { path, line: r.line });
    } else vmPages[v]!.add(r.page);
    if (r.epoch + 1 > epochs) epochs = r.epoch + 1;
  }
  const vms = [...vmIndex.keys()];
  if (vms.length === 0) vms.push('');
  const vmOffsets = new Int32Array(vms.length + 1);
  const perVm = vms.map((_, v) => (pagesPerVm !== undefined ? pagesPerVm : vmPages[v]?.size ?? 0));
  for (let v = 0; v < vms.length; v++) vmOffsets[v + 1] = vmOffsets[v]! + perVm[v]!;
  const pages = vmOffsets[vms.length]!;
  const pageNumbers = new Float64Array(pages);
  const vmOfPage = new Int32Array(pages);
  for (let v = 0; v < vms.length; v++) {
    const base = vmOffsets[v]!;
    if (pagesPerVm !== undefined) for (let i = 0; i < pagesPerVm; i++) pageNumbers[base + i] = i;
    else Float64Array.from(vmPages[v] ?? []).sort().forEach((pg, i) => (pageNumbers[base + i] = pg));
    vmOfPage.fill(v, base, vmOffsets[v + 1]!);
  }
  return { vms, hasVmColumn, vmOffsets, pageNumbers, vmOfPage, pages, epochs, rows };
}

/** Page-number → dense-id lookup for one trace. */
export function denseIndex(meta: TraceMeta, pagesPerVm?: number): (vm: number, page: number) => number {
  if (pagesPerVm !== undefined) return (vm, page) => meta.vmOffsets[vm]! + page;
  const maps = meta.vms.map(() => new Map<number, number>());
  for (let id = 0; id < meta.pages; id++) maps[meta.vmOfPage[id]!]!.set(meta.pageNumbers[id]!, id);
  return (vm, page) => maps[vm]!.get(page)!;
}

/** Pass 2: the trace's epochs, one batch each, including empty ones. */
export async function* readEpochs(path: string, meta: TraceMeta, pagesPerVm?: number): AsyncGenerator<EpochBatch> {
  const dense = denseIndex(meta, pagesPerVm);
  const vmIndex = new Map(meta.vms.map((v, i) => [v, i]));
  let cur = newBatch(0, 1024);
  for await (const r of readRows(path)) {
    while (r.epoch > cur.epoch) {
      yield cur;
      cur = newBatch(cur.epoch + 1, Math.max(1024, cur.length));
    }
    const vm = vmIndex.get(r.vm);
    const id = vm === undefined ? undefined : dense(vm, r.page);
    // The file changed between the two passes.
    if (id === undefined) throw new VmtierError('INVALID_TRACE', `${path}:${r.line}: page ${r.page} was not in the trace's first pass`, { path, line: r.line });
    push(cur, id, r.accesses);
  }
  while (cur.epoch < meta.epochs) {
    yield cur;
    cur = newBatch(cur.epoch + 1, 16);
  }
}

export function newBatch(epoch: number, capacity: number): EpochBatch {
  return { epoch, pages: new Int32Array(capacity), accesses: new Float64Array(capacity), length: 0 };
}

export function push(b: EpochBatch, page: number, accesses: number): void {
  if (b.length === b.pages.length) {
    const pages = new Int32Array(b.pages.length * 2);
    pages.set(b.pages);
    const acc = new Float64Array(b.pages.length * 2);
    acc.set(b.accesses);
    b.pages = pages;
    b.accesses = acc;
  }
  b.pages[b.length] = page;
  b.accesses[b.length] = accesses;
  b.length++;
}

/** A whole trace in memory (benchmarks replay one trace under many policies). */
export interface LoadedTrace {
  meta: TraceMeta;
  batches: EpochBatch[];
}

export async function loadTrace(path: string, pagesPerVm?: number): Promise<LoadedTrace> {
  const meta = await scanTrace(path, pagesPerVm);
  const batches: EpochBatch[] = [];
  for await (const b of readEpochs(path, meta, pagesPerVm)) batches.push(b);
  return { meta, batches };
}
