/**
 * A lab session: one QEMU/TCG guest booted on the lab kernel with this machine's root shared
 * read-only, its memory tiers prepared, and any number of commands run inside it. Commands and
 * results travel through a writable per-session 9p share (.cache/lab/run-<id>/xchg), which keeps
 * stdout, stderr and the exit status apart without parsing the serial console.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync, copyFileSync, cpSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, readSync,
  renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmtierError } from '../src/errors.js';
import { ensureInitramfs } from './initramfs.js';
import { ensureLabKernel, type LabKernelName } from './kernel.js';
import { guestScriptDir, labCacheDir, repoRoot } from './paths.js';
import { labMachine, type LabMachine, type LabTopologyName } from './topology.js';

export interface LabSessionOptions {
  topology?: LabTopologyName;
  /** Debian kernel the guest boots: '6.12' (bookworm-backports, default) or '6.1' (bookworm). */
  kernel?: LabKernelName;
  /** QEMU -cpu model; e.g. 'EPYC,+svm,+npt' for nested KVM inside the lab. Default 'max'. */
  cpu?: string;
  /** Boot (until the tiers are ready) must finish within this; default 120 s. */
  bootTimeoutMs?: number;
  /** Extra kernel command line words. */
  append?: string[];
  /** Directory commands run in, inside the guest; default the repository root. */
  cwd?: string;
  /** Called with a progress line (boot steps). */
  onProgress?: (line: string) => void;
}

export interface LabCommandOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
  /** Output as it arrives (read from the exchange share while the command runs). */
  onStdout?: (chunk: string) => void;
  onStderr?: (chunk: string) => void;
}

export interface LabResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** A command started in the guest: `wait()` for its result, `kill()` to end its process group. */
export interface LabProcess {
  id: number;
  wait(): Promise<LabResult>;
  kill(): void;
}

const DEFAULT_TIMEOUT_MS = 300_000;
/** NVDIMMs at least this big are onlined as kmem; smaller ones (the devdax spare) are not. */
const KMEM_MIN_BYTES = 256 * 1024 * 1024;
const POLL_MS = 50;
const sessions = new Set<LabSession>();
let exitHookInstalled = false;

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A command line (argv, or a shell script string) as the body of req-N.sh. */
export function commandScript(command: string[] | string, env: Record<string, string> = {}): string {
  const lines = Object.entries(env).map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new VmtierError('INVALID_INPUT', `invalid environment variable name "${k}"`);
    return `export ${k}=${shellQuote(v)}`;
  });
  lines.push(typeof command === 'string' ? command : command.map(shellQuote).join(' '));
  return lines.join('\n') + '\n';
}

/** Reads what was appended to a file since `offset`. */
function readFrom(path: string, offset: number): { text: string; offset: number } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return { text: '', offset };
  }
  try {
    const size = statSync(path).size;
    if (size <= offset) return { text: '', offset };
    const buf = Buffer.alloc(size - offset);
    const n = readSync(fd, buf, 0, buf.length, offset);
    return { text: buf.subarray(0, n).toString('utf8'), offset: offset + n };
  } finally {
    closeSync(fd);
  }
}

export class LabSession {
  readonly id: string;
  readonly runDir: string;
  readonly xchg: string;
  readonly machine: LabMachine;
  readonly kernelVersion: string;
  /** Which of the lab's kernels runs ('6.12' or '6.1'). */
  readonly kernel: LabKernelName;
  private qemu: ChildProcess | null = null;
  private exited: { code: number | null; signal: string | null } | null = null;
  private nextId = 0;
  private closed = false;
  private readonly opts: LabSessionOptions;

  private constructor(opts: LabSessionOptions, kernel: LabKernelName, kernelVersion: string) {
    this.opts = opts;
    this.id = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    this.runDir = join(labCacheDir, `run-${this.id}`);
    this.xchg = join(this.runDir, 'xchg');
    this.machine = labMachine(opts.topology ?? 'tiered', this.runDir);
    this.kernel = kernel;
    this.kernelVersion = kernelVersion;
  }

