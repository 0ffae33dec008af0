// Runs INSIDE the lab guest (node dist/test/lab/tracker-faults-guest.js kmod <module.ko> | damon),
// driven by test/lab/kmod.test.ts and test/lab/damon.test.ts (issue 17, runtime faults): the
// daemon's own Engine and VmLoop manage the lab workload (lab/guest/process-inventory.ts stands
// in for libvirt's domain discovery only) in observe mode with the real kmod or DAMON tracker,
// while this script breaks the tracker under it as an operator or another DAMON user would:
//  - kmod: `rmmod` while the tracker holds /dev/vmtier_idle open, then the module removed while
//    the loop is idle (policy off) and the policy turned on again without it, then reloaded;
//  - damon: the engine's kdamond turned off by another writer in the middle of a scan, twice
//    (the second time right after vmtier restarted it, before a scan could succeed).
// It samples the engine's status and the kernel's state and prints one JSON line; the host test
// asserts on it. This file decides nothing.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { Engine } from '../../src/daemon/engine.js';
import type { VmEngineStatus } from '../../src/daemon/status.js';
import { parsePolicy } from '../../src/policy/index.js';
import { DAMON_SYSFS_ROOT } from '../../src/scan/damon-sysfs.js';
import { Store } from '../../src/store/store.js';
import { ProcessInventory } from '../../lab/guest/process-inventory.js';
import { startWorkload, type RunningWorkload } from '../../lab/guest/workload-proc.js';
import { describeError } from './guest-error.js';

const MiB = 2 ** 20;
const UUID = '74726163-6b65-4266-8175-6c7400000001';

/** The counters of one status sample the host test asserts on. */
function sample(st: VmEngineStatus | null, t0: number): Record<string, unknown> {
  return {
    t: Date.now() - t0,
    rounds: st?.rounds ?? 0,
    state: st?.state ?? null,
    scans: st?.lastRound?.scans ?? null,
    hotMB: st?.lastRound ? +(st.lastRound.hotBytes / MiB).toFixed(1) : null,
    tracker: st?.tracker ?? null,
    trackerStarts: st?.trackerStarts ?? 0,
    trackerFailures: st?.trackerFailures ?? 0,
    trackerBackoffMs: st?.trackerBackoffMs ?? null,
    roundFailures: st?.failures ?? 0,
  };
}

class Harness {
  readonly store = Store.open(':memory:');
  readonly engine: Engine;
  readonly t0 = Date.now();

  constructor(readonly w: RunningWorkload, private readonly tracker: 'kmod' | 'damon') {
    const inventory = new ProcessInventory({ name: 'tracker-faults-workload', uuid: UUID, pid: w.layout.pid, ranges: [{ start: w.layout.base, end: w.layout.base + w.layout.bytes }] });
    this.policy('observe');
    this.engine = new Engine({ inventory, store: this.store, logger: pino({ level: 'warn' }, process.stderr), resyncMs: 1000, idleMs: 200 });
  }

  policy(mode: 'off' | 'observe'): void {
    this.store.putPolicy(UUID, parsePolicy({ mode, tracker: this.tracker, scan: { intervalMs: 250, scansPerRound: 4, autoTune: false } }));
  }

  get st(): VmEngineStatus | null {
    return this.engine.vm(UUID);
  }

  sample(): Record<string, unknown> {
    return sample(this.st, this.t0);
  }

  /** A progress line on stderr (the host test prints stderr when it fails). */
  note(what: string): void {
    process.stderr.write(`tracker-faults ${((Date.now() - this.t0) / 1000).toFixed(1)} s: ${what} ${JSON.stringify(this.sample())}\n`);
  }

  async waitFor(what: string, timeoutMs: number, cond: (st: VmEngineStatus | null) => boolean, stepMs = 100): Promise<number> {
    const t = Date.now();
    while (!cond(this.st)) {
      if (Date.now() - t > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(this.sample())}`);
      await sleep(stepMs);
    }
    return Date.now() - t;
  }

  /** `n` more rounds that scanned (tracker working). */
  async scannedRounds(n: number, timeoutMs = 120_000): Promise<void> {
    let seen = 0;
    let last = this.st?.rounds ?? 0;
    await this.waitFor(`${n} scanned rounds`, timeoutMs, (st) => {
      if (st && st.rounds > last) {
        if ((st.lastRound?.scans ?? 0) > 0) seen++;
        last = st.rounds;
      }
      return seen >= n;
    }, 50);
  }

  async metric(name: string): Promise<number> {
    const text = await this.engine.metrics.registry.metrics();
    const m = new RegExp(`^${name}\\{[^}]*vm_uuid="${UUID}"[^}]*\\} (\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  }
}

