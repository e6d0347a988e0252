/**
 * Text PostgreSQL can store: a NUL (no text or jsonb value can hold one: the statement fails) and
 * a lone surrogate (no character, so no UTF-8) become U+FFFD. For text the server keeps although
 * it reached it past the input guards (src/fhir/input-guard.ts, src/kernel/input-limits.ts
 * refuse both in paths, queries, forms and JSON bodies): a client id decoded from Basic
 * credentials or read from an unverified client assertion, which the token throttle and the
 * audit trail record.
 */
export function storableText(text: string): string {
  return text.replace(UNSTORABLE, '\uFFFD');
}

/** Whether `text` holds a NUL or a lone surrogate. */
export function isStorableText(text: string): boolean {
  UNSTORABLE.lastIndex = 0;
  return !UNSTORABLE.test(text);
}

const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
