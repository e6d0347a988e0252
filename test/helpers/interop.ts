import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/paths';

/**
 * The interop corpus: real R4 data written by others, shipped in the repository
 * (sources and licences in fixtures/interop/MANIFEST.md) so a fresh clone tests the same data.
 */
export const interopDir = join(projectRoot, 'fixtures', 'interop');

/** Every JSON file of one folder of the corpus, parsed and as written, with its file name. A missing or empty folder fails loudly. */
export function interopFiles(folder: string): Array<{ file: string; json: any; text: string }> {
  const dir = join(interopDir, folder);
  if (!existsSync(dir)) throw new Error(`interop corpus folder missing: ${dir} (see fixtures/interop/MANIFEST.md)`);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => {
      const text = readFileSync(join(dir, file), 'utf8');
      return { file, json: JSON.parse(text), text };
    });
  if (files.length === 0) throw new Error(`interop corpus folder has no JSON: ${dir}`);
  return files;
}