function sh(cmd: string, args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr.trim() };
}

function moduleRefcnt(): number | null {
  try {
    return Number(readFileSync('/sys/module/vmtier_idle/refcnt', 'utf8').trim());
  } catch {
    return null;
  }
}

async function kmodCase(ko: string, h: Harness): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  await h.engine.start();
  await h.scannedRounds(2, 400_000);
  out.up = h.sample();
  h.note('up');

  // 1. The tracker holds the device open across rounds: the kernel refuses to unload the module.
  out.refcntHeld = moduleRefcnt();
  out.rmmodBusy = sh('rmmod', ['vmtier_idle']);
  out.deviceAfterBusy = existsSync('/dev/vmtier_idle');
  await h.scannedRounds(1);
  out.afterBusy = h.sample();
  h.note('rmmod refused, scanning on');

  // 2. Gone between scans: the policy is switched off (the loop idles and closes the device),
  // the module is removed, and the policy is switched on again without it.
  h.policy('off');
  out.idleMs = await h.waitFor('the loop idle', 60_000, (st) => st?.state === 'idle');
  const t = Date.now();
  while (moduleRefcnt() !== 0 && Date.now() - t < 30_000) await sleep(100);
  out.refcntIdle = moduleRefcnt();
  out.rmmod = sh('rmmod', ['vmtier_idle']);
  h.note('idle, rmmod done');
  out.deviceAfterRmmod = existsSync('/dev/vmtier_idle');
  const before = h.sample();
  out.beforeGone = before;
  h.policy('observe');
  // Rounds go on for a while without the module: placement only, the tracker retried with backoff.
  const windowMs = 14_000;
  const tw = Date.now();
  const states = new Set<string>();
  while (Date.now() - tw < windowMs) {
    states.add(h.st?.state ?? 'none');
    await sleep(100);
  }
  out.windowMs = Date.now() - tw;
  out.gone = h.sample();
  h.note('window without the module over');
  out.goneStates = [...states];
  out.failuresMetricGone = await h.metric('vmtier_engine_tracker_failures_total');
  out.trackerUpMetricGone = await h.metric('vmtier_engine_tracker_up');
  out.engineRunning = h.engine.status().running;

  // 3. Loaded again: the next retry (at most the backoff in force away) finds it and scans again.
  out.insmod = sh('insmod', [ko]);
  const tl = Date.now();
  await h.waitFor('the tracker back', 120_000, (st) => st?.tracker?.available === true && (st.lastRound?.scans ?? 0) > 0);
  out.recoveryMs = Date.now() - tl;
  await h.scannedRounds(1);
  out.recovered = h.sample();
  h.note('recovered');
  out.failuresMetricEnd = await h.metric('vmtier_engine_tracker_failures_total');
  return out;
}

/**
 * A DAMON sysfs file: 6.12 answers EBUSY to reads while any kdamond command is in flight (the
 * engine's snapshot requests), so a reader retries, as src/scan/damon-sysfs.ts does.
 */
function readDamon(path: string): string {
  const t = Date.now();
  for (;;) {
    try {
      return readFileSync(path, 'utf8').trim();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() - t > 10_000) throw e;
      spawnSync('sleep', ['0.02']);
    }
  }
}

/** The state and thread pid of every kdamond under the DAMON sysfs root. */
function kdamonds(): Array<{ k: number; state: string; pid: number }> {
  const dir = `${DAMON_SYSFS_ROOT}/kdamonds`;
  const n = Number(readDamon(`${dir}/nr_kdamonds`));
  const out: Array<{ k: number; state: string; pid: number }> = [];
  for (let k = 0; k < n; k++) {
    out.push({ k, state: readDamon(`${dir}/${k}/state`), pid: Number(readDamon(`${dir}/${k}/pid`)) });
  }
  return out;
}

/** Writes 'off' as another DAMON user would (retrying EBUSY like any careful writer). */
function turnOff(k: number): void {
  const t = Date.now();
  for (;;) {
    try {
      writeFileSync(`${DAMON_SYSFS_ROOT}/kdamonds/${k}/state`, 'off');
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() - t > 10_000) throw e;
      spawnSync('sleep', ['0.02']);
    }
  }
}

