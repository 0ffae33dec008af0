/**
 * API fuzz: 10,000+ seeded requests (methods, paths, queries, bodies, content types, sizes,
 * auth) against a real `vmtier serve` over real HTTP, with one real TCG domain of this test so
 * the VM routes also answer 200. Every answer must be < 500, and every error must have the
 * documented shape {"error":{"code","message"}} as JSON. Oversized bodies must get their 413
 * while the client is still sending. The seed is printed with each failure so it can be replayed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { destroyDomains, startDomain, type TestDomain } from '../helpers/domains.js';
import { killAllServed, startServe, type ServedProcess } from '../helpers/serve.js';
import { rng } from '../helpers/rng.js';

const PREFIX = 'vmtier-test-z-';
const TOKEN = 'fuzz-test-token-0123456789abc';
const SEED = Number(process.env.VMTIER_FUZZ_SEED ?? 0x17f022);
const REQUESTS = Number(process.env.VMTIER_FUZZ_REQUESTS ?? 10_000);
const BODY_LIMIT = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'vmtier-fuzz-'));
let served: ServedProcess;
let domain: TestDomain;


interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

function generator(seed: number, uuid: string) {
  const rand = rng(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => rand() < p;
  const enc = (v: string) => encodeURIComponent((v as string & { toWellFormed(): string }).toWellFormed());
  const junk = (n: number) => Array.from({ length: n }, () => String.fromCharCode(pick([32 + int(95), int(32), 0x80 + int(0x780), 0xd800 + int(0x800)]))).join('');
  const uuids = [uuid, uuid.toUpperCase(), '00000000-0000-0000-0000-000000000000', 'not-a-uuid', '', '..', '%2e%2e', 'x'.repeat(300), crypto.randomUUID()];
  const templates = [
    '/healthz', '/metrics', '/v1/host', '/v1/vms', '/v1/vms/{u}', '/v1/vms/{u}/numa', '/v1/vms/{u}/placement', '/v1/vms/{u}/policy',
    '/v1/vms/{u}/history', '/v1/vms/{u}/engine', '/v1/engine', '/v1/profiles', '/v1/profiles/render', '/', '/v1', '/v1/', '/v2/vms',
    '/v1/vms/{u}/history/', '//v1//vms', '/v1/vms/{u}/policy/versions', '/docs', '/openapi.json',
  ];
  const times = () => pick([String(Date.now()), new Date(Date.now() - int(1e9)).toISOString(), '0', '-1', '1e3', 'yesterday', '2026-13-45T00:00:00Z', '9'.repeat(30), '', '2026-11-26', String(Number.MAX_SAFE_INTEGER), '2026-11-26T00:00:00+25:00']);
  const steps = () => pick(['1', '0', '-5', '5m', '1h', '30s', '1.5s', '1d', '99999d', 'm', '5x', 'NaN', '1e9', '0.0001', String(2 ** 60), '10ms']);
  const query = () => {
    const parts: string[] = [];
    for (let i = int(5); i > 0; i--) {
      const k = pick(['from', 'to', 'step', 'source', 'bogus', '', '__proto__', 'constructor', 'from[]', 'step[a]']);
      const v = k.startsWith('from') || k === 'to' ? times() : k.startsWith('step') ? steps() : k === 'source' ? pick(['raw', 'auto', 'rollup', '']) : enc(junk(int(20)));
      parts.push(`${k}=${chance(0.9) ? enc(v) : v.replace(/[^\x21-\x7e]/g, '')}`);
    }
    if (chance(0.05)) parts.push('%zz=%');
    return parts.length ? `?${parts.join('&')}` : '';
  };
  const policyish = (): unknown => {
    const base: Record<string, unknown> = {};
    if (chance(0.8)) base.mode = pick(['off', 'observe', 'tier', 'TIER', 1, null, '', ['tier']]);
    if (chance(0.4)) base.scan = pick([{ intervalMs: int(2000) }, { intervalMs: -1 }, { scansPerRound: int(40) }, { autoTune: 'yes' }, {}, null, 'fast']);
    if (chance(0.4)) base.migration = pick([{ maxMBps: int(5000) }, { maxMBps: -3 }, { maxMBps: 1e308 }, { maxMBps: null }, { extra: 1 }]);
    if (chance(0.3)) base.thresholds = { hot: rand() * 2 - 0.5, cold: int(10) };
    if (chance(0.1)) base[junk(5)] = junk(10);
    if (chance(0.05)) return JSON.parse('{"__proto__":{"mode":"tier"},"mode":"observe"}');
    return base;
  };
  const renderish = (): unknown => pick([
    { name: pick(['seed-dram-pmem', 'lab-tiered', 'cxl-expander', 'nope', '../etc', 'A']) },
    { name: 'lab-tiered', memory: pick(['4G', '1', '-1G', '1e30', 4096, 'lots']), dramRatio: rand() * 1.2 },
    { spec: pick([{}, { name: 'x' }, { name: 'x', vcpus: int(8), tiers: [] }, { name: 'x', vcpus: 2, memory: '1G', tiers: [{ name: 'pmem', kind: 'nvdimm', size: '1G' }] }, { tiers: 'no' }, { vcpus: -1 }]) },
    { name: 'lab-tiered', spec: {} },
    { name: 'lab-tiered', vars: { A: 'x'.repeat(int(5000)) }, domainName: pick(['ok-name', 'bad name', '']) },
    {},
  ]);
  const deep = (n: number): unknown => (n === 0 ? 1 : chance(0.5) ? [deep(n - 1)] : { a: deep(n - 1) });
  const jsonBody = (path: string): string => {
    const r = rand();
    if (r < 0.35) return JSON.stringify(path.endsWith('/render') ? renderish() : policyish());
    if (r < 0.5) return JSON.stringify(pick([null, 0, 'x', [], true, deep(int(200)), { a: 'b'.repeat(int(100_000)) }]));
    if (r < 0.65) return pick(['{', '{"mode":', '[1,2', 'nul', '{"a":1}{"b":2}', '\u0000', '{"mode":"tier",}', `{"x":${'1'.repeat(400)}}`]);
    if (r < 0.75) return '';
    return junk(int(2000));
  };
  return (): FuzzRequest => {
    const method = pick(['GET', 'GET', 'GET', 'PUT', 'PUT', 'POST', 'POST', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS']);
    let path = pick(templates).replace('{u}', pick(uuids));
    if (chance(0.05)) path += `/${enc(junk(int(30)))}`;
    if (chance(0.02)) path = `/${'a/'.repeat(int(2000))}`;
    if (chance(0.03)) path = path.replace(/\//g, pick(['%2F', '/./', '/../']));
    if (chance(0.02)) path += '%';
    path += query();
    const headers: Record<string, string> = {};
    const auth = rand();
    if (auth < 0.85) headers.authorization = `Bearer ${TOKEN}`;
    else if (auth < 0.9) headers.authorization = 'Bearer wrong-token-wrong-token';
    else if (auth < 0.93) headers.authorization = pick(['Basic YTpi', 'Bearer', `bearer ${TOKEN}`, junk(10).replace(/[^\x20-\x7e]/g, '')]);
    let body: Buffer | undefined;
    if (method !== 'GET' && method !== 'HEAD' ? chance(0.85) : chance(0.1)) {
      const big = chance(0.01);
      body = big ? Buffer.alloc(BODY_LIMIT + 1 + int(BODY_LIMIT), 0x20) : Buffer.from(jsonBody(path));
      const ct = rand();
      if (ct < 0.7) headers['content-type'] = 'application/json';
      else if (ct < 0.75) headers['content-type'] = 'application/json; charset=utf-8';
      else if (ct < 0.8) headers['content-type'] = 'text/plain';
      else if (ct < 0.85) headers['content-type'] = 'application/x-www-form-urlencoded';
      else if (ct < 0.88) headers['content-type'] = 'multipart/form-data; boundary=x';
      else if (ct < 0.9) headers['content-type'] = 'application/json; charset=latin1';
      else if (ct < 0.93) headers['content-type'] = junk(8).replace(/[^\x21-\x7e]/g, 'x');
      // else: no content type
    }
    return { method, path, headers, body };
  };
}

function send(agent: Agent, base: URL, r: FuzzRequest): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: base.hostname, port: base.port, method: r.method, path: r.path, headers: { ...r.headers, ...(r.body ? { 'content-length': String(r.body.length) } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(r.body);
  });
}

before(async () => {
  await destroyDomains(PREFIX);
  domain = await startDomain('two-cells-memfd.xml', PREFIX);
  served = await startServe(['--no-engine', '--db', join(dir, 'fuzz.db')], { VMTIER_TOKEN: TOKEN });
});

after(async () => {
  killAllServed();
  await destroyDomains(PREFIX);
  rmSync(dir, { recursive: true, force: true });
});

test(`${REQUESTS} seeded requests: no 5xx, every error in the documented shape`, async () => {
  const next = generator(SEED, domain.uuid);
  const base = new URL(served.url);
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const problems: string[] = [];
  const statuses = new Map<number, number>();
  let i = 0;
  const worker = async () => {
    while (i < REQUESTS && problems.length < 20) {
      const n = i++;
      const r = next();
      let res;
      try {
        res = await send(agent, base, r);
      } catch (e) {
        // The server may close a connection after a 413; anything else is a problem.
        if (r.body && r.body.length > BODY_LIMIT) continue;
        problems.push(`#${n} ${r.method} ${r.path.slice(0, 120)}: ${(e as Error).message}`);
        continue;
      }
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      const what = `#${n} (seed ${SEED}) ${r.method} ${r.path.slice(0, 160)} ${r.headers['content-type'] ?? ''} body=${r.body?.subarray(0, 80).toString() ?? ''}`;
      if (res.status >= 500) problems.push(`${what} -> ${res.status} ${res.text.slice(0, 200)}`);
      if (r.body && r.body.length > BODY_LIMIT && res.status !== 413) problems.push(`${what} -> ${res.status} for an oversized body`);
      if (res.status >= 400 && r.method !== 'HEAD') {
        let ok = false;
        try {
          const b = JSON.parse(res.text);
          ok = res.type.startsWith('application/json') && typeof b?.error?.code === 'string' && typeof b?.error?.message === 'string' && Object.keys(b).length === 1;
        } catch {
          ok = false;
        }
        if (!ok) problems.push(`${what} -> ${res.status} not in the error shape: ${res.type} ${res.text.slice(0, 200)}`);
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  agent.destroy();
  assert.deepEqual(problems, [], problems.join('\n'));
  assert.ok(i >= REQUESTS);
  // The fuzz reached the handlers, not only the router and the validator.
  for (const s of [200, 400, 401, 404]) assert.ok((statuses.get(s) ?? 0) > 50, `status ${s}: ${JSON.stringify([...statuses])}`);
  assert.ok((await fetch(`${served.url}/healthz`)).ok, 'still serving');
});

test('an oversized body gets 413 in the error shape while the client is still sending', async () => {
  const base = new URL(served.url);
  for (const chunked of [false, true]) {
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = connect(Number(base.port), base.hostname);
      let got = '';
      let sent = 0;
      sock.on('data', (b) => {
        got += b.toString('latin1');
        if (/\r\n\r\n[\s\S]*\}/.test(got)) {
          resolve(`${got}\nsent=${sent}`);
          sock.destroy();
        }
      });
      sock.on('error', () => resolve(`${got}\nsent=${sent}`));
      sock.on('close', () => resolve(`${got}\nsent=${sent}`));
      sock.on('connect', async () => {
        const total = 8 * BODY_LIMIT;
        sock.write(
          `PUT /v1/vms/${domain.uuid}/policy HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TOKEN}\r\ncontent-type: application/json\r\n` +
            (chunked ? 'transfer-encoding: chunked\r\n\r\n' : `content-length: ${total}\r\n\r\n`),
        );
        const chunk = Buffer.alloc(64 << 10, 0x20);
        // Send slowly, well past the limit, while watching for the answer.
        while (sent < total && !got && !sock.destroyed) {
          sock.write(chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]) : chunk);
          sent += chunk.length;
          await new Promise((r) => setTimeout(r, 5));
        }
      });
      setTimeout(() => reject(new Error('no answer')), 30_000).unref();
    });
    assert.match(reply, /^HTTP\/1\.1 413 /, `${chunked ? 'chunked' : 'content-length'}: ${reply.slice(0, 300)}`);
    const body = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4, reply.lastIndexOf('}') + 1));
    assert.equal(body.error.code, 'BODY_TOO_LARGE');
    assert.equal(typeof body.error.message, 'string');
    const sent = Number(/sent=(\d+)/.exec(reply)![1]);
    assert.ok(sent < 8 * BODY_LIMIT, `answered before the whole body was sent (${sent} bytes sent)`);
  }
});
