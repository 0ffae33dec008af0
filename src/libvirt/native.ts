/**
 * The libvirt C API through koffi: declarations only, loaded on first use so that code
 * that never talks to libvirt (unit tests, the simulator) does not need libvirt.so.0.
 * Pointers are koffi 3 BigInts; null pointers arrive as null.
 *
 * Threading: libvirt is thread safe per connection. Calls that do RPC to libvirtd can block
 * (a slow or hung daemon), so callers use the `.async` variant, which runs on libuv's pool.
 * Callbacks registered here may be invoked from the event-loop thread; koffi relays them to
 * node's main thread and blocks the calling thread until the JS function returns, so
 * pointers passed to a callback are valid for the duration of that JS call.
 */
import * as koffi from 'koffi';
import { VmtierError } from '../errors.js';

export type Ptr = bigint;

// Values from libvirt's public headers (stable ABI).
export const VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1;
export const VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0;
export const VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP = 1;
export const VIR_UUID_STRING_BUFLEN = 37;
export const VIR_ERR_NO_DOMAIN = 42;
export const VIR_ERR_OPERATION_INVALID = 55;
export const VIR_ERR_NO_DOMAIN_METADATA = 80;
export const VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION = 20;
export const VIR_DOMAIN_EVENT_ID_METADATA_CHANGE = 23;
/** virDomainMetadataType: an element in a namespace of the application's own. */
export const VIR_DOMAIN_METADATA_ELEMENT = 2;
/** virDomainModificationImpact. */
export const VIR_DOMAIN_AFFECT_CURRENT = 0;
export const VIR_DOMAIN_AFFECT_LIVE = 1;
export const VIR_DOMAIN_AFFECT_CONFIG = 2;
/** virDomainJobType: no asynchronous job (migration, save, dump) on the domain. */
export const VIR_DOMAIN_JOB_NONE = 0;
/** sizeof(virDomainJobInfo) on LP64: int type, then 11 unsigned long long. */
export const VIR_DOMAIN_JOB_INFO_SIZE = 96;

/** The raw functions; `.async(…args, cb)` exists on each (koffi). */
type Fn = ((...args: unknown[]) => unknown) & { async: (...args: unknown[]) => void };

export interface LibvirtNative {
  virInitialize: Fn;
  virEventRegisterDefaultImpl: Fn;
  virEventRunDefaultImpl: Fn;
  virEventAddTimeout: Fn;
  virEventRemoveTimeout: Fn;
  virConnectOpen: Fn;
  virConnectClose: Fn;
  virConnectIsAlive: Fn;
  virConnectSetKeepAlive: Fn;
  virConnectRegisterCloseCallback: Fn;
  virConnectUnregisterCloseCallback: Fn;
  virConnectListAllDomains: Fn;
  virConnectDomainEventRegisterAny: Fn;
  virConnectDomainEventDeregisterAny: Fn;
  virDomainLookupByUUIDString: Fn;
  virDomainLookupByName: Fn;
  virDomainGetName: Fn;
  virDomainGetUUIDString: Fn;
  virDomainGetID: Fn;
  virDomainGetState: Fn;
  virDomainGetXMLDesc: Fn;
  virDomainFree: Fn;
  virDomainQemuMonitorCommand: Fn;
  virDomainSetMetadata: Fn;
  virDomainGetMetadata: Fn;
  virDomainIsActive: Fn;
  virDomainIsPersistent: Fn;
  virDomainGetJobInfo: Fn;
  virSetErrorFunc: Fn;
  /** Callback types, for koffi.register. */
  types: {
    lifecycle: koffi.TypeObject;
    metadataChange: koffi.TypeObject;
    migrationIteration: koffi.TypeObject;
    close: koffi.TypeObject;
    timeout: koffi.TypeObject;
    error: koffi.TypeObject;
  };
}

let native: LibvirtNative | null = null;

export interface LastError {
  code: number;
  domain: number;
  message: string;
}

