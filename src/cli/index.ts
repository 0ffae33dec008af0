import type { Command } from 'commander';
import { registerHost } from './host.js';
import { registerScan } from './scan.js';

/** Each feature adds its `register(program)` here. */
export function registerCommands(program: Command): void {
  void program;
  registerHost(program);
  registerScan(program);
}
