import { pino, type Logger, type LevelWithSilent } from 'pino';

/** The process logger. Children per VM: `logger.child({ vm: uuid })`. */
export function createLogger(level: LevelWithSilent = (process.env.VMTIER_LOG_LEVEL as LevelWithSilent) ?? 'info'): Logger {
  return pino({ level, base: { svc: 'vmtier' } });
}

export type { Logger };
