/**
 * The access-trace format shared with the simulator (issue 5): CSV with header
 * `epoch,page,accesses`, optionally with a leading `vm` column; `.csv` or `.csv.gz`.
 * epoch = one scan interval (integers from 0), page = 4 KiB page index within the VM
 * (here: within the tracked ranges laid end to end), accesses = accesses in that epoch.
 * A scan covering epochs [a, b) sees page p iff p has accesses > 0 in any of them.
 */
import { appendFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { VmtierError } from '../errors.js';

export interface Trace {
  /** Number of epochs: last epoch + 1 (0 when the trace is empty). */
  epochs: number;
  /** Pages = highest page index + 1. */
  pages: number;
  /** accessed[e] = sorted distinct pages with accesses > 0 in epoch e. */
  accessed: Uint32Array[];
  /** 1 for every page the trace mentions (with or without accesses). */
  known: Uint8Array;
  /** The vm column's values, when present. */
  vms: string[];
}

const MAX_PAGE = 2 ** 32 - 1;
const MAX_EPOCH = 2 ** 24;

function bad(msg: string, line?: number): VmtierError {
  return new VmtierError('INVALID_TRACE', line === undefined ? msg : `line ${line}: ${msg}`, line === undefined ? undefined : { line });
}

function readText(path: string): string {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (e) {
    throw new VmtierError('NOT_FOUND', `cannot read trace ${path}: ${(e as Error).message}`, { path });
  }
  if (path.endsWith('.gz')) {
    try {
      raw = gunzipSync(raw);
    } catch (e) {
      throw bad(`${path} is not valid gzip: ${(e as Error).message}`);
    }
  }
  return raw.toString('utf8');
}

/**
 * Parses a trace. With `vm` set, keeps only that VM's rows (a trace with a vm column
 * and several VMs needs it). Any malformed row is INVALID_TRACE with its line number.
 */
export function parseTrace(text: string, opts: { vm?: string } = {}): Trace {
  const lines = text.split('\n');
  const header = (lines[0] ?? '').trim().replace(/\r$/, '');
  let hasVm: boolean;
  if (header === 'epoch,page,accesses') hasVm = false;
  else if (header === 'vm,epoch,page,accesses') hasVm = true;
  else throw bad(`header must be "epoch,page,accesses" or "vm,epoch,page,accesses", not "${header.slice(0, 80)}"`, 1);
  if (opts.vm !== undefined && !hasVm) throw bad('the trace has no vm column to select from');

  const byEpoch = new Map<number, number[]>();
  const vms = new Set<string>();
  let maxPage = -1;
  let maxEpoch = -1;
  const knownList: number[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (line === '') continue;
    const cols = line.split(',');
    if (cols.length !== (hasVm ? 4 : 3)) throw bad(`expected ${hasVm ? 4 : 3} columns, got ${cols.length}`, i + 1);
    let vm: string | undefined;
    if (hasVm) {
      vm = cols.shift()!;
      vms.add(vm);
      if (opts.vm !== undefined && vm !== opts.vm) continue;
    }
    const [e, p, a] = cols.map((c) => (/^\d+$/.test(c) ? Number(c) : NaN));
    if (!Number.isSafeInteger(e) || e! > MAX_EPOCH) throw bad(`epoch "${cols[0]}" is not an integer in 0..${MAX_EPOCH}`, i + 1);
    if (!Number.isSafeInteger(p) || p! > MAX_PAGE) throw bad(`page "${cols[1]}" is not an integer in 0..${MAX_PAGE}`, i + 1);
    if (!Number.isSafeInteger(a)) throw bad(`accesses "${cols[2]}" is not a non-negative integer`, i + 1);
    if (e! > maxEpoch) maxEpoch = e!;
    if (p! > maxPage) maxPage = p!;
    knownList.push(p!);
    if (a! > 0) {
      let list = byEpoch.get(e!);
      if (!list) byEpoch.set(e!, (list = []));
      list.push(p!);
    }
  }
  if (hasVm && opts.vm === undefined && vms.size > 1) {
    throw bad(`the trace holds ${vms.size} VMs (${[...vms].slice(0, 5).join(', ')}); choose one`);
  }
  if (opts.vm !== undefined && !vms.has(opts.vm)) throw bad(`the trace has no rows for vm "${opts.vm}"`);
  const accessed: Uint32Array[] = [];
  for (let e = 0; e <= maxEpoch; e++) {
    const list = byEpoch.get(e);
    if (!list) {
      accessed.push(new Uint32Array(0));
      continue;
    }
    const arr = Uint32Array.from(list).sort();
    // Distinct pages: a page listed twice in one epoch is still one page seen.
    let w = 0;
    for (let r = 0; r < arr.length; r++) if (r === 0 || arr[r] !== arr[r - 1]) arr[w++] = arr[r]!;
    accessed.push(arr.slice(0, w));
  }
  const known = new Uint8Array(maxPage + 1);
  for (const p of knownList) known[p] = 1;
  return { epochs: maxEpoch + 1, pages: maxPage + 1, accessed, known, vms: [...vms] };
}

export function loadTrace(path: string, opts: { vm?: string } = {}): Trace {
  return parseTrace(readText(path), opts);
}

/**
 * Appends what a tracker saw to a trace file, one epoch per scan: `accesses` is 1 for a
 * page seen accessed (a tracker sees accessed bits, not access counts), and a present page
 * is written once with 0 the first time it is seen idle, so the simulator knows it exists.
 * Appending to an existing file continues after its last epoch.
 */
export class TraceRecorder {
  readonly path: string;
  readonly vm: string | undefined;
  private nextEpoch = 0;
  private known: Uint8Array = new Uint8Array(0);

  constructor(path: string, opts: { vm?: string } = {}) {
    if (path.endsWith('.gz')) throw new VmtierError('INVALID_INPUT', 'recording writes plain CSV; give a .csv path');
    this.path = path;
    this.vm = opts.vm;
    if (opts.vm !== undefined && !/^[^,\n\r]+$/.test(opts.vm)) throw new VmtierError('INVALID_INPUT', `vm name "${opts.vm}" cannot be a CSV field`);
    if (existsSync(path) && statSync(path).size > 0) {
      const text = readFileSync(path, 'utf8');
      const header = text.slice(0, text.indexOf('\n') >>> 0).trim();
      const wantVm = opts.vm !== undefined;
      if (header !== (wantVm ? 'vm,epoch,page,accesses' : 'epoch,page,accesses')) {
        throw new VmtierError('INVALID_TRACE', `${path} exists with header "${header.slice(0, 80)}", which does not match this recording`, { path });
      }
      // Recording a second VM into a multi-VM file is fine: epochs continue per file.
      const all = parseTrace(text);
      this.nextEpoch = all.epochs;
      const mine = opts.vm === undefined ? all : parseTraceOrEmpty(text, opts.vm);
      this.known = mine.known;
    } else {
      appendFileSync(path, this.vm === undefined ? 'epoch,page,accesses\n' : 'vm,epoch,page,accesses\n');
    }
  }

  /** The epoch the next record() writes. */
  get epoch(): number {
    return this.nextEpoch;
  }

  /**
   * Records one scan: seen[i] != 0 when page i (of the tracked pages laid end to end) was
   * seen accessed; present[i] != 0 when it is mapped.
   */
  record(seen: Uint8Array, present: Uint8Array): void {
    if (this.known.length < seen.length) {
      const k = new Uint8Array(seen.length);
      k.set(this.known);
      this.known = k;
    }
    const prefix = this.vm === undefined ? '' : `${this.vm},`;
    const e = this.nextEpoch;
    const parts: string[] = [];
    for (let i = 0; i < seen.length; i++) {
      if (seen[i]) {
        parts.push(`${prefix}${e},${i},1\n`);
        this.known[i] = 1;
      } else if (present[i] && !this.known[i]) {
        parts.push(`${prefix}${e},${i},0\n`);
        this.known[i] = 1;
      }
    }
    if (parts.length === 0) {
      // Keep an idle epoch in the file, so a trace's epoch count (last epoch + 1) stays true.
      const anyKnown = this.known.indexOf(1);
      parts.push(`${prefix}${e},${anyKnown >= 0 ? anyKnown : 0},0\n`);
      if (anyKnown < 0 && this.known.length > 0) this.known[0] = 1;
    }
    appendFileSync(this.path, parts.join(''));
    this.nextEpoch++;
  }
}

function parseTraceOrEmpty(text: string, vm: string): Trace {
  try {
    return parseTrace(text, { vm });
  } catch (e) {
    if (e instanceof VmtierError && e.code === 'INVALID_TRACE' && /no rows for vm/.test(e.message)) {
      return { epochs: 0, pages: 0, accessed: [], known: new Uint8Array(0), vms: [] };
    }
    throw e;
  }
}
