/**
 * `vmtier sim`: replay a trace under a policy and the cost model; `vmtier sim gen`: write a
 * synthetic trace. Progress goes to stderr once a run takes more than a second.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Command } from 'commander';
import { VmtierError } from '../errors.js';
import { DEFAULT_SIM_CONFIG, simulate, type MoveRecord, type SimConfig } from '../sim/engine.js';
import { makePolicy, POLICY_NAMES } from '../sim/policies.js';
import { readEpochs, scanTrace, type EpochBatch, type TraceMeta } from '../sim/trace.js';
import { DEFAULT_GEN, GEN_KINDS, generateTrace } from '../sim/gen.js';

function num(name: string, min: number, max = Infinity, integer = false): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new VmtierError('INVALID_INPUT', `${name} must be ${integer ? 'an integer' : 'a number'} within [${min}, ${max === Infinity ? '∞' : max}], got "${v}"`);
    }
    return n;
  };
}

function progress(label: string): (done: number, total: number) => void {
  const start = Date.now();
  let last = start;
  return (done, total) => {
    const now = Date.now();
    if (now - start < 1000 || now - last < 1000) return;
    last = now;
    process.stderr.write(`${label}: ${done}/${total} epochs (${Math.round((100 * done) / Math.max(1, total))}%)\n`);
  };
}

/** Dense ids back to what the trace calls them: page numbers, or [vm, page] with a vm column. */
function external(meta: TraceMeta, ids: number[]): (number | [string, number])[] {
  return ids.map((id) => (meta.hasVmColumn ? [meta.vms[meta.vmOfPage[id]!]!, meta.pageNumbers[id]!] : meta.pageNumbers[id]!));
}

interface SimOpts {
  trace: string;
  policy: string;
  dramRatio: number;
  dramLatencyNs: number;
  slowLatencyNs: number;
  migrationGbps: number;
  pages?: number;
  json?: boolean;
  emitMoves?: string;
}

async function runSim(o: SimOpts): Promise<void> {
  const cfg: SimConfig = { dramRatio: o.dramRatio, dramLatencyNs: o.dramLatencyNs, slowLatencyNs: o.slowLatencyNs, migrationGBps: o.migrationGbps };
  const policy = makePolicy(o.policy);
  const meta = await scanTrace(o.trace, o.pages);
  let movesOut: ReturnType<typeof createWriteStream> | null = null;
  const lines: string[] = [];
  if (o.emitMoves) {
    movesOut = createWriteStream(o.emitMoves);
    await once(movesOut, 'open').catch((e: Error) => {
      throw new VmtierError('INVALID_INPUT', `cannot write ${o.emitMoves}: ${e.message}`);
    });
  }
  const onMoves = movesOut
    ? (rec: MoveRecord) => {
        lines.push(JSON.stringify({ epoch: rec.epoch, promote: external(meta, rec.promote), demote: external(meta, rec.demote) }));
      }
    : undefined;
  const report = progress(`sim ${o.policy}`);
  // Flush emitted lines between epochs so memory stays bounded on long traces.
  async function* flushing(): AsyncGenerator<EpochBatch> {
    for await (const b of readEpochs(o.trace, meta, o.pages)) {
      yield b;
      if (movesOut && lines.length >= 256) {
        const ok = movesOut.write(lines.join('\n') + '\n');
        lines.length = 0;
        if (!ok) await once(movesOut, 'drain');
      }
    }
  }
  const r = await simulate(meta, flushing(), policy, cfg, { onMoves, onProgress: report });
  if (movesOut) {
    if (lines.length) movesOut.write(lines.join('\n') + '\n');
    movesOut.end();
    await once(movesOut, 'close');
  }
  if (o.json) {
    process.stdout.write(
      JSON.stringify({
        policy: r.policy,
        epochs: r.epochs,
        pages: r.pages,
        accesses: r.accesses,
        slowdown: r.slowdown,
        dramHitRatio: r.dramHitRatio,
        migratedBytes: r.migratedBytes,
        promotions: r.promotions,
        demotions: r.demotions,
        pingPongs: r.pingPongs,
      }) + '\n',
    );
  } else {
    process.stdout.write(
      `policy ${r.policy}: ${r.epochs} epochs, ${r.pages} pages, ${r.accesses} accesses\n` +
        `slowdown ${r.slowdown.toFixed(4)}  DRAM hit ratio ${(100 * r.dramHitRatio).toFixed(2)}%\n` +
        `migrated ${r.migratedBytes} bytes (${r.promotions} promotions, ${r.demotions} demotions, ${r.pingPongs} ping-pongs)\n`,
    );
  }
}

