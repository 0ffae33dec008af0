import type { Command } from 'commander';

/** Each feature adds its `register(program)` here. */
export function registerCommands(program: Command): void {
  void program;
}