/**
 * libvirt errors, captured by a global error handler. libvirt's own virGetLastError() is
 * thread-local, useless for `.async` calls that fail on a pool thread; the handler instead runs
 * (relayed to the main thread) before the failing call returns, so the completion callback of that
 * call finds its error here. Errors are queued, oldest first: two calls failing at once (the
 * engine and an API request both reading a domain without metadata) run both handlers before
 * either completion, and a single slot gave the second one's error to the first and none to the
 * second ("unknown libvirt error", a 502). The queue is still a guess when completions come back
 * in another order than the handlers ran, so a caller that expects one benign error (no such
 * domain, no metadata) and finds another asks again with callSync. Entries nobody took (an error of libvirt's event thread)
 * expire instead of being handed to a later failure. Installing the handler also stops libvirt
 * from printing every error to stderr.
 */
const pendingErrors: Array<LastError & { at: number }> = [];
const ERROR_TTL_MS = 5_000;
const MAX_PENDING_ERRORS = 64;
/** Set while a synchronous call captures its own error (callSync): the handler runs inside it. */
let syncCapture: { error: LastError | null } | null = null;
let errorHandler: bigint | null = null;

export function takeLastError(): LastError | null {
  const now = Date.now();
  while (pendingErrors.length > 0) {
    const e = pendingErrors.shift()!;
    if (now - e.at <= ERROR_TTL_MS) return { code: e.code, domain: e.domain, message: e.message };
  }
  return null;
}

/**
 * Runs a libvirt call synchronously on the main thread and returns its own error, if it failed:
 * the handler runs inside the call there, so nothing else can interleave. For a read whose
 * asynchronous run failed without a captured error; it blocks the event loop for one round trip.
 */
export function callSync<T>(fn: () => T): { value: T; error: LastError | null } {
  const capture = { error: null as LastError | null };
  syncCapture = capture;
  try {
    return { value: fn(), error: capture.error };
  } finally {
    syncCapture = null;
  }
}

