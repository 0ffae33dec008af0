import type { Command } from 'commander';

type Register = (program: Command) => void;

/**
 * Each command's module, loaded only when that command runs: several pull in libvirt,
 * fastify or SQLite, and loading them all costs a second per call (many under TCG in the lab).
 */
const COMMANDS: Array<{ names: string[]; load: () => Promise<Register> }> = [
  { names: ['host'], load: async () => (await import('./host.js')).registerHost },
  { names: ['doctor'], load: async () => (await import('./doctor.js')).registerDoctor },
  { names: ['serve'], load: async () => (await import('./serve.js')).registerServe },
  { names: ['scan'], load: async () => (await import('./scan.js')).registerScan },
  { names: ['vms', 'numa', 'placement'], load: async () => (await import('./vms.js')).registerVms },
  { names: ['profile'], load: async () => (await import('./profile.js')).registerProfile },
  { names: ['sim'], load: async () => (await import('./sim.js')).register },
];

/** Registers the command named in `argv` (all of them for help or an unknown name). */
export async function registerCommands(program: Command, argv: readonly string[]): Promise<void> {
  const name = argv.slice(2).find((a) => !a.startsWith('-'));
  const chosen = COMMANDS.filter((c) => name !== undefined && c.names.includes(name));
  for (const c of chosen.length > 0 ? chosen : COMMANDS) (await c.load())(program);
}
