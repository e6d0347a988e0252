import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The project root (the folder holding package.json), found from this file whether run from src/ or dist/. */
function findRoot(start: string): string {
  let dir = start;
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error(`no package.json above ${start}`);
    }
    dir = parent;
  }
  return dir;
}

export const projectRoot = findRoot(__dirname);
export const profilesDir = join(projectRoot, 'profiles');
export const terminologyDir = join(projectRoot, 'terminology');

/** The official R4 package (hl7.fhir.r4.examples): every definition and example of the spec. */
export function officialDefinitionsDir(): string {
  return dirname(require.resolve('hl7.fhir.r4.examples/package.json'));
}
