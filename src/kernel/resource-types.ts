import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { profilesDir } from './paths';

const file = JSON.parse(readFileSync(join(profilesDir, 'supported-types.json'), 'utf8')) as { types: string[] };

/** The resource types this server stores, from profiles/supported-types.json. */
export const supportedTypes: readonly string[] = Object.freeze([...file.types]);

const supported = new Set(supportedTypes);

export function isSupportedType(type: string): boolean {
  return supported.has(type);
}