  /** Boots a guest and waits until its tiers are ready. Throws LAB_ERROR (with saved logs) if it cannot. */
  static async start(opts: LabSessionOptions = {}): Promise<LabSession> {
    const progress = opts.onProgress ?? (() => {});
    progress('lab: checking kernel and packages');
    const kernel = ensureLabKernel(opts.kernel ?? '6.12');
    const initrd = ensureInitramfs(kernel);
    for (let attempt = 1; ; attempt++) {
      const s = new LabSession(opts, kernel.name, kernel.version);
      sessions.add(s);
      installExitHook();
      try {
        await s.boot(kernel.vmlinuz, initrd, progress);
      } catch (e) {
        // Under TCG the guest kernel very rarely crashes while it boots (seen: a fatal exception in
        // enqueue_timer, 1.5 s after start, on a quiet host). That is the emulator's flake, not
        // what any test proves, so one more boot is tried; the failure's logs were saved.
        const crash = attempt === 1 ? kernelCrashDuringBoot(s.consoleLog()) : null;
        await s.close();
        if (!crash) throw e;
        progress(`lab: the guest kernel crashed while booting (${crash}); logs saved, booting once more`);
        continue;
      }
      return s;
    }
  }

  get consoleLogPath(): string {
    return join(this.runDir, 'console.log');
  }

  get monitorSocket(): string {
    return join(this.runDir, 'monitor.sock');
  }

  consoleLog(): string {
    try {
      return readFileSync(this.consoleLogPath, 'utf8');
    } catch {
      return '';
    }
  }

  private bootArgs(vmlinuz: string, initrd: string): string[] {
    const append = [
      'console=ttyS0', 'loglevel=5', 'rdinit=/init', 'panic=-1', 'mitigations=off',
      // Deterministic placement for tests: nothing moves pages behind their back, and THP is
      // used only where a program asks (the workload's madvise). Tests may change both inside.
      'numa_balancing=disable', 'transparent_hugepage=madvise',
      // daxctl onlines the kmem memory itself, in the zone it is asked for (auto-online races it).
      'memhp_default_state=offline',
      // A loaded host starves TCG's timer calibration; one boot panicked with "IO-APIC + timer
      // doesn't work!" without this.
      'no_timer_check',
      `vmtier_repo=${repoRoot}`,
      ...(this.opts.append ?? []),
    ];
    return [
      '-accel', 'tcg', '-cpu', this.opts.cpu ?? 'max',
      '-nodefaults', '-display', 'none', '-no-reboot',
      '-kernel', vmlinuz, '-initrd', initrd, '-append', append.join(' '),
      '-virtfs', 'local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap',
      '-virtfs', `local,path=${this.xchg},mount_tag=xchg,security_model=none,multidevs=remap`,
      // The repository again, on its own: a clone under /tmp or /root (CI's may be) would
      // otherwise be hidden by the tmpfs the guest puts there.
      '-virtfs', `local,path=${repoRoot},mount_tag=repo,security_model=none,readonly=on,multidevs=remap`,
      '-serial', `file:${this.consoleLogPath}`,
      '-monitor', `unix:${this.monitorSocket},server=on,wait=off`,
    ];
  }

