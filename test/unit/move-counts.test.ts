// One MoveCounts (src/migrate/counts.ts): the API's TypeBox schema (src/api/routes/engine.ts) is
// held equal to the type at compile time (a drift fails `npm run build`) and at run time (the
// schema's classes are the helpers' classes, and what the helpers build passes the schema), and
// no other file defines the count shape again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { SRC, sourceFiles } from '../helpers/source-files.js';
import type { Static } from 'typebox';
import { Value } from 'typebox/value';
import { MoveCounts as MoveCountsSchema } from '../../src/api/routes/engine.js';
import { addMoveCounts, emptyMoveCounts, type MoveCounts } from '../../src/migrate/counts.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
// Compile-time: the schema's static type and MoveCounts are the same type, field for field.
const schemaIsTheType: Equal<Static<typeof MoveCountsSchema>, MoveCounts> = true;

test('the API schema of MoveCounts is the type: same classes, and the helpers build what it accepts', () => {
  assert.equal(schemaIsTheType, true);
  const schemaClasses = Object.keys(MoveCountsSchema.properties.byClass.properties).sort();
  assert.deepEqual(schemaClasses, Object.keys(emptyMoveCounts().byClass).sort());
  const c = emptyMoveCounts();
  addMoveCounts(c, { requested: 5, byClass: { moved: 1, busy: 1, notPresent: 1, noMemory: 1, fault: 1, other: 0 } });
  addMoveCounts(c, { requested: 2, byClass: { moved: 2, busy: 0, notPresent: 0, noMemory: 0, fault: 0, other: 0 } });
  assert.deepEqual(c, { requested: 7, byClass: { moved: 3, busy: 1, notPresent: 1, noMemory: 1, fault: 1, other: 0 } });
  assert.ok(Value.Check(MoveCountsSchema, c));
  assert.ok(!Value.Check(MoveCountsSchema, { requested: 1, byClass: { moved: 1 } }), 'a count missing classes is refused');
});


test('the count shape is defined once: no second class union, counts literal or MoveCounts type', () => {
  const again: string[] = [];
  for (const f of sourceFiles()) {
    const name = relative(SRC, f);
    if (name === 'migrate/counts.ts') continue;
    const text = readFileSync(f, 'utf8');
    // A union or record of the six classes, a zeroed byClass literal, or a type/interface named like the one.
    if (/'moved'\s*\|\s*'busy'/.test(text) || /moved:\s*0,\s*busy:\s*0/.test(text) || /(?:^|\n)\s*(?:export\s+)?(?:interface|type)\s+Move(?:Counts|Class|StatusClass)\b/.test(text)) again.push(name);
  }
  assert.deepEqual(again, []);
});
