/**
 * vmtier's command line. Each command lives in src/cli/<name>.ts and registers itself
 * here; errors with a code print as `CODE: message` and exit 1.
 */
import { Command, CommanderError } from 'commander';
import { isVmtierError } from './errors.js';
import { registerCommands } from './cli/index.js';

export async function buildProgram(argv: readonly string[] = process.argv): Promise<Command> {
  const program = new Command('vmtier')
    .description('Memory tiering for KVM virtual machines: hot pages in DRAM, cold pages in the slow tier')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  await registerCommands(program, argv);
  return program;
}

async function main(argv: string[]): Promise<void> {
  try {
    await (await buildProgram(argv)).parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
      return;
    }
    if (isVmtierError(e)) {
      process.stderr.write(`${e.code}: ${e.message}\n`);
      process.exitCode = 1;
      return;
    }
    process.stderr.write(`INTERNAL: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 70;
  }
}

await main(process.argv);
