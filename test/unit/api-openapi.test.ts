import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { OPENAPI_FILE, renderOpenApi } from '../../src/api/openapi.js';

test('api/openapi.yaml is what the routes generate (run `npm run openapi` after changing a route)', async () => {
  const generated = await renderOpenApi();
  const committed = readFileSync(OPENAPI_FILE, 'utf8');
  assert.equal(committed, generated, 'api/openapi.yaml drifted from the route schemas: run `npm run openapi`');
  const doc = parse(generated);
  for (const p of ['/v1/host', '/v1/vms', '/v1/vms/{uuid}', '/v1/vms/{uuid}/numa', '/v1/vms/{uuid}/placement', '/v1/vms/{uuid}/policy', '/v1/vms/{uuid}/history', '/healthz', '/metrics']) {
    assert.ok(doc.paths[p], `missing ${p}`);
  }
  assert.ok(doc.paths['/v1/vms/{uuid}/policy'].put.requestBody);
  assert.deepEqual(doc.paths['/v1/vms'].get.security, [{ bearerAuth: [] }]);
  assert.ok(doc.components.schemas.TierPolicy);
});
