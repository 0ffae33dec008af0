/**
 * libvirt's default event loop, driven off node's main thread. Domain events, keepalive and
 * close callbacks only fire while some thread runs virEventRunDefaultImpl(); that call blocks
 * in poll(), so it runs as a koffi `.async` call on libuv's pool, one iteration at a time,
 * and is re-armed from the main thread after each return.
 *
 * The implementation is process-wide in libvirt, so this is a reference-counted singleton:
 * connections that want events acquire it and release it when they close. While it runs it
 * keeps node alive (a pending pool job), so every acquire needs its release.
 */
import { loadLibvirt, koffi, type Ptr } from './native.js';

let registered = false;
let refs = 0;
let running = false;
/** Resolved when the current iteration returns (a release waits for the loop thread to be out). */
let waiters: Array<() => void> = [];
let wakeCb: bigint | null = null;

/** Must run before the first connection that wants events is opened (libvirt requirement). */
export function ensureEventImpl(): void {
  if (registered) return;
  const n = loadLibvirt();
  if ((n.virEventRegisterDefaultImpl() as number) < 0) throw new Error('virEventRegisterDefaultImpl failed');
  registered = true;
}

function wakeWaiters(): void {
  const w = waiters;
  waiters = [];
  for (const r of w) r();
}

function iterate(): void {
  if (refs === 0) {
    running = false;
    wakeWaiters();
    return;
  }
  loadLibvirt().virEventRunDefaultImpl.async((err: unknown) => {
    wakeWaiters();
    // A failing iteration (never seen in practice) must not spin a core: back off a little.
    if (err) setTimeout(iterate, 100);
    else setImmediate(iterate);
  });
}

export function acquireEventLoop(): void {
  ensureEventImpl();
  refs++;
  if (running) return;
  running = true;
  iterate();
}

/**
 * Drops one reference; when it was the last, resolves once the blocked iteration has returned
 * (the loop then stops unless someone acquired it again meanwhile).
 */
export function releaseEventLoop(): Promise<void> {
  if (refs === 0) return Promise.resolve();
  refs--;
  if (refs > 0 || !running) return Promise.resolve();
  const done = new Promise<void>((r) => waiters.push(r));
  // Wake the blocked iteration: a zero-delay timeout makes poll() return at once.
  const n = loadLibvirt();
  wakeCb ??= koffi.register((timer: number, _opaque: Ptr | null) => {
    n.virEventRemoveTimeout(timer);
  }, koffi.pointer(n.types.timeout));
  n.virEventAddTimeout(0, wakeCb, null, null);
  return done;
}

export function eventLoopRunning(): boolean {
  return running;
}
