/**
 * Seeded synthetic traces. Each kind gives every page an access rate per epoch and draws the
 * epoch's accesses as Poisson counts, so a page with rate 0.2 shows up in about one epoch in five —
 * what an accessed-bit tracker would see. Same kind, parameters and seed → same file.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { createGzip } from 'node:zlib';
import type { Writable } from 'node:stream';
import { VmtierError } from '../errors.js';

export const GEN_KINDS = ['zipf', 'phase', 'scan', 'bursty', 'multi'] as const;
export type GenKind = (typeof GEN_KINDS)[number];

export interface GenOptions {
  pages: number;
  epochs: number;
  /** Mean accesses per epoch over the whole trace (per VM for multi). */
  accesses: number;
  seed: number;
  /** zipf exponent (zipf, and the hot sets of scan and bursty). */
  skew: number;
  /** phase: epochs per phase. */
  phaseEpochs: number;
  /** phase/scan: hot set as a fraction of pages. */
  hotFraction: number;
}

export const DEFAULT_GEN: GenOptions = { pages: 8192, epochs: 600, accesses: 16384, seed: 1, skew: 0.99, phaseEpochs: 150, hotFraction: 0.125 };

/** mulberry32: small, fast, and good enough for workloads. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  poisson(lambda: number): number {
    if (lambda <= 0) return 0;
    if (lambda < 30) {
      const l = Math.exp(-lambda);
      let k = 0;
      let p = this.next();
      while (p > l) {
        k++;
        p *= this.next();
      }
      return k;
    }
    // Normal approximation for large rates (Box-Muller).
    const u = Math.max(1e-12, this.next());
    const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
    return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * z));
  }
  shuffle(a: Int32Array): Int32Array {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i]!;
      a[i] = a[j]!;
      a[j] = t;
    }
    return a;
  }
}

/** Per-epoch rates of one VM: rates(epoch) fills `out` (length pages). */
type RateModel = (epoch: number, out: Float64Array) => void;

function zipfWeights(n: number, skew: number): Float64Array {
  const w = new Float64Array(n);
  let sum = 0;
  for (let r = 0; r < n; r++) sum += w[r] = 1 / Math.pow(r + 1, skew);
  for (let r = 0; r < n; r++) w[r]! /= sum;
  return w;
}

function permutation(n: number, rng: Rng): Int32Array {
  return rng.shuffle(Int32Array.from({ length: n }, (_, i) => i));
}

function zipfModel(o: GenOptions, rng: Rng): RateModel {
  const w = zipfWeights(o.pages, o.skew);
  const perm = permutation(o.pages, rng);
  return (_e, out) => {
    for (let r = 0; r < o.pages; r++) out[perm[r]!] = o.accesses * w[r]!;
  };
}

/** A hot set (90% of accesses, uniform) that moves to other pages every phaseEpochs; 10% uniform background. */
function phaseModel(o: GenOptions, rng: Rng): RateModel {
  const hot = Math.max(1, Math.round(o.pages * o.hotFraction));
  const sets: Int32Array[] = [];
  return (e, out) => {
    const ph = Math.floor(e / o.phaseEpochs);
    while (sets.length <= ph) sets.push(permutation(o.pages, rng).subarray(0, hot));
    out.fill((0.1 * o.accesses) / o.pages);
    for (const p of sets[ph]!) out[p]! += (0.9 * o.accesses) / hot;
  };
}

/**
 * A zipf hot set (hotFraction of pages, 80% of accesses) polluted by streaming passes: every 100
 * epochs a 25-epoch pass touches half of all pages once each, a few accesses per page.
 */
function scanModel(o: GenOptions, rng: Rng): RateModel {
  const hot = Math.max(1, Math.round(o.pages * o.hotFraction));
  const perm = permutation(o.pages, rng);
  const w = zipfWeights(hot, o.skew);
  const region = perm.subarray(hot, hot + Math.floor(o.pages / 2));
  const passEpochs = 25;
  const period = 100;
  return (e, out) => {
    out.fill((0.05 * o.accesses) / o.pages);
    for (let r = 0; r < hot; r++) out[perm[r]!]! += 0.8 * o.accesses * w[r]!;
    const t = e % period;
    if (t < passEpochs) {
      const per = Math.ceil(region.length / passEpochs);
      for (let i = t * per; i < Math.min(region.length, (t + 1) * per); i++) out[region[i]!]! += 4;
    }
  };
}

