import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/paths';

/** The shared interop corpus (../shared/interop beside the clone): real R4 data written by others. */
export const interopDir = join(projectRoot, '..', 'shared', 'interop');

export function hasInterop(): boolean {
  return existsSync(interopDir);
}

/** Every JSON file of one folder of the corpus, parsed, with its file name. */
export function interopFiles(folder: string): Array<{ file: string; json: any }> {
  const dir = join(interopDir, folder);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => ({ file, json: JSON.parse(readFileSync(join(dir, file), 'utf8')) }));
}