export function loadLibvirt(): LibvirtNative {
  if (native) return native;
  let lib: koffi.LibraryHandle;
  let libq: koffi.LibraryHandle;
  try {
    lib = koffi.load('libvirt.so.0');
    libq = koffi.load('libvirt-qemu.so.0');
  } catch (e) {
    throw new VmtierError('LIBVIRT_UNAVAILABLE', `cannot load libvirt client libraries: ${(e as Error).message}`, undefined, { cause: e });
  }
  koffi.opaque('virConnect');
  koffi.opaque('virDomain');
  const lifecycle = koffi.proto('int virLifecycleCb(virConnect *conn, virDomain *dom, int event, int detail, void *opaque)');
  const metadataChange = koffi.proto('void virMetadataChangeCb(virConnect *conn, virDomain *dom, int type, const char *nsuri, void *opaque)');
  const migrationIteration = koffi.proto('void virMigrationIterationCb(virConnect *conn, virDomain *dom, int iteration, void *opaque)');
  const close = koffi.proto('void virCloseCb(virConnect *conn, int reason, void *opaque)');
  const timeout = koffi.proto('void virTimeoutCb(int timer, void *opaque)');
  const error = koffi.proto('void virErrorCb(void *userData, void *error)');
  const f = (l: koffi.LibraryHandle, decl: string) => l.func(decl) as unknown as Fn;
  native = {
    virInitialize: f(lib, 'int virInitialize()'),
    virEventRegisterDefaultImpl: f(lib, 'int virEventRegisterDefaultImpl()'),
    virEventRunDefaultImpl: f(lib, 'int virEventRunDefaultImpl()'),
    virEventAddTimeout: f(lib, 'int virEventAddTimeout(int timeout, virTimeoutCb *cb, void *opaque, void *ff)'),
    virEventRemoveTimeout: f(lib, 'int virEventRemoveTimeout(int timer)'),
    virConnectOpen: f(lib, 'virConnect *virConnectOpen(const char *name)'),
    virConnectClose: f(lib, 'int virConnectClose(virConnect *conn)'),
    virConnectIsAlive: f(lib, 'int virConnectIsAlive(virConnect *conn)'),
    virConnectSetKeepAlive: f(lib, 'int virConnectSetKeepAlive(virConnect *conn, int interval, unsigned int count)'),
    virConnectRegisterCloseCallback: f(lib, 'int virConnectRegisterCloseCallback(virConnect *conn, virCloseCb *cb, void *opaque, void *freecb)'),
    virConnectUnregisterCloseCallback: f(lib, 'int virConnectUnregisterCloseCallback(virConnect *conn, virCloseCb *cb)'),
    virConnectListAllDomains: f(lib, 'int virConnectListAllDomains(virConnect *conn, _Out_ void **domains, unsigned int flags)'),
    virConnectDomainEventRegisterAny: f(lib, 'int virConnectDomainEventRegisterAny(virConnect *conn, virDomain *dom, int eventID, void *cb, void *opaque, void *freecb)'),
    virConnectDomainEventDeregisterAny: f(lib, 'int virConnectDomainEventDeregisterAny(virConnect *conn, int callbackID)'),
    virDomainLookupByUUIDString: f(lib, 'virDomain *virDomainLookupByUUIDString(virConnect *conn, const char *uuid)'),
    virDomainLookupByName: f(lib, 'virDomain *virDomainLookupByName(virConnect *conn, const char *name)'),
    // The name is owned by the domain object: plain (non-disposable) string.
    virDomainGetName: f(lib, 'const char *virDomainGetName(virDomain *dom)'),
    virDomainGetUUIDString: f(lib, 'int virDomainGetUUIDString(virDomain *dom, uint8_t *buf)'),
    virDomainGetID: f(lib, 'unsigned int virDomainGetID(virDomain *dom)'),
    virDomainGetState: f(lib, 'int virDomainGetState(virDomain *dom, _Out_ int *state, _Out_ int *reason, unsigned int flags)'),
    // Returned strings are heap-allocated by libvirt: '!' makes koffi free() them after conversion.
    virDomainGetXMLDesc: f(lib, 'char *! virDomainGetXMLDesc(virDomain *dom, unsigned int flags)'),
    virDomainFree: f(lib, 'int virDomainFree(virDomain *dom)'),
    virDomainQemuMonitorCommand: f(libq, 'int virDomainQemuMonitorCommand(virDomain *dom, const char *cmd, _Out_ void **result, unsigned int flags)'),
    virDomainSetMetadata: f(lib, 'int virDomainSetMetadata(virDomain *dom, int type, const char *metadata, const char *key, const char *uri, unsigned int flags)'),
    virDomainGetMetadata: f(lib, 'char *! virDomainGetMetadata(virDomain *dom, int type, const char *uri, unsigned int flags)'),
    virDomainIsActive: f(lib, 'int virDomainIsActive(virDomain *dom)'),
    virDomainIsPersistent: f(lib, 'int virDomainIsPersistent(virDomain *dom)'),
    // The struct is read as bytes: only its first field (the job type) is used.
    virDomainGetJobInfo: f(lib, 'int virDomainGetJobInfo(virDomain *dom, uint8_t *info)'),
    virSetErrorFunc: f(lib, 'void virSetErrorFunc(void *userData, virErrorCb *handler)'),
    types: { lifecycle, metadataChange, migrationIteration, close, timeout, error },
  };
  if ((native.virInitialize() as number) < 0) throw new VmtierError('LIBVIRT_ERROR', 'virInitialize failed');
  errorHandler = koffi.register((_u: unknown, err: Ptr | null) => {
    if (err === null) return;
    // struct virError { int code; int domain; char *message; ... }
    const code = koffi.decode(err, 'int') as number;
    const domain = koffi.decode(err, 4, 'int') as number;
    const message = (koffi.decode(err, 8, 'const char *') as string | null) ?? 'unknown libvirt error';
    if (syncCapture) {
      syncCapture.error = { code, domain, message };
      return;
    }
    pendingErrors.push({ code, domain, message, at: Date.now() });
    if (pendingErrors.length > MAX_PENDING_ERRORS) pendingErrors.shift();
  }, koffi.pointer(error));
  native.virSetErrorFunc(null, errorHandler);
  return native;
}

/** Reads a heap string returned through a `char **` out parameter and frees it. */
export function takeHeapString(p: Ptr | null): string | null {
  if (p === null || p === 0n) return null;
  const s = koffi.decode.string(p);
  koffi.free(p);
  return s;
}

export { koffi };
