/**
 * Token values are indexed as 53-bit hashes (HAPI FHIR's scheme): one bigint column compares
 * faster and indexes smaller than `system` + `code` text. cyrb53 (public domain, by bryc) is a
 * fast non-cryptographic string hash; with 2^53 values a collision between the few thousand
 * codes of one parameter is negligible.
 */
export function hash53(text: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  // Signed range so that it fits PostgreSQL int8 either way round.
  return 4294967296 * (2097151 & h2) + (h1 >>> 0) - 4503599627370496;
}

/** The hash of a coded value with its system (`system|code`; a code without system hashes as `|code`). */
export function systemCodeHash(system: string | undefined, code: string): number {
  return hash53(`${system ?? ''}|${code}`);
}

/** The hash of the code alone, for `code` searches that ignore the system. */
export function codeHash(code: string): number {
  return hash53(code);
}
