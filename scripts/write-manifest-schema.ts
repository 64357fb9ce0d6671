// Writes models/manifest.schema.json from the TypeBox schema the server validates manifests with, so editors can
// check manifests as they are written. test/models/manifest.test.ts fails when the committed file is stale.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { manifestJsonSchema } from '../src/models/manifest.js';

const out = path.resolve(import.meta.dirname, '../models/manifest.schema.json');
writeFileSync(out, manifestJsonSchema());
console.log(`wrote ${out}`);
