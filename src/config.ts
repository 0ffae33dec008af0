/**
 * vmtier's configuration: embedded defaults, then an optional YAML file, then environment
 * variables, then command-line flags (each later source overrides the earlier). Validated
 * once here; everything else receives the typed result.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';
import { parse as parseYaml } from 'yaml';
import { VmtierError } from './errors.js';
import type { TierClass } from './host/topology.js';

export const DEFAULT_DB = './var/vmtier.db';
export const DEFAULT_URI = 'qemu:///system';
export const DEFAULT_LISTEN = '127.0.0.1:8477';

export interface RetentionConfig {
  /** Samples are kept at full resolution this long. */
  fullResolutionMs: number;
  /** Bucket width that older samples are averaged into. */
  coarseStepMs: number;
  /** Samples, migration log entries and superseded policy versions older than this are dropped. */
  maxAgeMs: number;
  /** How often `vmtier serve` applies retention (also once at start). */
  intervalMs: number;
}

export const DEFAULT_RETENTION: RetentionConfig = Object.freeze({
  fullResolutionMs: 24 * 3600_000,
  coarseStepMs: 5 * 60_000,
  maxAgeMs: 30 * 24 * 3600_000,
  intervalMs: 3600_000,
});

export interface VmtierConfig {
  db: string;
  uri: string;
  listen: { host: string; port: number };
  /** Bearer token for /v1; null = no auth (allowed on loopback only). */
  token: string | null;
  /** Host node id -> class, overriding the kernel's tiers. */
  tierOverrides: Record<string, TierClass>;
  retention: RetentionConfig;
}

/** The YAML file's schema (all optional). */
export const ConfigFileSchema = Type.Object(
  {
    db: Type.Optional(Type.String({ minLength: 1 })),
    uri: Type.Optional(Type.String({ minLength: 1 })),
    listen: Type.Optional(Type.String({ minLength: 1 })),
    token: Type.Optional(Type.String({ minLength: 16 })),
    tiers: Type.Optional(Type.Record(Type.String({ pattern: '^[0-9]+$' }), Type.Union([Type.Literal('top'), Type.Literal('slow')]))),
    retention: Type.Optional(
      Type.Object(
        {
          fullResolutionHours: Type.Optional(Type.Number({ minimum: 0 })),
          coarseStepSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
          maxAgeDays: Type.Optional(Type.Number({ minimum: 0 })),
          intervalSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type ConfigFile = Static<typeof ConfigFileSchema>;

export interface ConfigFlags {
  config?: string;
  db?: string;
  uri?: string;
  listen?: string;
  token?: string;
}

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new VmtierError('CONFIG_ERROR', `listen address must be host:port (e.g. 127.0.0.1:8477 or [::1]:8477), got ${JSON.stringify(text)}`);
  }
  const host = m[1] ?? (m[2] === '' ? '127.0.0.1' : m[2]);
  return { host, port };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

function readConfigFile(path: string): ConfigFile {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8')) ?? {};
  } catch (e) {
    throw new VmtierError('CONFIG_ERROR', `cannot read config ${path}: ${(e as Error).message}`, { path });
  }
  if (!Value.Check(ConfigFileSchema, doc)) {
    const first = [...Value.Errors(ConfigFileSchema, doc)][0] as { instancePath?: string; message?: string } | undefined;
    throw new VmtierError('CONFIG_ERROR', `invalid config ${path} at ${first?.instancePath || '/'}: ${first?.message ?? 'does not match schema'}`, { path });
  }
  return doc as ConfigFile;
}

/** Resolves the configuration; throws CONFIG_ERROR on bad input. */
export function loadConfig(flags: ConfigFlags = {}, env: NodeJS.ProcessEnv = process.env): VmtierConfig {
  const path = flags.config ?? env.VMTIER_CONFIG;
  const file: ConfigFile = path ? readConfigFile(path) : {};
  const pick = (flag: string | undefined, envName: string, fromFile: string | undefined, dflt: string | null) =>
    flag ?? (env[envName] !== undefined && env[envName] !== '' ? env[envName]! : undefined) ?? fromFile ?? dflt;
  const token = pick(flags.token, 'VMTIER_TOKEN', file.token, null);
  if (token !== null && token.length < 16) {
    throw new VmtierError('CONFIG_ERROR', 'token must be at least 16 characters');
  }
  const r = file.retention ?? {};
  const retention: RetentionConfig = {
    fullResolutionMs: r.fullResolutionHours !== undefined ? r.fullResolutionHours * 3600_000 : DEFAULT_RETENTION.fullResolutionMs,
    coarseStepMs: r.coarseStepSeconds !== undefined ? r.coarseStepSeconds * 1000 : DEFAULT_RETENTION.coarseStepMs,
    maxAgeMs: r.maxAgeDays !== undefined ? r.maxAgeDays * 24 * 3600_000 : DEFAULT_RETENTION.maxAgeMs,
    intervalMs: r.intervalSeconds !== undefined ? r.intervalSeconds * 1000 : DEFAULT_RETENTION.intervalMs,
  };
  if (retention.maxAgeMs < retention.fullResolutionMs) {
    throw new VmtierError('CONFIG_ERROR', 'retention.maxAgeDays must not be shorter than retention.fullResolutionHours');
  }
  return {
    db: pick(flags.db, 'VMTIER_DB', file.db, DEFAULT_DB)!,
    uri: pick(flags.uri, 'VMTIER_URI', file.uri, DEFAULT_URI)!,
    listen: parseListen(pick(flags.listen, 'VMTIER_LISTEN', file.listen, DEFAULT_LISTEN)!),
    token,
    tierOverrides: { ...(file.tiers ?? {}) },
    retention,
  };
}
