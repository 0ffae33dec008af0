/**
 * The engine's settings for `vmtier serve`: command-line flags, else environment variables, else
 * defaults. Validated here so a typo is a CONFIG_ERROR at start, not a silent default.
 */
import { VmtierError } from '../errors.js';
import { TRACKER_NAMES } from '../scan/index.js';
import type { EngineOptions } from './engine.js';

export interface EngineFlags {
  engine?: boolean;
  tracker?: string;
  replayTrace?: string;
  manage?: string;
  promoteNode?: string;
  demoteNode?: string;
  hostMbps?: string;
  dramWatermarkMb?: string;
  resyncMs?: string;
}

export interface EngineSettings {
  enabled: boolean;
  options: Omit<EngineOptions, 'inventory' | 'store' | 'logger' | 'readHost' | 'registry'>;
  /** For the start-up log line. */
  describe: Record<string, unknown>;
}

function num(what: string, text: string | undefined, opts: { integer?: boolean; min?: number } = {}): number | undefined {
  if (text === undefined || text === '') return undefined;
  const v = Number(text);
  if (!Number.isFinite(v) || (opts.integer && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min)) {
    throw new VmtierError('CONFIG_ERROR', `${what} must be a ${opts.integer ? 'whole ' : ''}number${opts.min !== undefined ? ` >= ${opts.min}` : ''}, got ${JSON.stringify(text)}`);
  }
  return v;
}

export function engineSettings(flags: EngineFlags, env: NodeJS.ProcessEnv = process.env): EngineSettings {
  const pick = (flag: string | undefined, name: string) => flag ?? (env[name] !== undefined && env[name] !== '' ? env[name] : undefined);
  const envEngine = env.VMTIER_ENGINE;
  if (envEngine !== undefined && envEngine !== '' && !/^(on|off|1|0|true|false)$/i.test(envEngine)) {
    throw new VmtierError('CONFIG_ERROR', `VMTIER_ENGINE must be on or off, got ${JSON.stringify(envEngine)}`);
  }
  const enabled = flags.engine === false ? false : envEngine ? /^(on|1|true)$/i.test(envEngine) : true;
  const tracker = pick(flags.tracker, 'VMTIER_TRACKER');
  if (tracker !== undefined && !(TRACKER_NAMES as readonly string[]).includes(tracker)) {
    throw new VmtierError('CONFIG_ERROR', `tracker must be one of ${TRACKER_NAMES.join(', ')}, got ${JSON.stringify(tracker)}`);
  }
  const trace = pick(flags.replayTrace, 'VMTIER_REPLAY_TRACE');
  if (tracker === 'replay' && !trace) throw new VmtierError('CONFIG_ERROR', 'the replay tracker needs --replay-trace <file> (or VMTIER_REPLAY_TRACE)');
  const manageText = pick(flags.manage, 'VMTIER_MANAGE');
  let manage: RegExp | undefined;
  if (manageText) {
    try {
      manage = new RegExp(manageText);
    } catch (e) {
      throw new VmtierError('CONFIG_ERROR', `--manage is not a valid regular expression: ${(e as Error).message}`);
    }
  }
  const top = num('--promote-node', pick(flags.promoteNode, 'VMTIER_PROMOTE_NODE'), { integer: true, min: 0 });
  const slow = num('--demote-node', pick(flags.demoteNode, 'VMTIER_DEMOTE_NODE'), { integer: true, min: 0 });
  const hostMBps = num('--host-mbps', pick(flags.hostMbps, 'VMTIER_HOST_MBPS'), { min: 0 });
  const wmMB = num('--dram-watermark-mb', pick(flags.dramWatermarkMb, 'VMTIER_DRAM_WATERMARK_MB'), { min: 0 });
  const resyncMs = num('--resync-ms', pick(flags.resyncMs, 'VMTIER_RESYNC_MS'), { integer: true, min: 100 });
  const targetNodes = top !== undefined || slow !== undefined ? { ...(top !== undefined ? { top } : {}), ...(slow !== undefined ? { slow } : {}) } : undefined;
  return {
    enabled,
    options: {
      tracker,
      // A replayed trace loops so a long-running service keeps seeing accesses.
      trackerOptions: trace ? { replay: { trace, loop: true } } : undefined,
      manage: manage ? (d) => manage!.test(d.name) : undefined,
      targetNodes,
      budget: { ...(hostMBps !== undefined ? { hostMBps } : {}), ...(wmMB !== undefined ? { dramFreeWatermarkBytes: wmMB * 2 ** 20 } : {}) },
      resyncMs,
    },
    describe: {
      engine: enabled ? 'on' : 'off',
      tracker: tracker ?? 'per policy',
      ...(trace ? { replayTrace: trace } : {}),
      ...(manageText ? { manage: manageText } : {}),
      ...(targetNodes ? { targetNodes } : {}),
    },
  };
}
