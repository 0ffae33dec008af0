/**
 * `vmtier serve` as a child process for tests that need the real thing (real HTTP, real signals,
 * a real SQLite file): start it on a free loopback port, read its log lines, stop or SIGKILL it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const repoRoot = join(import.meta.dirname, '..', '..', '..');

export interface ServedProcess {
  url: string;
  child: ChildProcess;
  /** Everything it printed so far (pino JSON lines). */
  output: () => string;
  /** Parsed log lines so far. */
  lines: () => Array<Record<string, unknown>>;
  exited: Promise<number | null>;
  stop: () => Promise<number | null>;
  kill9: () => Promise<number | null>;
}

const running = new Set<ChildProcess>();

/** Kills every serve child still running (for after() hooks). */
export function killAllServed(): void {
  for (const c of running) c.kill('SIGKILL');
}

export async function startServe(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<ServedProcess> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'vmtier.js'), 'serve', '--listen', '127.0.0.1:0', ...args], {
    env: { ...process.env, VMTIER_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  child.stdout!.on('data', (b) => (out += b));
  child.stderr!.on('data', (b) => (out += b));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  const deadline = Date.now() + timeoutMs;
  while (!/"msg":"vmtier serving"/.test(out)) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`serve did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const url = /"url":"(http:[^"]+)"/.exec(out)![1]!;
  const lines = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      });
  return {
    url,
    child,
    output: () => out,
    lines,
    exited,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      child.kill('SIGKILL');
      return exited;
    },
  };
}