/** A mild zipf base (skew 0.8) with bursts: groups of pages/32 pages very hot for 2–6 epochs. */
function burstyModel(o: GenOptions, rng: Rng): RateModel {
  const w = zipfWeights(o.pages, 0.8);
  const perm = permutation(o.pages, rng);
  const group = Math.max(1, Math.floor(o.pages / 32));
  let burst: { pages: Int32Array; until: number } | null = null;
  return (e, out) => {
    for (let r = 0; r < o.pages; r++) out[perm[r]!] = 0.6 * o.accesses * w[r]!;
    if (!burst || e >= burst.until) {
      burst = rng.next() < 0.15 ? { pages: permutation(o.pages, rng).subarray(0, group), until: e + 2 + rng.int(5) } : null;
    }
    if (burst) for (const p of burst.pages) out[p]! += (0.4 * o.accesses) / group;
  };
}

async function write(out: Writable, s: string): Promise<void> {
  if (!out.write(s)) await once(out, 'drain');
}

/**
 * Writes a trace; returns the number of rows. `onProgress` gets (epoch, epochs); `onRates` gets each
 * epoch's true per-page rates, one array per VM in trace order (what no tracker can see: the
 * causal bound in bound.ts is computed from them).
 */
export async function generateTrace(
  kind: string,
  path: string,
  opt: Partial<GenOptions> = {},
  onProgress?: (e: number, n: number) => void,
  onRates?: (epoch: number, rates: readonly Float64Array[]) => void,
): Promise<number> {
  const o: GenOptions = { ...DEFAULT_GEN, ...opt };
  for (const k of ['pages', 'epochs', 'accesses'] as const) {
    if (!(Number.isInteger(o[k]) && o[k] > 0)) throw new VmtierError('INVALID_INPUT', `--${k} must be a positive integer, got ${o[k]}`);
  }
  if (!(o.skew >= 0 && o.skew <= 4)) throw new VmtierError('INVALID_INPUT', `--skew must be within [0, 4], got ${o.skew}`);
  if (!(o.hotFraction > 0 && o.hotFraction <= 1)) throw new VmtierError('INVALID_INPUT', `--hot-fraction must be within (0, 1], got ${o.hotFraction}`);
  if (!(Number.isInteger(o.phaseEpochs) && o.phaseEpochs > 0)) throw new VmtierError('INVALID_INPUT', `--phase-epochs must be a positive integer`);
  const rng = new Rng(o.seed);
  let vms: { name: string; model: RateModel }[];
  switch (kind) {
    case 'zipf':
      vms = [{ name: '', model: zipfModel(o, rng) }];
      break;
    case 'phase':
      vms = [{ name: '', model: phaseModel(o, rng) }];
      break;
    case 'scan':
      vms = [{ name: '', model: scanModel(o, rng) }];
      break;
    case 'bursty':
      vms = [{ name: '', model: burstyModel(o, rng) }];
      break;
    case 'multi': {
      // Three VMs of a third of the pages each, with different behaviour and load.
      const third = { ...o, pages: Math.max(1, Math.floor(o.pages / 3)) };
      vms = [
        { name: 'vm-zipf', model: zipfModel({ ...third, accesses: Math.round(o.accesses / 3) }, rng) },
        { name: 'vm-phase', model: phaseModel({ ...third, accesses: Math.round(o.accesses / 2), phaseEpochs: Math.max(1, Math.round(o.phaseEpochs / 2)) }, rng) },
        { name: 'vm-scan', model: scanModel({ ...third, accesses: Math.round(o.accesses / 6) }, rng) },
      ];
      break;
    }
    default:
      throw new VmtierError('INVALID_INPUT', `unknown trace kind "${kind}" (one of ${GEN_KINDS.join(', ')})`);
  }
  const multi = kind === 'multi';
  const file = createWriteStream(path);
  const out: Writable = path.endsWith('.gz') ? createGzip() : file;
  if (out !== file) out.pipe(file);
  const done = once(file, 'close');
  let rows = 0;
  await write(out, multi ? 'vm,epoch,page,accesses\n' : 'epoch,page,accesses\n');
  const rates = vms.map(() => new Float64Array(multi ? Math.max(1, Math.floor(o.pages / 3)) : o.pages));
  for (let e = 0; e < o.epochs; e++) {
    let chunk = '';
    vms.forEach((vm, v) => {
      const r = rates[v]!;
      vm.model(e, r);
      for (let p = 0; p < r.length; p++) {
        const a = rng.poisson(r[p]!);
        if (a > 0) {
          chunk += multi ? `${vm.name},${e},${p},${a}\n` : `${e},${p},${a}\n`;
          rows++;
        }
      }
    });
    onRates?.(e, rates);
    await write(out, chunk);
    if (onProgress && (e & 31) === 31) onProgress(e + 1, o.epochs);
  }
  out.end();
  await done;
  return rows;
}
