import { v7 as uuidV7 } from 'uuid';
import { badRequest } from './outcome';

/**
 * The FHIR id grammar (R4 datatypes.html#id: `[A-Za-z0-9\-\.]{1,64}`) and the relative
 * references built from it. Every door checks ids here, so an id that could never be read back
 * (spaces, quotes, `%2e%2e`, emoji) is refused before anything is stored.
 */
export const ID_PATTERN = '[A-Za-z0-9\\-.]{1,64}';

const ID = new RegExp(`^${ID_PATTERN}$`);
const TYPE_AND_ID = new RegExp(`^([A-Z][A-Za-z]+)\\/(${ID_PATTERN})$`);

export function isValidId(id: string): boolean {
  return ID.test(id);
}

/**
 * A 400 for an id (or version id) in a URL that breaks the grammar: no such resource can
 * exist, and NUL or emoji in it must not reach a database query.
 */
export function requireValidId(id: string, what = 'id'): void {
  if (!ID.test(id)) throw badRequest(`'${id.slice(0, 80).replace(/\u0000/g, '\\0')}' is not a FHIR ${what} ([A-Za-z0-9-.], 1 to 64 characters)`);
}

/** `Patient/123` → { type: 'Patient', id: '123' }; anything else (absolute, versioned, #local) → undefined. */
export function parseRelativeReference(reference: string | undefined): { type: string; id: string } | undefined {
  const m = TYPE_AND_ID.exec(reference ?? '');
  return m ? { type: m[1]!, id: m[2]! } : undefined;
}

/** The id of a relative reference to `type` (`Patient/123` → `123`), else undefined. */
export function idOfReference(reference: string | undefined, type: string): string | undefined {
  const parsed = parseRelativeReference(reference);
  return parsed?.type === type ? parsed.id : undefined;
}

/**
 * A new server-assigned resource id: a UUID of version 7 (RFC 9562), whose leading 48 bits are
 * the creation time in milliseconds and whose other 74 are random (unguessable, as a version 4).
 * Measured reason (docs/decisions/025-time-ordered-ids.md): every resource table and every index
 * table keys its rows by id, and a random id lands each insert on a random leaf page of each of
 * those indexes; time-ordered ids append at their right edge, where the pages are already in
 * memory. It tells whoever sees the id when the resource was created, which the first version's
 * `meta.lastUpdated` already tells every reader.
 */
export function newResourceId(): string {
  return uuidV7();
}
