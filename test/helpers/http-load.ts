/**
 * API users in a child process (their own event loop, so the load they make is HTTP the server
 * must answer, not JavaScript sharing the server's thread): `concurrency` clients each request
 * the given paths round-robin until the parent sends 'stop', then report every request.
 *
 *   const c = fork('dist/test/helpers/http-load.js', [JSON.stringify({ url, token, paths, concurrency })]);
 *   ... c.send('stop'); c.once('message', (r: HttpLoadReport) => ...)
 */
export interface HttpLoadRequest {
  path: string;
  status: number;
  /** Wall time from request to full body, ms. */
  ms: number;
  error?: string;
}

export interface HttpLoadReport {
  requests: HttpLoadRequest[];
}

export interface HttpLoadOptions {
  url: string;
  token: string;
  paths: string[];
  concurrency: number;
}

async function main(): Promise<void> {
  const o = JSON.parse(process.argv[2]!) as HttpLoadOptions;
  const requests: HttpLoadRequest[] = [];
  let stopping = false;
  process.on('message', (m) => {
    if (m === 'stop') stopping = true;
  });
  let next = 0;
  const client = async () => {
    while (!stopping) {
      const path = o.paths[next++ % o.paths.length]!;
      const t0 = performance.now();
      try {
        const r = await fetch(`${o.url}${path}`, { headers: { authorization: `Bearer ${o.token}` } });
        await r.arrayBuffer();
        requests.push({ path, status: r.status, ms: performance.now() - t0 });
      } catch (e) {
        requests.push({ path, status: 0, ms: performance.now() - t0, error: (e as Error).message });
      }
    }
  };
  process.send!({ ready: true });
  await Promise.all(Array.from({ length: o.concurrency }, client));
  process.send!({ requests } satisfies HttpLoadReport, () => process.exit(0));
}

void main();