export function register(program: Command): void {
  // `sim` and `sim gen` both take --pages: options after `gen` must be gen's, not sim's.
  program.enablePositionalOptions();
  const sim = program
    .command('sim')
    .enablePositionalOptions()
    .description('replay an access trace under a tiering policy and the cost model (see README "Policy and simulator")')
    .option('--trace <file>', 'CSV trace (epoch,page,accesses with an optional leading vm column), .csv or .csv.gz')
    .option('--policy <name>', `one of ${POLICY_NAMES.join(', ')}`, 'vmtier')
    .option('--dram-ratio <r>', 'DRAM as a fraction of the pages', num('--dram-ratio', 0, 1), DEFAULT_SIM_CONFIG.dramRatio)
    .option('--dram-latency-ns <ns>', 'DRAM access latency', num('--dram-latency-ns', 1e-9), DEFAULT_SIM_CONFIG.dramLatencyNs)
    .option('--slow-latency-ns <ns>', 'slow-tier access latency', num('--slow-latency-ns', 0), DEFAULT_SIM_CONFIG.slowLatencyNs)
    .option('--migration-gbps <gbps>', 'migration bandwidth in GB/s', num('--migration-gbps', 1e-9), DEFAULT_SIM_CONFIG.migrationGBps)
    .option('--pages <n>', 'pages per VM (default: the distinct pages in the trace)', num('--pages', 1, 2 ** 31 - 1, true))
    .option('--json', 'print the result as one JSON object')
    .option('--emit-moves <file>', 'write one JSON line per epoch in which moves take effect')
    .action(async (o: SimOpts) => {
      if (!o.trace) throw new VmtierError('INVALID_INPUT', '--trace <file> is required');
      await runSim(o);
    });
  sim
    .command('gen')
    .description(`write a seeded synthetic trace: ${GEN_KINDS.join(', ')}`)
    .argument('<kind>', GEN_KINDS.join(' | '))
    .requiredOption('--out <file>', 'output file (.csv or .csv.gz)')
    .option('--pages <n>', 'pages (all VMs together for multi)', num('--pages', 1, 2 ** 31 - 1, true), DEFAULT_GEN.pages)
    .option('--epochs <n>', 'epochs', num('--epochs', 1, 1e9, true), DEFAULT_GEN.epochs)
    .option('--accesses <n>', 'mean accesses per epoch', num('--accesses', 1, 1e12, true), DEFAULT_GEN.accesses)
    .option('--skew <s>', 'zipf exponent', num('--skew', 0, 4), DEFAULT_GEN.skew)
    .option('--phase-epochs <n>', 'epochs per phase (phase, multi)', num('--phase-epochs', 1, 1e9, true), DEFAULT_GEN.phaseEpochs)
    .option('--hot-fraction <f>', 'hot set as a fraction of pages (phase, scan)', num('--hot-fraction', 1e-9, 1), DEFAULT_GEN.hotFraction)
    .option('--seed <n>', 'random seed', num('--seed', 0, 2 ** 32 - 1, true), DEFAULT_GEN.seed)
    .action(async (kind: string, o: { out: string; pages: number; epochs: number; accesses: number; skew: number; phaseEpochs: number; hotFraction: number; seed: number }) => {
      const rows = await generateTrace(kind, o.out, o, progress(`gen ${kind}`));
      process.stderr.write(`wrote ${o.out}: ${rows} rows\n`);
    });
}
