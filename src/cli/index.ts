import type { Command } from 'commander';
import { registerHost } from './host.js';
import { registerServe } from './serve.js';
import { registerScan } from './scan.js';
import { registerVms } from './vms.js';
import { registerProfile } from './profile.js';
import { register as registerSim } from './sim.js';

/** Each feature adds its `register(program)` here. */
export function registerCommands(program: Command): void {
  void program;
  registerHost(program);
  registerServe(program);
  registerScan(program);
  registerVms(program);
  registerProfile(program);
  registerSim(program);
}