function kdamondThreads(): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('kdamond');
    } catch {
      return false;
    }
  }).map(Number);
}

async function damonCase(h: Harness): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  await h.engine.start();
  await h.scannedRounds(2, 400_000);
  out.up = h.sample();
  h.note('up');
  const pids: number[] = [];
  const on = () => kdamonds().filter((x) => x.state === 'on');

  /** Waits for a kdamond to run with a pid not seen yet; ms since `from` and how many polls saw one on. */
  async function nextKdamond(from: number, timeoutMs: number): Promise<{ afterMs: number; k: number; pid: number }> {
    for (;;) {
      const r = on().find((x) => !pids.includes(x.pid));
      if (r) {
        pids.push(r.pid);
        return { afterMs: Date.now() - from, k: r.k, pid: r.pid };
      }
      if (Date.now() - from > timeoutMs) throw new Error(`no new kdamond within ${timeoutMs} ms: ${JSON.stringify(h.sample())}`);
      await sleep(50);
    }
  }
  const first = on();
  out.first = first;
  pids.push(...first.map((x) => x.pid));

  // 1. Mid-scan: a round's scan (4 snapshots 250 ms apart) starts right after the previous round
  // is recorded; 400 ms later it is between its snapshots. The other writer turns the kdamond off.
  const r0 = h.st!.rounds;
  await h.waitFor('a round to end', 60_000, (st) => (st?.rounds ?? 0) > r0, 20);
  await sleep(400);
  const k = first[0]!.k;
  const tOff1 = Date.now();
  turnOff(k);
  out.offRound = h.st!.rounds;
  await h.waitFor('the failure noticed', 30_000, (st) => (st?.trackerFailures ?? 0) >= 1, 20);
  out.noticedMs = Date.now() - tOff1;
  out.failed1 = h.sample();
  h.note('first off noticed');
  // vmtier restarts its kdamond at the first round after the tracker backoff (5 s).
  const restart1 = await nextKdamond(tOff1, 120_000);
  out.restart1 = restart1;
  out.startsAtRestart1 = h.st!.trackerStarts;
  h.note('restarted once');

  // 2. The other writer turns the new kdamond off at once, before any scan of it succeeded:
  // the backoff is not reset by a start alone, so the next restart waits twice as long.
  turnOff(restart1.k);
  const tOff2 = Date.now();
  await h.waitFor('the second failure noticed', 30_000, (st) => (st?.trackerFailures ?? 0) >= 2, 20);
  out.failed2 = h.sample();
  const restart2 = await nextKdamond(tOff2, 180_000);
  out.restart2 = restart2;
  out.startsAtRestart2 = h.st!.trackerStarts;
  out.roundsAtRestart2 = h.st!.rounds;
  h.note('restarted twice');
  await h.scannedRounds(1);
  out.recovered = h.sample();
  out.failuresMetric = await h.metric('vmtier_engine_tracker_failures_total');
  out.engineRunning = h.engine.status().running;
  return out;
}

async function main(): Promise<void> {
  if (process.env.VMTIER_LAB !== '1') throw new Error('tracker-faults-guest runs only inside the lab (VMTIER_LAB=1), never on the host');
  const [which, ko] = process.argv.slice(2);
  if (which !== 'kmod' && which !== 'damon') throw new Error('usage: tracker-faults-guest.js kmod <module.ko> | damon');
  if (which === 'kmod' && !ko) throw new Error('kmod needs the module path');
  // 32 MiB touched once, 8 MiB of it written 10x/s.
  const w = await startWorkload(['--size', '32m', '--hot', '8m', '--rate', '10', '--thp', 'off']);
  const h = new Harness(w, which);
  let res: Record<string, unknown>;
  try {
    res = which === 'kmod' ? await kmodCase(ko!, h) : await damonCase(h);
  } catch (e) {
    res = { failed: describeError(e), at: h.sample() };
  } finally {
    await h.engine.stop();
    h.store.close();
    await w.stop();
  }
  if (which === 'kmod') res.refcntAfterStop = moduleRefcnt();
  else {
    await sleep(300);
    res.afterStop = { kdamonds: kdamonds(), threads: kdamondThreads() };
  }
  process.stdout.write(JSON.stringify(res) + '\n');
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ failed: describeError(e) }) + '\n');
  process.exitCode = 1;
});