  private async boot(vmlinuz: string, initrd: string, progress: (l: string) => void): Promise<void> {
    removeOrphanRunDirs();
    mkdirSync(this.xchg, { recursive: true });
    writeFileSync(join(this.runDir, 'owner.pid'), `${process.pid}\n`);
    for (const d of this.machine.nvdimms) {
      // Sparse: only what the guest touches takes space.
      const fd = openSync(d.path, 'w');
      ftruncateSync(fd, d.sizeBytes);
      closeSync(fd);
    }
    copyFileSync(join(guestScriptDir, 'agent.sh'), join(this.xchg, 'agent.sh'));
    const conf = [
      `LAB_NVDIMM_COUNT=${this.machine.nvdimms.length}`,
      `LAB_KMEM_MIN_BYTES=${KMEM_MIN_BYTES}`,
      `LAB_EXPECT_NODES='${this.machine.nodes.join(' ')}'`,
      `LAB_CWD=${shellQuote(this.opts.cwd ?? repoRoot)}`,
      `LAB_TOPOLOGY=${this.machine.topology}`,
    ];
    writeFileSync(join(this.xchg, 'lab.conf'), conf.join('\n') + '\n');

    const qemuArgs = [...this.machine.args, ...this.bootArgs(vmlinuz, initrd)];
    // The guest must not outlive its parent (a crashed test run): setpriv makes the kernel kill it.
    const hasSetpriv = spawnSync('setpriv', ['--help'], { stdio: 'ignore' }).status === 0;
    const [cmd, args] = hasSetpriv
      ? ['setpriv', ['--pdeathsig', 'KILL', 'qemu-system-x86_64', ...qemuArgs]]
      : ['qemu-system-x86_64', qemuArgs];
    writeFileSync(join(this.runDir, 'qemu.cmdline'), [cmd, ...args].map(shellQuote).join(' ') + '\n');
    progress(`lab: booting ${this.kernelVersion} (${this.machine.topology}) in ${this.runDir}`);
    const started = Date.now();
    const qemu = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.qemu = qemu;
    let qemuStderr = '';
    qemu.stderr!.on('data', (b: Buffer) => { qemuStderr += b.toString(); });
    qemu.on('exit', (code, signal) => { this.exited = { code, signal }; });
    qemu.on('error', (e) => { this.exited = { code: null, signal: String(e) }; });

    const timeout = this.opts.bootTimeoutMs ?? 120_000;
    for (;;) {
      if (existsSync(join(this.xchg, 'ready'))) break;
      const failed = join(this.xchg, 'setup-failed');
      if (existsSync(failed)) {
        await this.waitExit(10_000);
        throw this.failure(`guest setup failed: ${readFileSync(failed, 'utf8').trim()}`);
      }
      if (this.exited) {
        const m = /LAB-INIT-FAILED: (.*)/.exec(this.consoleLog());
        throw this.failure(m ? `guest init failed: ${m[1]}` :
          `QEMU exited during boot (code ${this.exited.code}, signal ${this.exited.signal}): ${qemuStderr.trim().slice(-2000)}`);
      }
      if (Date.now() - started > timeout) {
        throw this.failure(`boot did not finish within ${timeout} ms`);
      }
      await sleep(POLL_MS * 2);
    }
    progress(`lab: ready after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }

  /**
   * A LAB_ERROR whose message names a directory holding the serial console, the guest's dmesg
   * (when the guest could still write it) and the setup log: never a silent skip.
   */
  private failure(reason: string): VmtierError {
    const dir = join(labCacheDir, 'failures', this.id);
    mkdirSync(dir, { recursive: true });
    for (const f of ['setup.log', 'dmesg.txt', 'qemu.cmdline', 'console.log']) {
      const src = f === 'console.log' ? this.consoleLogPath : f === 'qemu.cmdline' ? join(this.runDir, f) : join(this.xchg, f);
      if (existsSync(src)) cpSync(src, join(dir, f));
    }
    writeFileSync(join(dir, 'reason.txt'), reason + '\n');
    const tail = this.consoleLog().split('\n').slice(-15).join('\n');
    return new VmtierError('LAB_ERROR', `lab: ${reason} (logs: ${dir})\n--- console tail ---\n${tail}`, { logs: dir });
  }

  /** Starts a command in the guest (as root, in the repository directory). */
  start(command: string[] | string, opts: LabCommandOptions = {}): LabProcess {
    if (this.closed || this.exited) throw new VmtierError('LAB_ERROR', 'lab session is not running');
    const id = this.nextId++;
    const req = join(this.xchg, `req-${id}.sh`);
    writeFileSync(`${req}.tmp`, commandScript(command, opts.env));
    renameSync(`${req}.tmp`, req);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const kill = () => {
      if (!existsSync(join(this.xchg, `status-${id}`))) writeFileSync(join(this.xchg, `kill-${id}`), '');
    };
    const wait = async (): Promise<LabResult> => {
      const started = Date.now();
      const out = join(this.xchg, `out-${id}.stdout`);
      const err = join(this.xchg, `out-${id}.stderr`);
      const statusFile = join(this.xchg, `status-${id}`);
      let o = { text: '', offset: 0 };
      let e = { text: '', offset: 0 };
      let stdout = '';
      let stderr = '';
      const drain = () => {
        o = readFrom(out, o.offset);
        e = readFrom(err, e.offset);
        if (o.text) { stdout += o.text; opts.onStdout?.(o.text); }
        if (e.text) { stderr += e.text; opts.onStderr?.(e.text); }
      };
      let killedAt = 0;
      for (;;) {
        drain();
        if (existsSync(statusFile)) {
          drain();
          const status = Number.parseInt(readFileSync(statusFile, 'utf8').trim(), 10);
          if (killedAt) {
            throw new VmtierError('LAB_ERROR', `lab: command timed out after ${timeoutMs} ms: ${describe(command)}`,
              { stdout: stdout.slice(-4000), stderr: stderr.slice(-4000) });
          }
          return { status: Number.isNaN(status) ? 255 : status, stdout, stderr };
        }
        if (this.exited) {
          throw this.failure(`the guest stopped while running: ${describe(command)}\n--- stdout ---\n${stdout.slice(-2000)}\n--- stderr ---\n${stderr.slice(-2000)}`);
        }
        if (!killedAt && Date.now() - started > timeoutMs) {
          kill();
          killedAt = Date.now();
        }
        if (killedAt && Date.now() - killedAt > 15_000) {
          throw this.failure(`command timed out after ${timeoutMs} ms and could not be killed: ${describe(command)}`);
        }
        await sleep(POLL_MS);
      }
    };
    return { id, wait, kill };
  }

  /** Runs a command to completion: { status, stdout, stderr }. A non-zero status is returned, not thrown. */
  async run(command: string[] | string, opts: LabCommandOptions = {}): Promise<LabResult> {
    return this.start(command, opts).wait();
  }

  /** Like run(), but a non-zero status throws LAB_ERROR with the output; returns stdout. */
  async check(command: string[] | string, opts: LabCommandOptions = {}): Promise<string> {
    const r = await this.run(command, opts);
    if (r.status !== 0) {
      throw new VmtierError('LAB_ERROR', `lab: ${describe(command)} exited ${r.status}\n${r.stderr.slice(-3000)}${r.stdout.slice(-1000)}`,
        { status: r.status });
    }
    return r.stdout;
  }

  /** The guest's kernel log (through a command). */
  async dmesg(): Promise<string> {
    return (await this.run(['dmesg'], { timeoutMs: 30_000 })).stdout;
  }

  private async waitExit(ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (!this.exited && Date.now() < until) await sleep(POLL_MS);
    return this.exited !== null;
  }

  /** Powers the guest off (kills QEMU if it does not stop in time) and removes the session's files. */
  async close(opts: { keepFiles?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.qemu && !this.exited) {
      try {
        writeFileSync(join(this.xchg, 'poweroff'), '');
      } catch { /* run dir already gone */ }
      if (!(await this.waitExit(15_000))) {
        this.qemu.kill('SIGKILL');
        await this.waitExit(5_000);
      }
    }
    sessions.delete(this);
    if (!opts.keepFiles) rmSync(this.runDir, { recursive: true, force: true });
  }

  /** Synchronous last resort at process exit. */
  killNow(): void {
    if (this.qemu && !this.exited) this.qemu.kill('SIGKILL');
    try {
      rmSync(this.runDir, { recursive: true, force: true });
    } catch { /* best effort at exit */ }
  }
}

function describe(command: string[] | string): string {
  const s = typeof command === 'string' ? command : command.join(' ');
  return s.length > 200 ? `${s.slice(0, 200)}...` : s;
}

/**
 * Run directories of sessions whose process died without closing them (killed test runs): their
 * QEMU died with them (pdeathsig), but the sparse NVDIMM files would stay.
 */
function removeOrphanRunDirs(): void {
  let entries: string[];
  try {
    entries = readdirSync(labCacheDir).filter((e) => e.startsWith('run-'));
  } catch {
    return;
  }
  for (const e of entries) {
    const dir = join(labCacheDir, e);
    let owner = 0;
    try {
      owner = Number.parseInt(readFileSync(join(dir, 'owner.pid'), 'utf8'), 10);
    } catch {
      continue; // being created right now, or not ours to judge
    }
    if (!owner || owner === process.pid) continue;
    try {
      process.kill(owner, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') rmSync(dir, { recursive: true, force: true });
    }
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const s of sessions) s.killNow();
  });
}

/**
 * The guest kernel's own crash in a serial log ("Oops", "BUG:", a fatal exception), as opposed to
 * a boot that fails by design or by configuration (no init, a setup step that fails).
 */
export function kernelCrashDuringBoot(consoleLog: string): string | null {
  const m = /(Kernel panic - not syncing: Fatal exception[^\n]*|\bOops: [^\n]*|\bBUG: [^\n]*|general protection fault[^\n]*)/.exec(consoleLog);
  return m ? m[1]!.trim() : null;
}
