import { badRequest } from '../kernel/outcome';

/**
 * The opaque `_cursor` of next/prev links: the sort values (as PostgreSQL text) of the row the
 * page starts after, and the direction. Keyset paging stays correct while data is written,
 * where OFFSET would skip or repeat rows, and costs the same on page 1 and page 1,000.
 */
export interface Cursor {
  values: Array<string | null>;
  /** true for a `prev` link: the rows before `values`, read backwards. */
  reverse: boolean;
}

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.reverse ? 1 : 0, ...cursor.values]), 'utf8').toString('base64url');
}

export function decodeCursor(text: string, keyCount: number): Cursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== keyCount + 1 ||
    (parsed[0] !== 0 && parsed[0] !== 1) ||
    !parsed.slice(1).every((v) => v === null || typeof v === 'string')
  ) {
    throw badRequest('Invalid _cursor: use the next/prev links of a search with the same parameters', ['_cursor']);
  }
  return { reverse: parsed[0] === 1, values: parsed.slice(1) as Array<string | null> };
}
