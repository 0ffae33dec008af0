/**
 * The syscall layer's move_pages FAULT INJECTION (src/sys/fault-injection.ts): a spec is parsed
 * or refused with CONFIG_ERROR, an injected move never reaches the kernel, and a query is never
 * injected (it still gets the kernel's own answer).
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { MOVE_PAGES_INJECT_ENV, injectedMovePagesFault } from '../../src/sys/fault-injection.js';
import { movePagesRaw, queryPageNodes } from '../../src/sys/syscalls.js';

afterEach(() => {
  delete process.env[MOVE_PAGES_INJECT_ENV];
});

test('specs: errno names with their kernel form, forced scopes, bad specs refused', () => {
  assert.equal(injectedMovePagesFault(), null);
  const cases: Array<[string, { errno: number; scope: string }]> = [
    ['EBUSY', { errno: 16, scope: 'page' }], ['EFAULT', { errno: 14, scope: 'page' }],
    ['ENOMEM', { errno: 12, scope: 'call' }], ['EPERM', { errno: 1, scope: 'call' }], ['EBUSY:call', { errno: 16, scope: 'call' }],
  ];
  for (const [spec, want] of cases) {
    process.env[MOVE_PAGES_INJECT_ENV] = spec;
    assert.deepEqual(injectedMovePagesFault(), want, spec);
  }
  for (const bad of ['EWHAT', 'EBUSY:sometimes', 'busy']) {
    process.env[MOVE_PAGES_INJECT_ENV] = bad;
    assert.throws(() => injectedMovePagesFault(), { code: 'CONFIG_ERROR' }, bad);
  }
});

test('an injected move does not reach the kernel; a query still does', () => {
  // An address nothing is mapped at: the kernel answers -EFAULT for it.
  const addrs = [0x1000];
  assert.deepEqual([...queryPageNodes(0, addrs)], [-14], 'the kernel: not mapped');
  process.env[MOVE_PAGES_INJECT_ENV] = 'EBUSY';
  assert.deepEqual([...movePagesRaw(0, addrs, Int32Array.of(0), 2)], [-16], 'injected per-page EBUSY');
  assert.deepEqual([...queryPageNodes(0, addrs)], [-14], 'a query is never injected');
  process.env[MOVE_PAGES_INJECT_ENV] = 'ARRIVED';
  assert.deepEqual(injectedMovePagesFault(), { errno: 0, scope: 'page', arrived: true });
  assert.deepEqual([...movePagesRaw(0, addrs, Int32Array.of(1), 2)], [1], 'injected arrival: the target node as status');
  assert.deepEqual([...queryPageNodes(0, addrs)], [-14], 'a query is never injected');
  process.env[MOVE_PAGES_INJECT_ENV] = 'EPERM';
  assert.throws(() => movePagesRaw(0, addrs, Int32Array.of(0), 2), (e: { code: string; errno: number; details: { injected: boolean } }) =>
    e.code === 'KERNEL_ERROR' && e.errno === 1 && e.details.injected === true);
});
